//! The core's errors, and the small vocabulary they are made of ([`Entity`], [`Access`]): protocol-neutral and
//! structured, so each front end words them for its own protocol in one
//! place (AMQP with RabbitMQ's exact texts, SQS as `QueueDoesNotExist`, MQTT as a reason code). The `Display`
//! texts here are for logs; no adapter shows them to a client without choosing to.

use std::fmt;

/// The three kinds of access RabbitMQ distinguishes (checked by `auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Configure,
    Write,
    Read,
}

/// The kind of entity an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    VHost,
    Exchange,
    Queue,
    User,
}

impl Entity {
    pub fn as_str(self) -> &'static str {
        match self {
            Entity::VHost => "vhost",
            Entity::Exchange => "exchange",
            Entity::Queue => "queue",
            Entity::User => "user",
        }
    }
}

impl fmt::Display for Entity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which family an error belongs to (what an adapter usually maps to a code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    NotFound,
    AccessRefused,
    PreconditionFailed,
    ResourceLocked,
    LimitExceeded,
    NotAllowed,
    Store,
}

/// See the module docs.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum CoreError {
    /// The entity does not exist (or was deleted).
    #[error("{kind} '{name}' not found in vhost '{vhost}'")]
    NotFound {
        kind: Entity,
        vhost: String,
        name: String,
    },
    /// Another connection owns the exclusive queue.
    #[error("queue '{queue}' in vhost '{vhost}' is exclusive to another connection")]
    ResourceLocked { vhost: String, queue: String },
    /// A redeclare differs from the existing entity in `field`.
    #[error("{kind} '{name}' in vhost '{vhost}' exists with {field} '{current}', not '{received}'")]
    Inequivalent {
        kind: Entity,
        vhost: String,
        name: String,
        field: String,
        received: String,
        current: String,
    },
    /// A declare argument is invalid; `why` is RabbitMQ's term for it (e.g. `{value_negative,-1}`).
    #[error("invalid argument '{key}' for {kind} '{name}' in vhost '{vhost}': {why}")]
    InvalidArgument {
        kind: Entity,
        vhost: String,
        name: String,
        key: String,
        why: String,
    },
    /// A conditional delete found the entity in use (bindings, consumers).
    #[error("{kind} '{name}' in vhost '{vhost}' in use")]
    InUse {
        kind: Entity,
        vhost: String,
        name: String,
    },
    /// A conditional delete found the queue not empty.
    #[error("queue '{queue}' in vhost '{vhost}' is not empty")]
    NotEmpty { vhost: String, queue: String },
    /// Any other failed precondition, in RabbitMQ's words.
    #[error("{0}")]
    PreconditionFailed(String),
    /// The user's permissions do not allow `access` to the entity.
    #[error("access to {kind} '{name}' in vhost '{vhost}' refused for user '{user}'")]
    PermissionDenied {
        access: Access,
        kind: Entity,
        vhost: String,
        name: String,
        user: String,
    },
    /// Any other refusal (reserved names, the default exchange, bad credentials), in RabbitMQ's words.
    #[error("{0}")]
    AccessRefused(String),
    /// A configured limit would be exceeded.
    #[error("{0}")]
    LimitExceeded(String),
    /// The operation is not allowed on this connection (vhost access).
    #[error("{0}")]
    NotAllowed(String),
    /// The store failed; persistent work is refused until a restart.
    #[error("message store failed: {0}")]
    Store(String),
}

impl CoreError {
    /// The family this error belongs to.
    pub fn class(&self) -> ErrorClass {
        match self {
            CoreError::NotFound { .. } => ErrorClass::NotFound,
            CoreError::ResourceLocked { .. } => ErrorClass::ResourceLocked,
            CoreError::Inequivalent { .. }
            | CoreError::InvalidArgument { .. }
            | CoreError::InUse { .. }
            | CoreError::NotEmpty { .. }
            | CoreError::PreconditionFailed(_) => ErrorClass::PreconditionFailed,
            CoreError::PermissionDenied { .. } | CoreError::AccessRefused(_) => {
                ErrorClass::AccessRefused
            }
            CoreError::LimitExceeded(_) => ErrorClass::LimitExceeded,
            CoreError::NotAllowed(_) => ErrorClass::NotAllowed,
            CoreError::Store(_) => ErrorClass::Store,
        }
    }

    pub(crate) fn not_found(kind: Entity, vhost: &str, name: &str) -> Self {
        CoreError::NotFound {
            kind,
            vhost: vhost.to_owned(),
            name: name.to_owned(),
        }
    }

    pub(crate) fn precondition(text: impl Into<String>) -> Self {
        CoreError::PreconditionFailed(text.into())
    }

    pub(crate) fn store(e: impl fmt::Display) -> Self {
        CoreError::Store(e.to_string())
    }
}
