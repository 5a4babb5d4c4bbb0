//! Per-user and per-vhost counts against `[limits]`: connections per user and per vhost, channels per user.
//! One [`TenantLimits`] is shared by every protocol, so a user's MQTT and AMQP connections count together.
//! Each open connection or channel holds a guard that gives its place back when dropped. Refusals carry
//! RabbitMQ's own texts (the adapters send them with their protocol's "not allowed" code, AMQP 530), and
//! are counted and logged once per burst.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tracing::warn;

use super::limits::BurstLog;
use crate::config::LimitsConfig;

/// Why a connection or channel was refused, in RabbitMQ's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The protocol's `max_connections` (RabbitMQ's node-wide `connection_max`).
    #[error("connection refused: node connection limit ({limit}) is reached")]
    Node { limit: usize },
    /// `max_connections` of the vhost.
    #[error(
        "access to vhost '{vhost}' refused for user '{user}': connection limit ({limit}) is reached"
    )]
    VhostConnections {
        vhost: String,
        user: String,
        limit: usize,
    },
    /// `max_connections` of the user.
    #[error("Connection refused for user '{user}': user connection limit ({limit}) is reached")]
    UserConnections { user: String, limit: usize },
    /// `max_channels` of the user.
    #[error(
        "number of channels opened for user '{user}' has reached the maximum allowed user limit of ({limit})"
    )]
    UserChannels { user: String, limit: usize },
}

/// Open connections and channels per user and per vhost, checked against `[limits]`.
#[derive(Debug, Default)]
pub struct TenantLimits {
    limits: LimitsConfig,
    counts: Mutex<Counts>,
    refused: AtomicU64,
    log: BurstLog,
}

#[derive(Debug, Default)]
struct Counts {
    user_connections: HashMap<String, usize>,
    vhost_connections: HashMap<String, usize>,
    user_channels: HashMap<String, usize>,
}

impl TenantLimits {
    /// Counts checked against `limits`.
    pub fn new(limits: LimitsConfig) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// A connection of `user` to `vhost` has logged in: count it, or refuse it when the vhost's or the user's
    /// connection limit is reached (checked in that order, as RabbitMQ does).
    pub fn open_connection(
        self: &Arc<Self>,
        user: &str,
        vhost: &str,
    ) -> Result<TenantConnection, Refusal> {
        let mut counts = self.lock();
        let in_vhost = counts.vhost_connections.get(vhost).copied().unwrap_or(0);
        if let Some(limit) = self.limits.vhost_connections(vhost)
            && in_vhost >= limit
        {
            drop(counts);
            return Err(self.refuse(Refusal::VhostConnections {
                vhost: vhost.to_owned(),
                user: user.to_owned(),
                limit,
            }));
        }
        let of_user = counts.user_connections.get(user).copied().unwrap_or(0);
        if let Some(limit) = self.limits.user_connections(user)
            && of_user >= limit
        {
            drop(counts);
            return Err(self.refuse(Refusal::UserConnections {
                user: user.to_owned(),
                limit,
            }));
        }
        *counts
            .vhost_connections
            .entry(vhost.to_owned())
            .or_default() += 1;
        *counts.user_connections.entry(user.to_owned()).or_default() += 1;
        Ok(TenantConnection {
            limits: self.clone(),
            user: user.to_owned(),
            vhost: vhost.to_owned(),
        })
    }

    /// `user` opens a channel: count it, or refuse it at the user's channel limit.
    pub fn open_channel(self: &Arc<Self>, user: &str) -> Result<TenantChannel, Refusal> {
        let mut counts = self.lock();
        let open = counts.user_channels.get(user).copied().unwrap_or(0);
        if let Some(limit) = self.limits.user_channels(user)
            && open >= limit
        {
            drop(counts);
            return Err(self.refuse(Refusal::UserChannels {
                user: user.to_owned(),
                limit,
            }));
        }
        *counts.user_channels.entry(user.to_owned()).or_default() += 1;
        Ok(TenantChannel {
            limits: self.clone(),
            user: user.to_owned(),
        })
    }

    /// Count a refusal made elsewhere (the node-wide limit) with the others, and log it once per burst.
    pub fn refuse(&self, refusal: Refusal) -> Refusal {
        self.refused.fetch_add(1, Ordering::Relaxed);
        if let Some(earlier) = self.log.hit() {
            warn!(reason = %refusal, earlier, "refusing connections or channels over a limit (further refusals in this burst are counted, not logged)");
        }
        refusal
    }

    /// Refusals since start.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// The `[limits]` in force.
    pub fn config(&self) -> &LimitsConfig {
        &self.limits
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn release(map: &mut HashMap<String, usize>, key: &str) {
        if let Some(count) = map.get_mut(key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                map.remove(key);
            }
        }
    }
}

/// A counted connection; dropping it gives the place back.
#[derive(Debug)]
pub struct TenantConnection {
    limits: Arc<TenantLimits>,
    user: String,
    vhost: String,
}

impl Drop for TenantConnection {
    fn drop(&mut self) {
        let mut counts = self.limits.lock();
        TenantLimits::release(&mut counts.user_connections, &self.user);
        TenantLimits::release(&mut counts.vhost_connections, &self.vhost);
    }
}

/// A counted channel; dropping it gives the place back.
#[derive(Debug)]
pub struct TenantChannel {
    limits: Arc<TenantLimits>,
    user: String,
}

impl Drop for TenantChannel {
    fn drop(&mut self) {
        TenantLimits::release(&mut self.limits.lock().user_channels, &self.user);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{UserLimits, VhostLimits};

    fn tenants(limits: LimitsConfig) -> Arc<TenantLimits> {
        Arc::new(TenantLimits::new(limits))
    }

    #[test]
    fn user_and_vhost_connection_limits_refuse_in_rabbitmq_words() {
        let t = tenants(LimitsConfig {
            max_connections_per_user: 2,
            vhosts: vec![VhostLimits {
                name: "small".into(),
                max_connections: Some(1),
                max_queues: None,
            }],
            ..LimitsConfig::default()
        });
        let _a = t.open_connection("app", "/").expect("first");
        let b = t.open_connection("app", "/").expect("second");
        let err = t.open_connection("app", "/").expect_err("third");
        assert_eq!(
            err.to_string(),
            "Connection refused for user 'app': user connection limit (2) is reached"
        );
        let _other = t.open_connection("ops", "small").expect("other user");
        let err = t.open_connection("ops", "small").expect_err("vhost full");
        assert_eq!(
            err.to_string(),
            "access to vhost 'small' refused for user 'ops': connection limit (1) is reached"
        );
        drop(b);
        t.open_connection("app", "/").expect("a slot came back");
        assert_eq!(t.refused(), 2);
    }

    #[test]
    fn channel_limits_follow_the_user_override() {
        let t = tenants(LimitsConfig {
            max_channels_per_user: 1,
            users: vec![UserLimits {
                name: "big".into(),
                max_connections: None,
                max_channels: Some(0),
            }],
            ..LimitsConfig::default()
        });
        let _one = t.open_channel("app").expect("first channel");
        assert!(matches!(
            t.open_channel("app"),
            Err(Refusal::UserChannels { limit: 1, .. })
        ));
        let many: Vec<_> = (0..100).map(|_| t.open_channel("big")).collect();
        assert!(many.iter().all(Result::is_ok), "0 overrides to unlimited");
    }
}
