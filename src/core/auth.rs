//! Users and per-vhost permissions, RabbitMQ-style: each (user, vhost) pair has configure, write and read
//! regexes matched against resource names, and optionally topic permissions (RabbitMQ's
//! `set_topic_permissions`): per exchange, write and read regexes matched against routing keys of publishes
//! and of bindings (MQTT topics, STOMP destinations). The default user may be limited to loopback peers
//! (`loopback_users`, as RabbitMQ does for `guest`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use regex::Regex;

use super::CoreError;
use super::error::{Access, Entity};

/// An authenticated user.
#[derive(Debug)]
pub struct User {
    pub name: String,
    password: String,
    pub tags: Vec<String>,
}

impl User {
    /// A user that cannot log in (no password matches it): what a trusted session acts as.
    pub(crate) fn internal(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            password: String::new(),
            tags: Vec::new(),
        }
    }
}

/// What a user may do in one vhost.
#[derive(Debug, Clone)]
pub struct Permission {
    configure: Pattern,
    write: Pattern,
    read: Pattern,
    /// Topic permissions; an exchange not named here is not restricted by routing key.
    topics: Vec<TopicPattern>,
}

/// Write and read patterns on the routing keys of one exchange.
#[derive(Debug, Clone)]
struct TopicPattern {
    exchange: String,
    write: Pattern,
    read: Pattern,
}

/// A permission pattern; `.*` (the common case) is checked without running the regex engine.
#[derive(Debug, Clone)]
enum Pattern {
    Any,
    Regex(Regex),
}

impl Pattern {
    fn compile(p: &str) -> Result<Self, CoreError> {
        match p {
            ".*" | "^.*$" | "^.*" => Ok(Pattern::Any),
            // An empty pattern grants nothing.
            "" => {
                Ok(Pattern::Regex(Regex::new("^$a").map_err(|e| {
                    CoreError::PreconditionFailed(e.to_string())
                })?))
            }
            _ => Regex::new(p).map(Pattern::Regex).map_err(|e| {
                CoreError::PreconditionFailed(format!("invalid permission regex '{p}': {e}"))
            }),
        }
    }

    fn is_match(&self, name: &str) -> bool {
        match self {
            Pattern::Any => true,
            Pattern::Regex(re) => re.is_match(name),
        }
    }
}

impl Permission {
    /// Compile the three patterns; an empty pattern grants nothing.
    pub fn new(configure: &str, write: &str, read: &str) -> Result<Self, CoreError> {
        Ok(Self {
            configure: Pattern::compile(configure)?,
            write: Pattern::compile(write)?,
            read: Pattern::compile(read)?,
            topics: Vec::new(),
        })
    }

    /// This permission with routing keys on `exchange` restricted to `write` for publishes and `read` for
    /// bindings.
    pub fn with_topic(
        mut self,
        exchange: &str,
        write: &str,
        read: &str,
    ) -> Result<Self, CoreError> {
        self.topics.push(TopicPattern {
            exchange: exchange.to_owned(),
            write: Pattern::compile(write)?,
            read: Pattern::compile(read)?,
        });
        Ok(self)
    }

    /// Check `access` (write: publish; read: bind) to routing key `key` on `exchange`.
    pub fn check_topic(
        &self,
        access: Access,
        exchange: &str,
        key: &str,
        vhost: &str,
        user: &str,
    ) -> Result<(), CoreError> {
        for topic in self.topics.iter().filter(|t| t.exchange == exchange) {
            let pattern = match access {
                Access::Write => &topic.write,
                Access::Read | Access::Configure => &topic.read,
            };
            if !pattern.is_match(key) {
                let what = if access == Access::Write {
                    "write"
                } else {
                    "read"
                };
                return Err(CoreError::AccessRefused(format!(
                    "{what} access to topic '{key}' in exchange '{exchange}' in vhost '{vhost}' refused for user '{user}'"
                )));
            }
        }
        Ok(())
    }

    /// Full access (`.*` for all three).
    pub fn all() -> Self {
        Self {
            configure: Pattern::Any,
            write: Pattern::Any,
            read: Pattern::Any,
            topics: Vec::new(),
        }
    }

    /// Check `access` to a resource.
    pub fn check(
        &self,
        access: Access,
        kind: Entity,
        name: &str,
        vhost: &str,
        user: &str,
    ) -> Result<(), CoreError> {
        let re = match access {
            Access::Configure => &self.configure,
            Access::Write => &self.write,
            Access::Read => &self.read,
        };
        if re.is_match(name) {
            Ok(())
        } else {
            Err(CoreError::PermissionDenied {
                access,
                kind,
                vhost: vhost.to_owned(),
                name: name.to_owned(),
                user: user.to_owned(),
            })
        }
    }
}

/// The user database.
#[derive(Debug, Default)]
pub struct Users {
    users: RwLock<HashMap<String, Arc<User>>>,
    permissions: RwLock<HashMap<(String, String), Arc<Permission>>>,
    loopback_only: Vec<String>,
}

impl Users {
    pub fn new(loopback_only: Vec<String>) -> Self {
        Self {
            loopback_only,
            ..Self::default()
        }
    }

    /// Add or replace a user.
    pub fn put_user(&self, name: &str, password: &str, tags: Vec<String>) {
        let user = Arc::new(User {
            name: name.to_owned(),
            password: password.to_owned(),
            tags,
        });
        self.users
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned(), user);
    }

    /// Grant permissions in a vhost.
    pub fn set_permission(&self, user: &str, vhost: &str, permission: Permission) {
        self.permissions
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert((user.to_owned(), vhost.to_owned()), Arc::new(permission));
    }

    /// Adds a topic permission to what `user` may do in `vhost` (which must have been granted).
    pub fn add_topic_permission(
        &self,
        user: &str,
        vhost: &str,
        exchange: &str,
        write: &str,
        read: &str,
    ) -> Result<(), CoreError> {
        let mut permissions = self.permissions.write().unwrap_or_else(|e| e.into_inner());
        let key = (user.to_owned(), vhost.to_owned());
        let base = permissions.get(&key).ok_or_else(|| {
            CoreError::PreconditionFailed(format!(
                "topic permission for user '{user}' in vhost '{vhost}' without a permission there"
            ))
        })?;
        let with_topic = Permission::clone(base).with_topic(exchange, write, read)?;
        permissions.insert(key, Arc::new(with_topic));
        Ok(())
    }

    /// Check a user's password (and the loopback restriction).
    pub fn authenticate(
        &self,
        name: &str,
        password: &str,
        peer: IpAddr,
    ) -> Result<Arc<User>, CoreError> {
        let user = self.authenticate_external(name, peer)?;
        if user.password != password {
            return Err(refused_credentials(name));
        }
        Ok(user)
    }

    /// A user proven by something other than its password (a TLS client certificate): it must exist, and
    /// the loopback restriction applies.
    pub fn authenticate_external(&self, name: &str, peer: IpAddr) -> Result<Arc<User>, CoreError> {
        let user = self
            .users
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
            .ok_or_else(|| refused_credentials(name))?;
        // A listener bound to `::` sees IPv4 clients as IPv4-mapped addresses (`::ffff:127.0.0.1`).
        if !peer.to_canonical().is_loopback() && self.loopback_only.iter().any(|u| u == name) {
            return Err(CoreError::AccessRefused(format!(
                "user '{name}' can only connect via localhost"
            )));
        }
        Ok(user)
    }

    /// The user's permissions in a vhost, if any.
    pub fn permission(&self, user: &str, vhost: &str) -> Option<Arc<Permission>> {
        self.permissions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(user.to_owned(), vhost.to_owned()))
            .cloned()
    }
}

/// RabbitMQ's words for a login refused for its credentials.
fn refused_credentials(name: &str) -> CoreError {
    CoreError::AccessRefused(format!("user '{name}' - invalid credentials"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_only_user_refused_from_remote() {
        let users = Users::new(vec!["guest".into()]);
        users.put_user("guest", "guest", vec![]);
        assert!(
            users
                .authenticate("guest", "guest", "127.0.0.1".parse().unwrap())
                .is_ok()
        );
        assert!(
            users
                .authenticate("guest", "guest", "10.0.0.1".parse().unwrap())
                .is_err()
        );
        for loopback in ["::1", "::ffff:127.0.0.1"] {
            assert!(
                users
                    .authenticate("guest", "guest", loopback.parse().unwrap())
                    .is_ok(),
                "{loopback} is loopback"
            );
        }
        assert!(
            users
                .authenticate("guest", "guest", "::ffff:10.0.0.1".parse().unwrap())
                .is_err()
        );
        assert!(
            users
                .authenticate("guest", "nope", "127.0.0.1".parse().unwrap())
                .is_err()
        );
    }

    #[test]
    fn permission_patterns() {
        let p = Permission::new("^app\\.", "", ".*").unwrap();
        assert!(
            p.check(Access::Configure, Entity::Queue, "app.q", "/", "u")
                .is_ok()
        );
        assert!(
            p.check(Access::Configure, Entity::Queue, "other", "/", "u")
                .is_err()
        );
        assert!(
            p.check(Access::Write, Entity::Exchange, "x", "/", "u")
                .is_err()
        );
        assert!(
            p.check(Access::Read, Entity::Queue, "anything", "/", "u")
                .is_ok()
        );
    }
}
