//! `[auth]`: users, vhosts and permissions created at every start, and the loopback-only users.

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// Users, vhosts and permissions created at every start, and who may log in only from loopback.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Name of the user created at start-up with full permissions on vhost `/`.
    pub default_user: String,
    /// Its password.
    pub default_pass: String,
    /// Users allowed to connect only from a loopback address (RabbitMQ's `loopback_users`); `[]` lifts it.
    pub loopback_users: Vec<String>,
    /// Vhosts created at start-up besides `/`.
    pub vhosts: Vec<String>,
    /// Users created at start-up besides the default user.
    pub users: Vec<UserConfig>,
    /// Permissions granted at start-up.
    pub permissions: Vec<PermissionConfig>,
    /// Topic permissions granted at start-up: routing-key regexes per exchange, restricting `permissions`.
    pub topic_permissions: Vec<TopicPermissionConfig>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            default_user: "guest".to_owned(),
            default_pass: "guest".to_owned(),
            loopback_users: vec!["guest".to_owned()],
            vhosts: Vec::new(),
            users: Vec::new(),
            permissions: Vec::new(),
            topic_permissions: Vec::new(),
        }
    }
}

/// A user created at start-up (`[[auth.users]]`).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// User name.
    pub name: String,
    /// Password.
    pub password: String,
    /// Tags, as RabbitMQ's (`administrator`, `monitoring`, ...).
    #[serde(default)]
    pub tags: Vec<String>,
}

/// A permission granted at start-up (`[[auth.permissions]]`): RabbitMQ's configure / write / read regexes on
/// resource names in one vhost.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PermissionConfig {
    /// The user (the default user or one of `users`).
    pub user: String,
    /// The vhost (`/` or one of `vhosts`); default `/`.
    #[serde(default = "PermissionConfig::default_vhost")]
    pub vhost: String,
    /// Regex of resources the user may declare and delete; default `.*`.
    #[serde(default = "PermissionConfig::everything")]
    pub configure: String,
    /// Regex of resources the user may publish to; default `.*`.
    #[serde(default = "PermissionConfig::everything")]
    pub write: String,
    /// Regex of resources the user may consume from; default `.*`.
    #[serde(default = "PermissionConfig::everything")]
    pub read: String,
}

/// A topic permission granted at start-up (`[[auth.topic_permissions]]`), RabbitMQ's `set_topic_permissions`:
/// on `exchange`, the routing keys the user may publish with (`write`) and bind with (`read`; for MQTT, the
/// topic filters it may subscribe to). The user needs a permission in the vhost too.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TopicPermissionConfig {
    /// The user.
    pub user: String,
    /// The vhost; default `/`.
    #[serde(default = "PermissionConfig::default_vhost")]
    pub vhost: String,
    /// The exchange whose routing keys are restricted (MQTT topics live on `amq.topic`).
    pub exchange: String,
    /// Regex of routing keys the user may publish with; default `.*`.
    #[serde(default = "PermissionConfig::everything")]
    pub write: String,
    /// Regex of routing keys (binding patterns) the user may bind with; default `.*`.
    #[serde(default = "PermissionConfig::everything")]
    pub read: String,
}

impl PermissionConfig {
    fn default_vhost() -> String {
        "/".to_owned()
    }

    fn everything() -> String {
        ".*".to_owned()
    }
}

impl AuthConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.default_user.is_empty() {
            return Err(ConfigError::invalid(
                "auth.default_user",
                "must not be empty",
            ));
        }
        if let Some(vhost) = self.vhosts.iter().find(|v| v.is_empty() || v.len() > 255) {
            return Err(ConfigError::invalid(
                "auth.vhosts",
                format!("vhost name {vhost:?} must be 1 to 255 bytes long"),
            ));
        }
        let mut names = vec![self.default_user.as_str()];
        for user in &self.users {
            if user.name.is_empty() {
                return Err(ConfigError::invalid(
                    "auth.users",
                    "a user has an empty name",
                ));
            }
            if names.contains(&user.name.as_str()) {
                return Err(ConfigError::invalid(
                    "auth.users",
                    format!(
                        "user {:?} is defined twice (or is the default user)",
                        user.name
                    ),
                ));
            }
            names.push(&user.name);
        }
        for permission in &self.permissions {
            self.validate_permission(permission, &names)?;
        }
        for topic in &self.topic_permissions {
            let granted = |p: &PermissionConfig| p.user == topic.user && p.vhost == topic.vhost;
            let default = topic.user == self.default_user && topic.vhost == "/";
            if !default && !self.permissions.iter().any(granted) {
                return Err(ConfigError::invalid(
                    "auth.topic_permissions",
                    format!(
                        "user {:?} has no permission in vhost {:?}",
                        topic.user, topic.vhost
                    ),
                ));
            }
            check_regexes(
                "auth.topic_permissions",
                &topic.user,
                [("write", &topic.write), ("read", &topic.read)],
            )?;
        }
        Ok(())
    }

    fn validate_permission(
        &self,
        permission: &PermissionConfig,
        users: &[&str],
    ) -> Result<(), ConfigError> {
        const OPTION: &str = "auth.permissions";
        if !users.contains(&permission.user.as_str()) {
            return Err(ConfigError::invalid(
                OPTION,
                format!(
                    "user {:?} is neither auth.default_user nor in auth.users",
                    permission.user
                ),
            ));
        }
        if permission.vhost != "/" && !self.vhosts.contains(&permission.vhost) {
            return Err(ConfigError::invalid(
                OPTION,
                format!(
                    "vhost {:?} of user {:?} is neither \"/\" nor in auth.vhosts",
                    permission.vhost, permission.user
                ),
            ));
        }
        let patterns = [
            ("configure", &permission.configure),
            ("write", &permission.write),
            ("read", &permission.read),
        ];
        check_regexes(OPTION, &permission.user, patterns)
    }
}

/// Every `(kind, pattern)` of `user` compiles as a regex.
fn check_regexes<'a>(
    option: &'static str,
    user: &str,
    patterns: impl IntoIterator<Item = (&'static str, &'a String)>,
) -> Result<(), ConfigError> {
    for (kind, pattern) in patterns {
        if let Err(e) = regex::Regex::new(pattern) {
            return Err(ConfigError::invalid(
                option,
                format!("{kind} regex {pattern:?} of user {user:?} is invalid: {e}"),
            ));
        }
    }
    Ok(())
}
