//! MQTT's words for what went wrong: [`MqttError`] is why a connection ends (with the v5 reason code its
//! DISCONNECT or CONNACK carries; a v3 connection is just closed [MQTT-4.8.0-1]), and [`reason_for`] maps the
//! core's protocol-neutral [`CoreError`] to the reason code a PUBACK, SUBACK or CONNACK answers with.

use ferrymq_mqtt_codec::{DecodeError, ReasonCode};

use crate::core::{CoreError, ErrorClass};

/// Why a connection ends.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    /// The socket failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The client sent bytes the codec refused.
    #[error("bad packet: {0}")]
    Decode(#[from] DecodeError),
    /// The client broke a rule of the protocol (second CONNECT, unknown packet id, bad topic alias...).
    #[error("protocol violation: {text}")]
    Protocol {
        /// The v5 reason code for DISCONNECT.
        reason: ReasonCode,
        /// For the log and the v5 reason string.
        text: &'static str,
    },
    /// The core refused something the connection cannot go on without.
    #[error("core: {0}")]
    Core(Box<CoreError>),
}

impl From<CoreError> for MqttError {
    fn from(e: CoreError) -> Self {
        Self::Core(Box::new(e))
    }
}

impl MqttError {
    /// A protocol violation with its reason code.
    pub fn protocol(reason: ReasonCode, text: &'static str) -> Self {
        Self::Protocol { reason, text }
    }

    /// The reason code of the DISCONNECT a v5 client is sent before the close.
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            Self::Io(_) => ReasonCode::UNSPECIFIED_ERROR,
            Self::Decode(e) => e.reason_code(),
            Self::Protocol { reason, .. } => *reason,
            Self::Core(e) => reason_for(e),
        }
    }
}

/// The reason code for a core refusal (v5 §2.4): permissions become 0x87 Not authorized, limits 0x97 Quota
/// exceeded, a store failure 0x80 Unspecified error.
pub fn reason_for(error: &CoreError) -> ReasonCode {
    match error.class() {
        ErrorClass::AccessRefused | ErrorClass::NotAllowed => ReasonCode::NOT_AUTHORIZED,
        ErrorClass::LimitExceeded => ReasonCode::QUOTA_EXCEEDED,
        ErrorClass::ResourceLocked => ReasonCode::SESSION_TAKEN_OVER,
        ErrorClass::NotFound | ErrorClass::PreconditionFailed => {
            ReasonCode::IMPLEMENTATION_SPECIFIC_ERROR
        }
        ErrorClass::Store => ReasonCode::UNSPECIFIED_ERROR,
    }
}
