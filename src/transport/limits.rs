//! Connection budgets: how many connections of one protocol may be open, and how many may still be in their
//! handshake, so that neither silent sockets nor a flood of real clients can take the descriptors the store
//! needs or lock out a well-behaved client.
//!
//! Every accepted socket is [`ConnectionLimits::admit`]ted into the *handshake budget* (unauthenticated
//! connections, `max_handshakes`). When that budget is full the oldest unauthenticated connection is evicted
//! (its [`Admission::evicted`] token fires and its task closes the socket): a client that completes its
//! handshake promptly always gets in, however many silent sockets an attacker holds. Once the client has
//! authenticated, the protocol adapter calls [`Admission::establish`], which moves it into the *connection
//! budget* (`max_connections`, then the user's and vhost's limits in [`super::tenants`]) or refuses it with a
//! [`Refusal`] that the adapter reports in its own protocol's words (AMQP: 530 NOT_ALLOWED on
//! connection.open, with RabbitMQ's text). Refusals and evictions are
//! counted and logged once per burst ([`BurstLog`]), never once per attempt.
//!
//! Nothing here knows a protocol; MQTT and STOMP reuse it with their own limits.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::tenants::{Refusal, TenantConnection, TenantLimits};

/// Quiet period that ends a burst: the first event after it is logged at once, the rest of the burst only as
/// a count in the next line.
const BURST_WINDOW: Duration = Duration::from_secs(10);

/// What a protocol may hold: open connections, connections still in their handshake, and how long a handshake
/// may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Authenticated connections.
    pub max_connections: usize,
    /// Connections accepted but not yet authenticated; the oldest is evicted when a new one arrives.
    pub max_handshakes: usize,
    /// Time a client has for the TLS handshake, and again for the protocol's own handshake.
    pub handshake_timeout: Duration,
}

/// Counters of one protocol's budget, for tests, health and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitStats {
    /// Authenticated connections now open.
    pub open: usize,
    /// Connections now in their handshake.
    pub handshaking: usize,
    /// Connections refused since start because `max_connections` was reached (or descriptors ran out).
    pub refused: u64,
    /// Unauthenticated connections dropped since start to make room for newer ones.
    pub evicted: u64,
}

/// The connection budget of one protocol, shared by its listeners (AMQP and AMQPS share one).
#[derive(Debug)]
pub struct ConnectionLimits {
    protocol: &'static str,
    budget: Budget,
    /// Per-user and per-vhost counts, shared with every other protocol.
    tenants: Arc<TenantLimits>,
    open: Arc<Semaphore>,
    handshakes: Mutex<Handshakes>,
    refused: AtomicU64,
    evicted: AtomicU64,
    refusal_log: BurstLog,
    eviction_log: BurstLog,
}

/// Connections in their handshake, oldest first, each with the token that evicts it.
#[derive(Debug, Default)]
struct Handshakes {
    next_id: u64,
    waiting: BTreeMap<u64, CancellationToken>,
}

impl ConnectionLimits {
    /// The budget of protocol `protocol` (the name used in logs); `tenants` is shared by every protocol.
    pub fn new(protocol: &'static str, budget: Budget, tenants: Arc<TenantLimits>) -> Self {
        Self {
            protocol,
            tenants,
            open: Arc::new(Semaphore::new(
                budget.max_connections.min(Semaphore::MAX_PERMITS),
            )),
            budget,
            handshakes: Mutex::new(Handshakes::default()),
            refused: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            refusal_log: BurstLog::default(),
            eviction_log: BurstLog::default(),
        }
    }

    /// The limits in force.
    pub fn budget(&self) -> Budget {
        self.budget
    }

    /// Time a client has for each handshake.
    pub fn handshake_timeout(&self) -> Duration {
        self.budget.handshake_timeout
    }

    /// Take a newly accepted connection into the handshake budget, evicting the oldest unauthenticated
    /// connection when it is full.
    pub fn admit(self: &Arc<Self>) -> Admission {
        let evicted = CancellationToken::new();
        let (id, dropped) = {
            let mut handshakes = self.handshakes.lock().unwrap_or_else(|e| e.into_inner());
            let dropped = if handshakes.waiting.len() >= self.budget.max_handshakes {
                handshakes.waiting.pop_first().map(|(_, token)| token)
            } else {
                None
            };
            let id = handshakes.next_id;
            handshakes.next_id += 1;
            handshakes.waiting.insert(id, evicted.clone());
            (id, dropped)
        };
        if let Some(token) = dropped {
            token.cancel();
            self.evicted.fetch_add(1, Ordering::Relaxed);
            if let Some(earlier) = self.eviction_log.hit() {
                warn!(
                    protocol = self.protocol,
                    max_handshakes = self.budget.max_handshakes,
                    earlier,
                    "too many connections still in their handshake: dropping the oldest (further drops \
                     in this burst are counted, not logged)"
                );
            }
        }
        Admission {
            limits: self.clone(),
            handshake: Some(id),
            evicted,
            open: None,
        }
    }

    /// Count a connection refused before it could be admitted at all (e.g. no descriptor to accept it).
    pub fn refuse(&self, reason: &'static str) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        if let Some(earlier) = self.refusal_log.hit() {
            warn!(
                protocol = self.protocol,
                max_connections = self.budget.max_connections,
                earlier,
                reason,
                "refusing connections (further refusals in this burst are counted, not logged)"
            );
        }
    }

    /// The counters now.
    pub fn stats(&self) -> LimitStats {
        let handshaking = self
            .handshakes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .waiting
            .len();
        LimitStats {
            open: self.budget.max_connections.min(Semaphore::MAX_PERMITS)
                - self.open.available_permits(),
            handshaking,
            refused: self.refused.load(Ordering::Relaxed),
            evicted: self.evicted.load(Ordering::Relaxed),
        }
    }

    fn leave_handshake(&self, id: u64) {
        self.handshakes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .waiting
            .remove(&id);
    }
}

/// One connection's place in its protocol's budget; dropping it frees the place.
#[derive(Debug)]
pub struct Admission {
    limits: Arc<ConnectionLimits>,
    /// Our key among the handshaking connections, until established.
    handshake: Option<u64>,
    evicted: CancellationToken,
    /// The connection-budget permit and the per-user/vhost count, once established.
    open: Option<(OwnedSemaphorePermit, TenantConnection)>,
}

impl Admission {
    /// Fires when this connection, still unauthenticated, is dropped to make room for a newer one.
    pub fn evicted(&self) -> &CancellationToken {
        &self.evicted
    }

    /// Time the client has for each handshake.
    pub fn handshake_timeout(&self) -> Duration {
        self.limits.budget.handshake_timeout
    }

    /// `user` has logged in to `vhost`: move the connection from the handshake budget into the connection
    /// budget and count it for its user and vhost, or refuse it (counted, logged once per burst) when the
    /// protocol's `max_connections`, the vhost's or the user's connection limit is reached, checked in that
    /// order as RabbitMQ does.
    pub fn establish(&mut self, user: &str, vhost: &str) -> Result<(), Refusal> {
        if self.open.is_some() {
            return Ok(());
        }
        let Ok(permit) = self.limits.open.clone().try_acquire_owned() else {
            self.limits.refuse("max_connections reached");
            let limit = self.limits.budget.max_connections;
            return Err(self.limits.tenants.refuse(Refusal::Node { limit }));
        };
        let counted = self.limits.tenants.open_connection(user, vhost)?;
        self.open = Some((permit, counted));
        if let Some(id) = self.handshake.take() {
            self.limits.leave_handshake(id);
        }
        Ok(())
    }

    /// The per-user and per-vhost limits (e.g. for channel counts).
    pub fn tenants(&self) -> &Arc<TenantLimits> {
        &self.limits.tenants
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Some(id) = self.handshake.take() {
            self.limits.leave_handshake(id);
        }
    }
}

/// Rate limit for a log line about an event that can repeat thousands of times a second: the first event
/// after a quiet [`BURST_WINDOW`] is logged, later ones only counted and reported with the next logged one.
#[derive(Debug, Default)]
pub struct BurstLog {
    state: Mutex<BurstState>,
}

#[derive(Debug, Default)]
struct BurstState {
    last_logged: Option<Instant>,
    suppressed: u64,
}

impl BurstLog {
    /// Record one event; `Some(n)` when it should be logged now, `n` being the events suppressed since the
    /// last logged one.
    pub fn hit(&self) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match state.last_logged {
            Some(at) if now.duration_since(at) < BURST_WINDOW => {
                state.suppressed += 1;
                None
            }
            _ => {
                state.last_logged = Some(now);
                Some(std::mem::take(&mut state.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_connections: usize, max_handshakes: usize) -> Arc<ConnectionLimits> {
        let budget = Budget {
            max_connections,
            max_handshakes,
            handshake_timeout: Duration::from_secs(1),
        };
        Arc::new(ConnectionLimits::new("test", budget, Arc::default()))
    }

    #[test]
    fn a_full_handshake_budget_evicts_the_oldest() {
        let limits = limits(10, 2);
        let first = limits.admit();
        let second = limits.admit();
        let third = limits.admit();
        assert!(first.evicted().is_cancelled());
        assert!(!second.evicted().is_cancelled() && !third.evicted().is_cancelled());
        let stats = limits.stats();
        assert_eq!((stats.handshaking, stats.evicted), (2, 1));
    }

    #[test]
    fn establishing_moves_a_connection_into_the_connection_budget() {
        let limits = limits(1, 2);
        let mut first = limits.admit();
        first.establish("guest", "/").expect("room for one");
        let mut second = limits.admit();
        assert_eq!(
            second.establish("guest", "/"),
            Err(Refusal::Node { limit: 1 })
        );
        let stats = limits.stats();
        assert_eq!((stats.open, stats.handshaking, stats.refused), (1, 1, 1));
        drop(first);
        second.establish("guest", "/").expect("the slot came back");
        drop(second);
        assert_eq!(limits.stats().open, 0);
    }

    #[test]
    fn a_burst_is_logged_once_and_counted() {
        let log = BurstLog::default();
        assert_eq!(log.hit(), Some(0));
        assert_eq!(log.hit(), None);
        assert_eq!(log.hit(), None);
        log.state.lock().expect("lock").last_logged = Some(Instant::now() - BURST_WINDOW);
        assert_eq!(
            log.hit(),
            Some(2),
            "the next burst reports the suppressed ones"
        );
    }
}
