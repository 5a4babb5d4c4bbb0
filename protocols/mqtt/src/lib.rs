//! `ferrymq-mqtt-codec`: a sans-IO codec for MQTT 3.1, 3.1.1 and 5.0.
//!
//! It owns the wire format and nothing else: the fixed header and remaining length (spec §2.1), every control
//! packet (§3) including AUTH, every v5 property with the table of which packet may carry which (§2.2.2), the
//! reason codes (§2.4), and the rules for topic names and filters (§4.7). It does no I/O and keeps no session
//! state: the broker owns a `BytesMut` read buffer and calls [`decode_packet`] until it returns `Ok(None)`,
//! passing the version CONNECT negotiated and the configured maximum packet size, which is checked on the
//! fixed header before the packet is buffered. Replies go out through [`encode_packet`]. Every
//! [`DecodeError`] names the v5 reason code the spec prescribes ([`DecodeError::reason_code`]).
//!
//! Written here rather than on `mqtt-proto`: one set of packet types for all three versions (the broker
//! handles a v3 and a v5 session with the same code), payloads zero-copy as `Bytes` slices of the read buffer,
//! and the house's error and limit conventions, at the cost of about a thousand lines.
//!
//! ```
//! use bytes::BytesMut;
//! use ferrymq_mqtt_codec::*;
//!
//! let publish = Packet::Publish(Publish {
//!     qos: QoS::AtLeastOnce,
//!     topic: "a/b".into(),
//!     packet_id: Some(7),
//!     payload: "hi".into(),
//!     ..Publish::default()
//! });
//! let mut buf = BytesMut::new();
//! encode_packet(&publish, ProtocolVersion::V5, &mut buf);
//! assert_eq!(decode_packet(&mut buf, ProtocolVersion::V5, 1024)?, Some(publish));
//! assert!(buf.is_empty());
//! # Ok::<(), DecodeError>(())
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod decode;
mod encode;
mod error;
mod packet;
mod properties;
mod reason;
pub mod topic;
mod wire;

pub use decode::{FixedHeader, decode_fixed_header, decode_packet};
pub use encode::{encode_packet, encoded_len};
pub use error::DecodeError;
pub use packet::*;
pub use properties::{Properties, PropertyContext};
pub use reason::ReasonCode;
pub use wire::{VARINT_MAX, varint_len};
