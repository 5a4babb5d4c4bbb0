//! `[limits]`: per-user and per-vhost limits (connections, channels, queues) and consumers per queue, as
//! RabbitMQ's user and vhost limits. 0 means unlimited; `[[limits.users]]` and `[[limits.vhosts]]` override
//! the defaults for one name. Protocol-neutral: every front end counts against the same limits.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// Per-user, per-vhost and per-queue limits.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Connections one user may have open at once (all protocols); 0: unlimited.
    pub max_connections_per_user: usize,
    /// Channels one user may have open at once over all its connections; 0: unlimited.
    pub max_channels_per_user: usize,
    /// Connections open at once to one vhost; 0: unlimited.
    pub max_connections_per_vhost: usize,
    /// Queues one vhost may hold; 0: unlimited.
    pub max_queues_per_vhost: usize,
    /// Consumers one queue may have at once; 0: unlimited.
    pub max_consumers_per_queue: usize,
    /// Overrides for single users.
    pub users: Vec<UserLimits>,
    /// Overrides for single vhosts.
    pub vhosts: Vec<VhostLimits>,
}

/// `[[limits.users]]`: limits of one user; an option left out keeps the default.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UserLimits {
    /// The user.
    pub name: String,
    /// Its open connections; 0: unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
    /// Its open channels; 0: unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_channels: Option<usize>,
}

/// `[[limits.vhosts]]`: limits of one vhost; an option left out keeps the default.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VhostLimits {
    /// The vhost.
    pub name: String,
    /// Connections open to it; 0: unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
    /// Queues in it; 0: unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_queues: Option<usize>,
}

/// 0 in the configuration means "no limit".
fn limit(value: usize) -> Option<usize> {
    (value > 0).then_some(value)
}

impl LimitsConfig {
    /// How many connections `user` may have open (`None`: unlimited).
    pub fn user_connections(&self, user: &str) -> Option<usize> {
        let set = self.user(user).and_then(|u| u.max_connections);
        limit(set.unwrap_or(self.max_connections_per_user))
    }

    /// How many channels `user` may have open (`None`: unlimited).
    pub fn user_channels(&self, user: &str) -> Option<usize> {
        let set = self.user(user).and_then(|u| u.max_channels);
        limit(set.unwrap_or(self.max_channels_per_user))
    }

    /// How many connections may be open to `vhost` (`None`: unlimited).
    pub fn vhost_connections(&self, vhost: &str) -> Option<usize> {
        let set = self.vhost(vhost).and_then(|v| v.max_connections);
        limit(set.unwrap_or(self.max_connections_per_vhost))
    }

    /// How many queues `vhost` may hold (`None`: unlimited).
    pub fn vhost_queues(&self, vhost: &str) -> Option<usize> {
        let set = self.vhost(vhost).and_then(|v| v.max_queues);
        limit(set.unwrap_or(self.max_queues_per_vhost))
    }

    /// How many consumers one queue may have (`None`: unlimited).
    pub fn queue_consumers(&self) -> Option<usize> {
        limit(self.max_consumers_per_queue)
    }

    fn user(&self, name: &str) -> Option<&UserLimits> {
        self.users.iter().find(|u| u.name == name)
    }

    fn vhost(&self, name: &str) -> Option<&VhostLimits> {
        self.vhosts.iter().find(|v| v.name == name)
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let users = self.users.iter().map(|u| u.name.as_str());
        unique_names("limits.users", users)?;
        unique_names("limits.vhosts", self.vhosts.iter().map(|v| v.name.as_str()))
    }
}

fn unique_names<'a>(
    option: &'static str,
    names: impl Iterator<Item = &'a str>,
) -> Result<(), ConfigError> {
    let mut seen = HashSet::new();
    for name in names {
        if name.is_empty() {
            return Err(ConfigError::invalid(option, "a name is empty"));
        }
        if !seen.insert(name) {
            return Err(ConfigError::invalid(
                option,
                format!("{name:?} has limits set twice"),
            ));
        }
    }
    Ok(())
}
