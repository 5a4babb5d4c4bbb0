//! `ferrymq-amqp-codec`: a sans-IO codec for AMQP 0-9-1 with RabbitMQ's extensions.
//!
//! It owns the wire format and nothing else: the protocol header (spec §4.2.2), frames (§4.2.3), method
//! arguments (§4.2.4), field tables (§4.2.5.5, with RabbitMQ's type tags) and content headers and bodies
//! (§4.2.6). It does no I/O and keeps no connection state: the broker's session adapter owns a `BytesMut`
//! read buffer, calls [`decode_protocol_header`] once and then [`decode_frame`] until it returns `Ok(None)`,
//! and writes replies with [`encode_method`] / [`encode_content`] / [`encode_heartbeat`] into its write
//! buffer. Which frame may follow which (content after publish, 505 UNEXPECTED_FRAME, channel state) is
//! the adapter's business, as is turning a [`CodecError`] into `connection.close` with
//! [`CodecError::reply_code`].
//!
//! ```
//! use bytes::{Bytes, BytesMut};
//! use ferrymq_amqp_codec::*;
//!
//! // What a client sends: the protocol header, then a publish with its content.
//! let mut read_buf = BytesMut::from(&PROTOCOL_HEADER[..]);
//! let publish = Method::BasicPublish(BasicPublish {
//!     routing_key: "hello".into(),
//!     ..Default::default()
//! });
//! let body = Bytes::from_static(b"hi");
//! encode_content(1, &publish, class::BASIC, &BasicProperties::default(), &body, FRAME_MIN_SIZE, &mut read_buf);
//!
//! // What the adapter does with it.
//! assert_eq!(decode_protocol_header(&mut read_buf), Some(ProtocolHeader::Ok));
//! let mut frames = Vec::new();
//! while let Some(frame) = decode_frame(&mut read_buf, FRAME_MIN_SIZE)? {
//!     frames.push(frame);
//! }
//! assert_eq!(frames.len(), 3); // method, content header, one body frame
//! assert_eq!(frames[2], Frame::Body(1, body));
//! # Ok::<(), CodecError>(())
//! ```
//!
//! Section numbers cite the AMQP 0-9-1 specification (amqp0-9-1.pdf, "spec §4.2.x") and its generated XML
//! reference (amqp-xml-doc0-9-1.pdf, "XML reference §1.x"); RabbitMQ extensions follow RabbitMQ's
//! `amqp0-9-1.extended.xml`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod frame;
mod method;
mod properties;
mod table;
mod wire;

pub use error::{CodecError, reply_code};
pub use frame::{
    BodyPayload, ContentHeader, EncodeProperties, FRAME_BODY, FRAME_END, FRAME_HEADER,
    FRAME_HEARTBEAT, FRAME_METHOD, FRAME_MIN_SIZE, FRAME_OVERHEAD, Frame, PROTOCOL_HEADER,
    ProtocolHeader, RawProperties, decode_frame, decode_frame_with, decode_protocol_header,
    encode_content, encode_deliver, encode_frame, encode_heartbeat, encode_method,
};
pub use method::*;
pub use properties::BasicProperties;
pub use table::{
    FieldTable, FieldValue, MAX_NESTING_DEPTH, ShortStr, decode_field_table, decode_field_value,
    encode_field_table, encode_field_value,
};
