//! The process's file-descriptor budget: every socket, segment file and pipe takes one, and running out
//! (EMFILE) hurts whoever asks next. Before this budget existed, 1,100 sockets that never logged in, under
//! the common soft limit of 1,024, made the journal fail to open a segment and refuse every persistent
//! publish until a restart.
//!
//! At start-up the soft limit is raised to the hard one ([`raise_soft_limit`], as RabbitMQ and most servers
//! do), [`RESERVED_DESCRIPTORS`] are set aside for the store, the HTTP listener and the runtime, and the
//! connection budgets are fitted into the rest ([`fit`]) with a logged warning when that lowers them. The
//! accept loops treat a remaining EMFILE/ENFILE as the refusal of one connection (see `tcp`).

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

use super::limits::Budget;

/// Descriptors connections may never take: the journal's segment files and directory handles (256), the
/// HTTP listener's connections ([`HTTP_MAX_CONNECTIONS`]), and the runtime, logs and listening sockets
/// (64).
pub const RESERVED_DESCRIPTORS: u64 = 256 + HTTP_MAX_CONNECTIONS as u64 + 64;

/// Concurrent HTTP connections (health checks, later management and metrics); more wait in the backlog.
pub const HTTP_MAX_CONNECTIONS: usize = 64;

/// The open-file limits before and after [`raise_soft_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Raised {
    /// Soft limit found at start (`None`: unlimited).
    pub before: Option<u64>,
    /// Soft limit now in force.
    pub soft: Option<u64>,
    /// Hard limit (the ceiling for the soft one).
    pub hard: Option<u64>,
}

/// Raise the soft open-file limit to the hard limit. Errors leave the limit as it was.
pub fn raise_soft_limit() -> std::io::Result<Raised> {
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            },
        )?;
    }
    Ok(Raised {
        before: limit.current,
        soft: getrlimit(Resource::Nofile).current,
        hard: limit.maximum,
    })
}

/// The soft open-file limit in force (`None`: unlimited).
pub fn soft_limit() -> Option<u64> {
    getrlimit(Resource::Nofile).current
}

/// Fit one protocol's budget under `soft_limit` less `reserved` (at least [`RESERVED_DESCRIPTORS`], plus
/// what other listeners set aside): unchanged when it fits, otherwise the handshake budget is cut to a
/// quarter of what is available and `max_connections` gets the rest (at least one of each). Returns `None`
/// when nothing had to change.
pub fn fit(budget: Budget, soft_limit: Option<u64>, reserved: u64) -> Option<Budget> {
    let limit = soft_limit?;
    let available = usize::try_from(limit.saturating_sub(reserved)).unwrap_or(usize::MAX);
    if budget.max_connections.saturating_add(budget.max_handshakes) <= available {
        return None;
    }
    let max_handshakes = budget.max_handshakes.min(available / 4).max(1);
    let max_connections = available.saturating_sub(max_handshakes).max(1);
    Some(Budget {
        max_connections: budget.max_connections.min(max_connections),
        max_handshakes,
        ..budget
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn budget(max_connections: usize, max_handshakes: usize) -> Budget {
        Budget {
            max_connections,
            max_handshakes,
            handshake_timeout: Duration::from_secs(10),
        }
    }

    #[test]
    fn a_budget_that_fits_is_left_alone() {
        assert_eq!(
            fit(budget(10_000, 1_000), Some(1 << 20), RESERVED_DESCRIPTORS),
            None
        );
        assert_eq!(
            fit(budget(10_000, 1_000), None, RESERVED_DESCRIPTORS),
            None,
            "unlimited"
        );
    }

    #[test]
    fn a_budget_over_the_limit_leaves_the_reserve_free() {
        let fitted = fit(budget(10_000, 1_000), Some(1024), RESERVED_DESCRIPTORS).expect("clamped");
        let available = 1024 - RESERVED_DESCRIPTORS as usize;
        assert_eq!(fitted.max_handshakes, available / 4);
        assert_eq!(
            fitted.max_connections + fitted.max_handshakes,
            available,
            "connections take what the reserve leaves"
        );
        let tiny = fit(budget(10, 10), Some(16), RESERVED_DESCRIPTORS).expect("clamped");
        assert_eq!((tiny.max_connections, tiny.max_handshakes), (1, 1));
    }

    #[test]
    fn the_soft_limit_can_be_raised_to_the_hard_one() {
        let raised = raise_soft_limit().expect("setrlimit to the hard limit is always allowed");
        assert_eq!(raised.soft, raised.hard);
        assert_eq!(soft_limit(), raised.hard);
    }
}
