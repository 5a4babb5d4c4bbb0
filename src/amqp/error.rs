//! AMQP errors: which reply code and scope (channel or connection) each failure gets, with RabbitMQ's texts
//! ("NOT_FOUND - no queue 'q' in vhost '/'"). Core errors are mapped here and nowhere else.

use ferrymq_amqp_codec::CodecError;

use crate::core::CoreError;

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

impl From<CoreError> for AmqpError {
    fn from(e: CoreError) -> Self {
        match e {
            CoreError::NotFound(t) => AmqpError::channel(code::NOT_FOUND, t),
            CoreError::AccessRefused(t) => AmqpError::channel(code::ACCESS_REFUSED, t),
            CoreError::PreconditionFailed(t) => AmqpError::channel(code::PRECONDITION_FAILED, t),
            CoreError::ResourceLocked(t) => AmqpError::channel(code::RESOURCE_LOCKED, t),
            CoreError::LimitExceeded(t) => AmqpError::channel(code::PRECONDITION_FAILED, t),
            CoreError::NotAllowed(t) => AmqpError::connection(code::NOT_ALLOWED, t),
            CoreError::Store(t) => {
                AmqpError::connection(code::INTERNAL_ERROR, format!("message store failed: {t}"))
            }
        }
    }
}

impl From<CodecError> for AmqpError {
    fn from(e: CodecError) -> Self {
        AmqpError::connection(e.reply_code(), e.to_string())
    }
}
