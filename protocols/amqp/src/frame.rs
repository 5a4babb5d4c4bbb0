//! Frames (spec §4.2.3): the protocol header, frame decoding from a read buffer, and frame encoding.
//!
//! Decoding follows the mini-redis shape: [`decode_frame`] looks at a `BytesMut` read buffer, returns
//! `Ok(None)` (consuming nothing) until a whole frame is there, then splits the frame off the buffer. The
//! frame size is checked against `frame_max` from the 7-byte header alone, so an oversize frame is refused
//! before a byte of it is buffered. Body payloads are split off the buffer and frozen, never copied.
//! Encoding appends to a `BytesMut` write buffer; [`encode_content`] is the delivery hot path and splits a
//! body into frames no larger than `frame_max` (spec §4.2.6.2). This module knows nothing of sockets,
//! channels' state or which frame may follow which: that is the session adapter's job (505 UNEXPECTED_FRAME).

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::CodecError;
use crate::method::Method;
use crate::properties::BasicProperties;
use crate::wire::SliceReader;

/// The protocol header a 0-9-1 client sends first, and the server answers a mismatch with (spec §4.2.2).
pub const PROTOCOL_HEADER: [u8; 8] = *b"AMQP\x00\x00\x09\x01";
/// Frame type of a method frame (spec §4.2.3, XML reference §1.2 `frame-method`).
pub const FRAME_METHOD: u8 = 1;
/// Frame type of a content header frame (spec §4.2.6.1, `frame-header`).
pub const FRAME_HEADER: u8 = 2;
/// Frame type of a content body frame (spec §4.2.6.2, `frame-body`).
pub const FRAME_BODY: u8 = 3;
/// Frame type of a heartbeat frame (spec §4.2.7, `frame-heartbeat`).
pub const FRAME_HEARTBEAT: u8 = 8;
/// The octet that ends every frame (spec §4.2.3, `frame-end`).
pub const FRAME_END: u8 = 0xCE;
/// The smallest frame_max a peer may negotiate, and the limit before connection.tune (XML reference §1.2
/// `frame-min-size`).
pub const FRAME_MIN_SIZE: u32 = 4096;
/// Bytes of framing around every payload: type (1), channel (2), size (4) and frame-end (1).
pub const FRAME_OVERHEAD: usize = 8;

/// Size of the frame header: type, channel, payload size (spec §4.2.3).
const HEADER_LEN: usize = 7;
/// Largest capacity [`decode_frame`] reserves ahead for a partly received frame; bounds what a header
/// alone can make us allocate when frame_max is 0 (unlimited).
const RESERVE_AHEAD_MAX: usize = 1 << 20;

/// Result of checking the 8-byte protocol header the client sends first (spec §4.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolHeader {
    /// `AMQP 0 0 9 1`: go on with connection.start.
    Ok,
    /// Anything else: the server must reply with [`PROTOCOL_HEADER`] and close the socket.
    Mismatch,
}

/// Checks the protocol header at the front of `buf` (spec §4.2.2). `None` = fewer than 8 bytes buffered
/// and nothing wrong yet; on `Some`, the 8 header bytes are consumed. A buffered prefix that already differs
/// from the header is `Some(Mismatch)` at once (consuming what was buffered, up to 8 bytes), so a non-AMQP
/// client that sends fewer than 8 bytes is not left waiting.
pub fn decode_protocol_header(buf: &mut BytesMut) -> Option<ProtocolHeader> {
    let n = buf.len().min(PROTOCOL_HEADER.len());
    if buf[..n] != PROTOCOL_HEADER[..n] {
        buf.advance(n);
        return Some(ProtocolHeader::Mismatch);
    }
    if n < PROTOCOL_HEADER.len() {
        return None;
    }
    buf.advance(n);
    Some(ProtocolHeader::Ok)
}

/// A content header (spec §4.2.6.1): the class of the content-bearing method, the total body size, and
/// the basic properties.
#[derive(Debug, Clone, Default)]
pub struct ContentHeader {
    /// Class id; must equal the preceding method's class (60, basic). The adapter checks this.
    pub class_id: u16,
    /// Total size of the body carried by the following body frames.
    pub body_size: u64,
    /// The message's properties.
    pub properties: BasicProperties,
    /// The property flags and properties exactly as decoded, so a broker can pass them on byte for byte with
    /// [`RawProperties`]; empty for a header built in code. They are copied out of the frame into a buffer of
    /// their own (they are small), so a message that keeps them does not pin the read buffer; the headers
    /// table in `properties` shares that buffer. Not compared by `==`, and not used by
    /// [`ContentHeader::encode`], which encodes `properties`.
    pub raw_properties: Bytes,
}

impl PartialEq for ContentHeader {
    fn eq(&self, other: &Self) -> bool {
        self.class_id == other.class_id
            && self.body_size == other.body_size
            && self.properties == other.properties
    }
}

/// Properties that can be written into a content header: decoded [`BasicProperties`], or [`RawProperties`]
/// already encoded.
pub trait EncodeProperties {
    /// Appends the property flags and the properties (spec §4.2.6.1).
    fn encode_properties(&self, out: &mut BytesMut);
}

impl EncodeProperties for BasicProperties {
    fn encode_properties(&self, out: &mut BytesMut) {
        self.encode(out);
    }
}

/// Properties already encoded (flags word and properties, as [`ContentHeader::raw_properties`] holds them).
#[derive(Debug, Clone, Copy)]
pub struct RawProperties<'a>(pub &'a [u8]);

impl EncodeProperties for RawProperties<'_> {
    fn encode_properties(&self, out: &mut BytesMut) {
        out.put_slice(self.0);
    }
}

impl ContentHeader {
    /// Writes the header frame payload: class id, weight (0), body size, property flags and properties
    /// (spec §4.2.6.1).
    pub fn encode(&self, out: &mut BytesMut) {
        encode_header_payload(self.class_id, self.body_size, &self.properties, out);
    }

    /// Reads a whole header frame payload (spec §4.2.6.1). The weight is ignored; bytes left over after
    /// the properties are [`CodecError::Malformed`].
    pub fn decode(payload: &mut Bytes) -> Result<Self, CodecError> {
        let header = Self::decode_boxed(payload)?;
        payload.advance(payload.len());
        Ok(*header)
    }

    /// [`ContentHeader::decode`] from the payload where it lies, into a box: the header is large and is not
    /// moved once decoded.
    fn decode_boxed(payload: &[u8]) -> Result<Box<Self>, CodecError> {
        let mut r = SliceReader::new(payload);
        let class_id = r.u16()?;
        let _weight = r.u16()?;
        let body_size = r.u64()?;
        let mut header = Box::new(Self {
            class_id,
            body_size,
            properties: BasicProperties::default(),
            raw_properties: Bytes::copy_from_slice(&payload[r.pos()..]),
        });
        let header_ref = &mut *header;
        let used = header_ref
            .properties
            .read_from(&header_ref.raw_properties)?;
        let trailing = header_ref.raw_properties.len() - used;
        if trailing > 0 {
            return Err(CodecError::Malformed(format!(
                "{trailing} trailing bytes after content header properties"
            )));
        }
        Ok(header)
    }
}

fn encode_header_payload<P: EncodeProperties + ?Sized>(
    class_id: u16,
    body_size: u64,
    properties: &P,
    out: &mut BytesMut,
) {
    out.put_u16(class_id);
    out.put_u16(0);
    out.put_u64(body_size);
    properties.encode_properties(out);
}

/// One AMQP frame (spec §4.2.3), with the channel it arrived on or is sent to.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// A method frame (spec §4.2.4): channel, method.
    Method(u16, Method),
    /// A content header frame (spec §4.2.6.1): channel, header. Boxed: the properties are large, and every
    /// frame would otherwise be moved around at their size.
    Header(u16, Box<ContentHeader>),
    /// A content body frame (spec §4.2.6.2): channel, payload (zero-copy slice of the read buffer).
    Body(u16, Bytes),
    /// A heartbeat frame (spec §4.2.7): channel (must be 0; the adapter checks).
    Heartbeat(u16),
}

impl Frame {
    /// The channel the frame belongs to (0 = the connection itself, spec §4.3).
    pub fn channel(&self) -> u16 {
        match self {
            Self::Method(channel, _)
            | Self::Header(channel, _)
            | Self::Body(channel, _)
            | Self::Heartbeat(channel) => *channel,
        }
    }
}

/// Decodes one frame from the front of `buf` if a whole one is buffered (spec §4.2.3).
///
/// `Ok(None)` means more bytes are needed; nothing is consumed then (and capacity for the rest of the
/// frame may be reserved). `max_frame_size` is the negotiated frame_max, the largest total frame size
/// including the 8 framing bytes; 0 means no limit, as in connection.tune. Checks happen in this order:
/// frame size against `max_frame_size` ([`CodecError::FrameTooLarge`]) and frame type
/// ([`CodecError::UnknownFrameType`]) as soon as the 7-byte header is buffered; then, once the whole
/// frame is, the frame-end octet ([`CodecError::BadFrameEnd`]); then the payload. After an error the
/// connection must be closed; the buffer's contents are unspecified.
pub fn decode_frame(buf: &mut BytesMut, max_frame_size: u32) -> Result<Option<Frame>, CodecError> {
    decode_frame_with(buf, max_frame_size, BodyPayload::Split)
}

/// How [`decode_frame_with`] hands out the payload of a body frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyPayload {
    /// Split off the read buffer without a copy: it shares the buffer's allocation and keeps it alive.
    Split,
    /// Copied into an allocation of its own: for a small body that would otherwise keep a large read buffer
    /// alive as long as the message lives.
    Copied,
}

/// [`decode_frame`], choosing how a body frame's payload is handed out (other frames decode the same way).
pub fn decode_frame_with(
    buf: &mut BytesMut,
    max_frame_size: u32,
    body: BodyPayload,
) -> Result<Option<Frame>, CodecError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let kind = buf[0];
    let channel = u16::from_be_bytes([buf[1], buf[2]]);
    let size = u32::from_be_bytes([buf[3], buf[4], buf[5], buf[6]]);
    let total = u64::from(size) + FRAME_OVERHEAD as u64;
    if max_frame_size != 0 && total > u64::from(max_frame_size) {
        return Err(CodecError::FrameTooLarge {
            size: total,
            max: max_frame_size,
        });
    }
    if !matches!(
        kind,
        FRAME_METHOD | FRAME_HEADER | FRAME_BODY | FRAME_HEARTBEAT
    ) {
        return Err(CodecError::UnknownFrameType(kind));
    }
    let total = usize::try_from(total).map_err(|_| CodecError::FrameTooLarge {
        size: total,
        max: max_frame_size,
    })?;
    if buf.len() < total {
        buf.reserve((total - buf.len()).min(RESERVE_AHEAD_MAX));
        return Ok(None);
    }
    let end = buf[total - 1];
    if end != FRAME_END {
        return Err(CodecError::BadFrameEnd(end));
    }
    // Content headers and the hot methods are read where they lie; other methods and bodies are split off
    // the buffer (their byte-string fields and the body are zero-copy slices of it).
    let payload = &buf[HEADER_LEN..total - 1];
    let frame = match kind {
        FRAME_METHOD => match Method::decode_in_place(payload) {
            Some(method) => Frame::Method(channel, method),
            None => {
                return Ok(Some(Frame::Method(
                    channel,
                    Method::decode(&mut split_payload(buf, total))?,
                )));
            }
        },
        FRAME_HEADER => Frame::Header(channel, ContentHeader::decode_boxed(payload)?),
        FRAME_BODY if body == BodyPayload::Copied => {
            Frame::Body(channel, Bytes::copy_from_slice(payload))
        }
        FRAME_BODY => return Ok(Some(Frame::Body(channel, split_payload(buf, total)))),
        _ => {
            if !payload.is_empty() {
                return Err(CodecError::malformed("heartbeat frame with a payload"));
            }
            Frame::Heartbeat(channel)
        }
    };
    buf.advance(total);
    Ok(Some(frame))
}

/// Takes the frame of `total` bytes off the front of `buf`, returning its payload without a copy.
fn split_payload(buf: &mut BytesMut, total: usize) -> Bytes {
    buf.advance(HEADER_LEN);
    let payload = buf.split_to(total - FRAME_OVERHEAD).freeze();
    buf.advance(1);
    payload
}

/// Appends one frame: header, the payload `write` produces, frame-end (spec §4.2.3).
fn put_frame(out: &mut BytesMut, kind: u8, channel: u16, write: impl FnOnce(&mut BytesMut)) {
    let start = out.len();
    out.put_u8(kind);
    out.put_u16(channel);
    out.put_u32(0);
    write(out);
    let size = out.len() - start - HEADER_LEN;
    let size = u32::try_from(size).unwrap_or(u32::MAX);
    out[start + 3..start + HEADER_LEN].copy_from_slice(&size.to_be_bytes());
    out.put_u8(FRAME_END);
}

/// Appends one frame of any type (spec §4.2.3).
pub fn encode_frame(frame: &Frame, out: &mut BytesMut) {
    match frame {
        Frame::Method(channel, method) => encode_method(*channel, method, out),
        Frame::Header(channel, header) => {
            put_frame(out, FRAME_HEADER, *channel, |out| header.encode(out))
        }
        Frame::Body(channel, body) => encode_body(*channel, body, out),
        Frame::Heartbeat(channel) => put_frame(out, FRAME_HEARTBEAT, *channel, |_| {}),
    }
}

/// Appends a method frame (spec §4.2.4).
pub fn encode_method(channel: u16, method: &Method, out: &mut BytesMut) {
    put_frame(out, FRAME_METHOD, channel, |out| method.encode(out));
}

fn encode_body(channel: u16, chunk: &[u8], out: &mut BytesMut) {
    put_frame(out, FRAME_BODY, channel, |out| out.put_slice(chunk));
}

/// The largest body payload per frame under `frame_max` (0 = no limit). A frame_max below
/// [`FRAME_MIN_SIZE`] is not a legal negotiation outcome (XML reference §1.2 `frame-min-size`: every peer
/// accepts frames that large), so it is treated as [`FRAME_MIN_SIZE`].
fn body_chunk_size(frame_max: u32) -> usize {
    if frame_max == 0 {
        return usize::MAX;
    }
    let frame_max = usize::try_from(frame_max.max(FRAME_MIN_SIZE)).unwrap_or(usize::MAX);
    frame_max - FRAME_OVERHEAD
}

/// Appends a content-bearing method with its content (spec §4.2.6): the method frame, a content header
/// frame, then body frames of at most `frame_max` bytes each (no body frames for an empty body). This is
/// the hot path for basic.deliver, basic.get-ok and basic.return. `frame_max` 0 means no limit; values
/// below [`FRAME_MIN_SIZE`] are treated as [`FRAME_MIN_SIZE`]. Only body frames are split: the method and
/// header frames must fit in frame_max on their own (spec §4.2.6.1), which names of at most 255 bytes and
/// properties of ordinary size do.
pub fn encode_content<P: EncodeProperties + ?Sized>(
    channel: u16,
    method: &Method,
    class_id: u16,
    properties: &P,
    body: &Bytes,
    frame_max: u32,
    out: &mut BytesMut,
) {
    let chunk = body_chunk_size(frame_max);
    let body_frames = body.len().div_ceil(chunk);
    // One reservation for the whole message; the method and header frames are usually well under 256 bytes.
    out.reserve(256 + body.len() + body_frames * FRAME_OVERHEAD);
    encode_method(channel, method, out);
    encode_header_and_body(channel, class_id, properties, body, chunk, out);
}

/// The content header frame and the body frames (at most `chunk` bytes each) that follow a content method.
fn encode_header_and_body<P: EncodeProperties + ?Sized>(
    channel: u16,
    class_id: u16,
    properties: &P,
    body: &Bytes,
    chunk: usize,
    out: &mut BytesMut,
) {
    put_frame(out, FRAME_HEADER, channel, |out| {
        encode_header_payload(class_id, body.len() as u64, properties, out);
    });
    for piece in body.chunks(chunk) {
        encode_body(channel, piece, out);
    }
}

/// Appends basic.deliver with its content, writing the names straight from borrowed strings: the consumer
/// hot path, where building a [`Method::BasicDeliver`] would allocate three strings per message. Produces the
/// same bytes as [`encode_content`] with the equivalent method (class 60, method 60; spec §1.8.3.9).
#[allow(clippy::too_many_arguments)]
pub fn encode_deliver<P: EncodeProperties + ?Sized>(
    channel: u16,
    consumer_tag: &str,
    delivery_tag: u64,
    redelivered: bool,
    exchange: &str,
    routing_key: &str,
    properties: &P,
    body: &Bytes,
    frame_max: u32,
    out: &mut BytesMut,
) {
    let chunk = body_chunk_size(frame_max);
    let body_frames = body.len().div_ceil(chunk);
    out.reserve(256 + body.len() + body_frames * FRAME_OVERHEAD);
    put_frame(out, FRAME_METHOD, channel, |out| {
        out.put_u16(60);
        out.put_u16(60);
        crate::wire::put_shortstr(out, consumer_tag);
        out.put_u64(delivery_tag);
        out.put_u8(u8::from(redelivered));
        crate::wire::put_shortstr(out, exchange);
        crate::wire::put_shortstr(out, routing_key);
    });
    encode_header_and_body(channel, 60, properties, body, chunk, out);
}

/// Appends a heartbeat frame: type 8, channel 0, empty payload (spec §4.2.7).
pub fn encode_heartbeat(out: &mut BytesMut) {
    put_frame(out, FRAME_HEARTBEAT, 0, |_| {});
}
