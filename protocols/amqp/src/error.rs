//! The codec's one error type and the AMQP reply codes it maps to.
//!
//! Every decoding failure is a [`CodecError`]; each variant knows the reply code (AMQP 0-9-1 XML reference
//! §1.2, "AMQP-defined constants") the session adapter should put in the `connection.close` it sends before
//! dropping the connection. "Not enough bytes yet" is never an error: the decoders return `Ok(None)` for it.
//! This module knows nothing about sockets, channels or sessions.

/// Reply codes defined by AMQP 0-9-1 (XML reference §1.2, "AMQP-defined constants"), for use in
/// `connection.close`, `channel.close` and `basic.return`.
pub mod reply_code {
    /// 200: the method completed successfully.
    pub const REPLY_SUCCESS: u16 = 200;
    /// 311 (soft): the message body was too large for the server.
    pub const CONTENT_TOO_LARGE: u16 = 311;
    /// 312 (soft, RabbitMQ): a mandatory message could not be routed.
    pub const NO_ROUTE: u16 = 312;
    /// 313 (soft): an immediate message had no consumer ready.
    pub const NO_CONSUMERS: u16 = 313;
    /// 320 (hard): an operator closed the connection.
    pub const CONNECTION_FORCED: u16 = 320;
    /// 402 (hard): the client named an invalid virtual host.
    pub const INVALID_PATH: u16 = 402;
    /// 403 (soft): the client lacks access to the entity.
    pub const ACCESS_REFUSED: u16 = 403;
    /// 404 (soft): the entity does not exist.
    pub const NOT_FOUND: u16 = 404;
    /// 405 (soft): the entity is exclusively used by another connection.
    pub const RESOURCE_LOCKED: u16 = 405;
    /// 406 (soft): a precondition (e.g. equivalent declare arguments) failed.
    pub const PRECONDITION_FAILED: u16 = 406;
    /// 501 (hard): a malformed frame (bad size, type or end octet).
    pub const FRAME_ERROR: u16 = 501;
    /// 502 (hard): a frame whose fields have illegal values or are truncated.
    pub const SYNTAX_ERROR: u16 = 502;
    /// 503 (hard): a method that is not valid in the current state.
    pub const COMMAND_INVALID: u16 = 503;
    /// 504 (hard): a channel that is not open, or a channel error.
    pub const CHANNEL_ERROR: u16 = 504;
    /// 505 (hard): a frame that was not expected (e.g. a body without a header).
    pub const UNEXPECTED_FRAME: u16 = 505;
    /// 506 (hard): the server ran out of a resource.
    pub const RESOURCE_ERROR: u16 = 506;
    /// 530 (hard): the client tried something the server does not allow.
    pub const NOT_ALLOWED: u16 = 530;
    /// 540 (hard): the client used a method the server does not implement.
    pub const NOT_IMPLEMENTED: u16 = 540;
    /// 541 (hard): an internal server error.
    pub const INTERNAL_ERROR: u16 = 541;
}

/// A frame or method the codec could not decode. All of these are connection errors in AMQP 0-9-1
/// (spec §4.2.3, §4.8): the adapter replies `connection.close` with [`CodecError::reply_code`] and closes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The frame header announced a frame (size + 8 framing octets) above the negotiated `frame_max`
    /// (spec §4.2.3, XML reference `connection.tune` frame-max). `size` is the total frame size.
    #[error("frame of {size} bytes exceeds frame_max {max}")]
    FrameTooLarge {
        /// Total frame size in bytes, including the 7-byte header and the frame-end octet.
        size: u64,
        /// The negotiated frame_max the frame was checked against.
        max: u32,
    },
    /// The octet after the payload was not `FRAME_END` (0xCE) (spec §4.2.3).
    #[error("bad frame end octet {0:#04x}, expected 0xce")]
    BadFrameEnd(u8),
    /// The frame type octet is not method, header, body or heartbeat (spec §4.2.3).
    #[error("unknown frame type {0}")]
    UnknownFrameType(u8),
    /// The class id / method id pair names no method of AMQP 0-9-1 or its RabbitMQ extensions (spec §4.2.4).
    #[error("unknown method {class_id}.{method_id}")]
    UnknownMethod {
        /// The class id read from the method frame.
        class_id: u16,
        /// The method id read from the method frame.
        method_id: u16,
    },
    /// The payload did not parse: truncated arguments, trailing bytes, an unknown field-value tag, invalid
    /// UTF-8 in a shortstr, and the like (spec §4.2.5).
    #[error("malformed frame: {0}")]
    Malformed(String),
}

impl CodecError {
    /// The reply code for the `connection.close` this error calls for (XML reference §1.2):
    /// 501 FRAME_ERROR for framing errors, 540 NOT_IMPLEMENTED for unknown methods, 502 SYNTAX_ERROR for
    /// malformed payloads.
    pub fn reply_code(&self) -> u16 {
        match self {
            Self::FrameTooLarge { .. } | Self::BadFrameEnd(_) | Self::UnknownFrameType(_) => {
                reply_code::FRAME_ERROR
            }
            Self::UnknownMethod { .. } => reply_code::NOT_IMPLEMENTED,
            Self::Malformed(_) => reply_code::SYNTAX_ERROR,
        }
    }

    pub(crate) fn malformed(what: impl Into<String>) -> Self {
        Self::Malformed(what.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_errors_are_frame_errors_and_parse_errors_are_syntax_errors() {
        assert_eq!(
            CodecError::FrameTooLarge {
                size: 9000,
                max: 4096
            }
            .reply_code(),
            501
        );
        assert_eq!(CodecError::BadFrameEnd(0).reply_code(), 501);
        assert_eq!(CodecError::UnknownFrameType(9).reply_code(), 501);
        assert_eq!(
            CodecError::UnknownMethod {
                class_id: 60,
                method_id: 999
            }
            .reply_code(),
            540
        );
        assert_eq!(CodecError::malformed("x").reply_code(), 502);
    }
}
