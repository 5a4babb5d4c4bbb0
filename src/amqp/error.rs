//! AMQP errors: which reply code and scope (channel or connection) each failure gets, with RabbitMQ's texts
//! ("NOT_FOUND - no queue 'q' in vhost '/'"). Core errors are mapped here and nowhere else.

use ferrymq_amqp_codec::CodecError;

use crate::core::OverLimit;
use crate::core::{CoreError, ErrorClass};

/// AMQP 0-9-1 reply codes (the codec's table, XML reference §1.2).
pub use ferrymq_amqp_codec::reply_code as code;

/// The symbolic name RabbitMQ prefixes reply texts with.
pub fn code_name(code: u16) -> &'static str {
    match code {
        code::REPLY_SUCCESS => "OK",
        code::CONTENT_TOO_LARGE => "CONTENT_TOO_LARGE",
        code::NO_ROUTE => "NO_ROUTE",
        code::CONNECTION_FORCED => "CONNECTION_FORCED",
        code::ACCESS_REFUSED => "ACCESS_REFUSED",
        code::NOT_FOUND => "NOT_FOUND",
        code::RESOURCE_LOCKED => "RESOURCE_LOCKED",
        code::PRECONDITION_FAILED => "PRECONDITION_FAILED",
        code::FRAME_ERROR => "FRAME_ERROR",
        code::SYNTAX_ERROR => "SYNTAX_ERROR",
        code::COMMAND_INVALID => "COMMAND_INVALID",
        code::CHANNEL_ERROR => "CHANNEL_ERROR",
        code::UNEXPECTED_FRAME => "UNEXPECTED_FRAME",
        code::RESOURCE_ERROR => "RESOURCE_ERROR",
        code::NOT_ALLOWED => "NOT_ALLOWED",
        code::NOT_IMPLEMENTED => "NOT_IMPLEMENTED",
        code::INTERNAL_ERROR => "INTERNAL_ERROR",
        _ => "ERROR",
    }
}

/// Whether an error closes a channel or the whole connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Channel,
    Connection,
}

/// A protocol error to report to the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmqpError {
    pub scope: Scope,
    pub code: u16,
    pub text: String,
    /// The method that caused it (0, 0 when none).
    pub class_id: u16,
    pub method_id: u16,
}

impl AmqpError {
    pub fn channel(code: u16, text: impl Into<String>) -> Self {
        Self {
            scope: Scope::Channel,
            code,
            text: text.into(),
            class_id: 0,
            method_id: 0,
        }
    }

    pub fn connection(code: u16, text: impl Into<String>) -> Self {
        Self {
            scope: Scope::Connection,
            code,
            text: text.into(),
            class_id: 0,
            method_id: 0,
        }
    }

    /// Attach the failing method's ids.
    pub fn during(mut self, class_id: u16, method_id: u16) -> Self {
        if self.class_id == 0 {
            self.class_id = class_id;
            self.method_id = method_id;
        }
        self
    }

    /// The reply text as sent: "NOT_FOUND - no queue 'q' in vhost '/'" (max 255 bytes, shortstr).
    pub fn reply_text(&self) -> String {
        let mut text = format!("{} - {}", code_name(self.code), self.text);
        if text.len() > 255 {
            let mut cut = 255;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
        text
    }
}

/// A core error in RabbitMQ's words and codes (channel errors 403/404/405/406, connection errors 530/541).
impl From<CoreError> for AmqpError {
    fn from(e: CoreError) -> Self {
        use ErrorClass as C;
        let text = rabbit_text(&e);
        match e.class() {
            C::NotFound => AmqpError::channel(code::NOT_FOUND, text),
            C::AccessRefused => AmqpError::channel(code::ACCESS_REFUSED, text),
            C::PreconditionFailed | C::LimitExceeded => {
                AmqpError::channel(code::PRECONDITION_FAILED, text)
            }
            C::ResourceLocked => AmqpError::channel(code::RESOURCE_LOCKED, text),
            C::NotAllowed => AmqpError::connection(code::NOT_ALLOWED, text),
            C::Store => AmqpError::connection(code::INTERNAL_ERROR, text),
        }
    }
}

/// RabbitMQ's reply text for a core error.
fn rabbit_text(e: &CoreError) -> String {
    match e {
        CoreError::NotFound { kind, vhost, name } => {
            format!("no {kind} '{name}' in vhost '{vhost}'")
        }
        CoreError::ResourceLocked { vhost, queue } => format!(
            "cannot obtain exclusive access to locked queue '{queue}' in vhost '{vhost}'. It could be \
             originally declared on another connection or the exclusive property value does not match \
             that of the original declaration."
        ),
        CoreError::Inequivalent {
            kind,
            vhost,
            name,
            field,
            received,
            current,
        } => format!(
            "inequivalent arg '{field}' for {kind} '{name}' in vhost '{vhost}': received '{received}' but \
             current is '{current}'"
        ),
        CoreError::InvalidArgument {
            kind,
            vhost,
            name,
            key,
            why,
        } => format!("invalid arg '{key}' for {kind} '{name}' in vhost '{vhost}': {why}"),
        CoreError::InUse { kind, vhost, name } => {
            format!("{kind} '{name}' in vhost '{vhost}' in use")
        }
        CoreError::NotEmpty { vhost, queue } => {
            format!("queue '{queue}' in vhost '{vhost}' is not empty")
        }
        CoreError::PermissionDenied {
            kind,
            vhost,
            name,
            user,
            ..
        } => format!("access to {kind} '{name}' in vhost '{vhost}' refused for user '{user}'"),
        CoreError::Store(t) => format!("message store failed: {t}"),
        CoreError::PreconditionFailed(t)
        | CoreError::AccessRefused(t)
        | CoreError::LimitExceeded(t)
        | CoreError::NotAllowed(t) => t.clone(),
    }
}

/// A connection's unfinished and uncommitted messages would exceed `memory.max_per_connection`: the channel
/// that asked is closed with 406, in the words RabbitMQ uses for its own size limit ("message size ~B is
/// larger than configured max size ~B", rabbit_channel's check_msg_size).
impl From<OverLimit> for AmqpError {
    fn from(e: OverLimit) -> Self {
        AmqpError::channel(
            code::PRECONDITION_FAILED,
            format!(
                "unfinished and uncommitted messages of size {} on this connection would be larger than \
                 configured max size {}",
                e.held.saturating_add(e.more),
                e.limit
            ),
        )
    }
}

impl From<CodecError> for AmqpError {
    fn from(e: CodecError) -> Self {
        AmqpError::connection(e.reply_code(), e.to_string())
    }
}
