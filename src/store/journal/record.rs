//! The journal's record format: how one publish, settle, definition change, checkpoint or segment deletion is
//! laid out as bytes, and back.
//!
//! A framed record is a frame header followed by the payload, which starts with a kind octet. Two frame formats
//! exist (the segment header says which one a segment uses, see [`Framing`]):
//! - version 1: `len: u32 LE | crc: u32 LE`, where `crc` is CRC32C over the four length bytes and the payload;
//! - version 2: `len: u32 LE | crc: u32 LE | batch: u32 LE`, where `batch` is the offset in the segment at which
//!   the write batch holding the record began (the segment's synced length when it was appended), and `crc` is
//!   CRC32C over the segment number and the segment's random salt (both `u64` LE, from the segment header), then
//!   the length, the batch offset and the payload. Seeding the checksum with the segment's identity is what
//!   SQLite's WAL (salt-1/salt-2 in every frame header) and RocksDB's recyclable log format (the log number in
//!   every record header) do: a valid record of an earlier incarnation of the file, exposed again by a file
//!   system after a crash, fails the check instead of being replayed. The batch offset lets recovery tell a
//!   torn last batch from damage in synced data (see `recovery`).
//!
//! Appenders encode a record with an empty version-2 frame header (length only, see [`encode_publish`] and
//! friends); the writer, which alone knows the segment, offset and batch a record lands in, fills in the batch
//! offset and the checksum with [`Framing::seal`] as it copies the record into its write buffer.
//!
//! Integers are little-endian; strings and byte strings carry a `u32` length. A message's metadata and
//! definition arguments are the core's opaque bytes ([`Opaque`]), stored as they are given.
//!
//! Format 1 records (a publish of kind 1, definitions of kinds 7, 9, 11 and 12) are still read: their metadata
//! and arguments come back as [`Format::Format1`] bytes, with priority and expiry found by `format1`. New
//! records use kind 8 for a publish and kinds 13 to 16 for definitions with arguments.
//!
//! Decoding never trusts a length or a count: each is checked against the bytes left in the payload before
//! anything is allocated, and any mismatch is a [`DecodeError`] (the caller turns it into `StoreError::Corrupt`
//! with the segment and offset). This module does no I/O and knows nothing of segments or the writer.

use bytes::{BufMut, Bytes, BytesMut};

use super::format1;
use crate::store::{
    Binding, Definition, DestinationKind, Format, MsgId, Opaque, QueueKey, StoredMessage,
};

/// Bytes of the (version 2) frame header in front of each payload: length, CRC and batch offset.
pub(crate) const FRAME_HEADER: usize = 12;
/// Bytes of a version 1 frame header: length and CRC.
pub(crate) const FRAME_HEADER_V1: usize = 8;

/// The largest payload a record may have. A length field above it is corruption, never an allocation.
pub(crate) const MAX_RECORD: u32 = 256 * 1024 * 1024;

/// A format 1 publish (AMQP properties inside); read, never written.
const KIND_PUBLISH_FORMAT1: u8 = 1;
const KIND_SETTLE: u8 = 2;
const KIND_DEFINE: u8 = 3;
const KIND_CHECKPOINT: u8 = 4;
const KIND_SEGMENT_DELETED: u8 = 5;
const KIND_SUMMARY: u8 = 6;
const KIND_SUMMARY_END: u8 = 7;

/// Length of a framed summary trailer (see [`encode_summary_end`]): frame header, kind, offset.
pub(crate) const SUMMARY_END_LEN: usize = FRAME_HEADER + 1 + 8;
const KIND_PUBLISH: u8 = 8;

/// Flags of a publish's message part (the octet after the publish time): a deadline follows.
const MESSAGE_HAS_DEADLINE: u8 = 1;
/// ... and recovery hands the publish time back (`StoredMessage::recover_publish_time`). Records written before
/// this flag existed have only 0 or 1 there.
const MESSAGE_RECOVER_PUBLISH_TIME: u8 = 2;

/// A payload that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct DecodeError(pub(crate) String);

impl DecodeError {
    fn new(what: impl Into<String>) -> Self {
        Self(what.into())
    }
}

/// The state a segment starts from: written as the first record of every segment, so that older segments hold
/// only messages and can be deleted without losing definitions.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Checkpoint {
    /// No message id below this is ever handed out again.
    pub(crate) next_id: MsgId,
    /// The segments that existed when this one was started (used to detect a missing segment).
    pub(crate) segments: Vec<u64>,
    /// All durable definitions in force, in an order that replays to the same state.
    pub(crate) definitions: Vec<Definition>,
}

/// When a message expires, as recovery hands it to its queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expiry {
    /// A per-message TTL in milliseconds (format 1's `expiration` property), counted from the recovery.
    Ttl(u64),
    /// An absolute deadline in milliseconds since the Unix epoch (what a publish journals since format 2).
    Deadline(u64),
}

/// What the store needs of a publish besides its id and queues: body size, priority, expiry, and the publish
/// time of a message journaled with `recover_publish_time`. Everything that
/// learns these from a message goes through [`PublishMeta::new`], so a change of what a publish carries is made
/// in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct PublishMeta {
    pub(crate) size: u32,
    pub(crate) priority: u8,
    pub(crate) expiry: Option<Expiry>,
    /// The publish time (ms since the Unix epoch), for a message journaled with `recover_publish_time`.
    pub(crate) published_at_ms: Option<u64>,
}

impl PublishMeta {
    /// The meta of `message`.
    pub(crate) fn of(message: &StoredMessage) -> Self {
        Self {
            size: u32::try_from(message.body.len()).unwrap_or(u32::MAX),
            priority: message.priority,
            expiry: message.expires_at_ms.map(Expiry::Deadline),
            published_at_ms: message
                .recover_publish_time
                .then_some(message.published_at_ms),
        }
    }

    /// The deadline to restore the message with, in milliseconds since the Unix epoch (a format 1 TTL counts
    /// from `now_ms`, the recovery).
    pub(crate) fn deadline_ms(&self, now_ms: u64) -> Option<u64> {
        match self.expiry? {
            Expiry::Ttl(ttl) => Some(now_ms.saturating_add(ttl)),
            Expiry::Deadline(at) => Some(at),
        }
    }
}

/// A decoded publish record.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PublishRecord {
    pub(crate) id: MsgId,
    pub(crate) queues: Vec<QueueKey>,
    pub(crate) message: StoredMessage,
}

/// A decoded record payload.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Record {
    Publish(Box<PublishRecord>),
    Settle {
        queue: QueueKey,
        id: MsgId,
    },
    Define(Definition),
    Checkpoint(Checkpoint),
    /// A segment is about to be removed: its absence afterwards is expected, not a lost file.
    SegmentDeleted {
        segment: u64,
    },
    /// A sealed segment's summary, or the trailer that points at it (see `summary`); replay skips both.
    Summary,
}

// ---- framing ----

/// Starts a framed record: reserves the frame header and writes the kind octet.
fn begin(kind: u8, capacity: usize) -> BytesMut {
    let mut out = BytesMut::with_capacity(FRAME_HEADER + 1 + capacity);
    out.put_bytes(0, FRAME_HEADER);
    out.put_u8(kind);
    out
}

/// Fills in the length of a record started with [`begin`]; the writer seals the rest (see [`Framing::seal`]).
fn finish(mut out: BytesMut) -> Result<Bytes, DecodeError> {
    let len = u32::try_from(out.len() - FRAME_HEADER)
        .ok()
        .filter(|len| *len <= MAX_RECORD)
        .ok_or_else(|| {
            DecodeError::new(format!(
                "record of {} bytes exceeds the journal's maximum of {MAX_RECORD}",
                out.len()
            ))
        })?;
    out[0..4].copy_from_slice(&len.to_le_bytes());
    Ok(out.freeze())
}

/// How the frames of one segment are laid out and checked (the segment header says which).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// Format version 1: `len | crc(len, payload)`.
    V1,
    /// Format version 2: `len | crc(segment, salt, len, batch, payload) | batch`; `seed` is the CRC32C state
    /// after the segment number and salt.
    V2 { seed: u32 },
}

/// A frame header as read from disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameHeader {
    /// Payload length.
    pub(crate) len: u32,
    /// The checksum the frame carries.
    pub(crate) crc: u32,
    /// Where the write batch holding the frame began (version 2; 0 for version 1).
    pub(crate) batch: u32,
}

impl Framing {
    /// The version 2 framing of segment `number` with header salt `salt`.
    pub(crate) fn v2(number: u64, salt: u64) -> Self {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&number.to_le_bytes());
        id[8..].copy_from_slice(&salt.to_le_bytes());
        Framing::V2 {
            seed: crc32c::crc32c(&id),
        }
    }

    /// Bytes of the frame header in front of each payload.
    pub(crate) fn header_len(self) -> usize {
        match self {
            Framing::V1 => FRAME_HEADER_V1,
            Framing::V2 { .. } => FRAME_HEADER,
        }
    }

    /// Parses a frame header (`bytes` holds at least [`Framing::header_len`] bytes).
    pub(crate) fn parse(self, bytes: &[u8]) -> FrameHeader {
        let word = |at: usize| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        FrameHeader {
            len: word(0),
            crc: word(4),
            batch: match self {
                Framing::V1 => 0,
                Framing::V2 { .. } => word(8),
            },
        }
    }

    /// The checksum a frame with this length, batch offset and payload must carry.
    pub(crate) fn crc(self, len: u32, batch: u32, payload: &[u8]) -> u32 {
        match self {
            Framing::V1 => crc32c::crc32c_append(crc32c::crc32c(&len.to_le_bytes()), payload),
            Framing::V2 { seed } => {
                let mut head = [0u8; 8];
                head[..4].copy_from_slice(&len.to_le_bytes());
                head[4..].copy_from_slice(&batch.to_le_bytes());
                crc32c::crc32c_append(crc32c::crc32c_append(seed, &head), payload)
            }
        }
    }

    /// Whether `header` checks out against `payload` (whose length the caller took from the header).
    pub(crate) fn verify(self, header: &FrameHeader, payload: &[u8]) -> bool {
        self.crc(header.len, header.batch, payload) == header.crc
    }

    /// Completes a frame encoded by this module (version 2 header with its length filled in) for the segment
    /// this framing belongs to, in a write batch that began at offset `batch`. Version 1 frames are never
    /// written.
    pub(crate) fn seal(self, frame: &mut [u8], batch: u32) {
        let len = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]);
        let crc = self.crc(len, batch, &frame[FRAME_HEADER..]);
        frame[4..8].copy_from_slice(&crc.to_le_bytes());
        frame[8..12].copy_from_slice(&batch.to_le_bytes());
    }
}

/// Re-frames a record encoded by this module in the version 1 format (what the previous release wrote), for
/// tests that check version 1 segments are still read.
#[cfg(test)]
pub(crate) fn frame_v1(record: &[u8]) -> Vec<u8> {
    let payload = &record[FRAME_HEADER..];
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(FRAME_HEADER_V1 + payload.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&Framing::V1.crc(len, 0, payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

// ---- encoding ----

fn put_str(out: &mut BytesMut, s: &str) {
    put_bytes(out, s.as_bytes());
}

fn put_bytes(out: &mut BytesMut, b: &[u8]) {
    // Lengths above u32::MAX cannot be framed anyway: `finish` rejects records above MAX_RECORD, and a string
    // that long makes the record longer than that.
    out.put_u32_le(u32::try_from(b.len()).unwrap_or(u32::MAX));
    out.put_slice(b);
}

fn put_count(out: &mut BytesMut, n: usize) {
    out.put_u32_le(u32::try_from(n).unwrap_or(u32::MAX));
}

fn put_queue(out: &mut BytesMut, q: &QueueKey) {
    put_str(out, &q.vhost);
    put_str(out, &q.name);
}

/// Writes a nested item with a `u32` length slot in front of it.
fn put_nested(out: &mut BytesMut, f: impl FnOnce(&mut BytesMut)) {
    let slot = out.len();
    out.put_u32_le(0);
    f(out);
    let len = u32::try_from(out.len() - slot - 4).unwrap_or(u32::MAX);
    out[slot..slot + 4].copy_from_slice(&len.to_le_bytes());
}

/// The part of a publish payload after the id and queue list: what compaction copies verbatim. The metadata
/// must be in the current format (a format 1 message is only ever copied verbatim, under its own kind).
fn put_message(out: &mut BytesMut, m: &StoredMessage) {
    out.put_u8(m.priority);
    out.put_u64_le(m.published_at_ms);
    let time_flag = if m.recover_publish_time {
        MESSAGE_RECOVER_PUBLISH_TIME
    } else {
        0
    };
    match m.expires_at_ms {
        None => out.put_u8(time_flag),
        Some(at) => {
            out.put_u8(MESSAGE_HAS_DEADLINE | time_flag);
            out.put_u64_le(at);
        }
    }
    put_bytes(out, &m.meta.bytes);
    put_bytes(out, &m.body);
}

fn put_publish_head(out: &mut BytesMut, id: MsgId, queues: &[QueueKey]) {
    out.put_u64_le(id);
    put_count(out, queues.len());
    for q in queues {
        put_queue(out, q);
    }
}

/// A framed publish record: the body is written once, whatever the number of queues.
pub(crate) fn encode_publish(
    id: MsgId,
    queues: &[QueueKey],
    message: &StoredMessage,
) -> Result<Bytes, DecodeError> {
    if message.meta.format != Format::Current {
        return Err(DecodeError::new(
            "a new publish must carry current-format metadata",
        ));
    }
    let mut out = begin(
        KIND_PUBLISH,
        128 + message.meta.bytes.len() + message.body.len(),
    );
    put_publish_head(&mut out, id, queues);
    put_message(&mut out, message);
    finish(out)
}

/// A framed publish record for a message part taken verbatim from an older record (compaction), with the
/// queue list narrowed to the queues still holding it.
pub(crate) fn reencode_publish(
    head: &PublishHead<'_>,
    queues: &[QueueKey],
) -> Result<Bytes, DecodeError> {
    let (id, message_part) = (head.id, head.part);
    let mut out = begin(head.kind, 64 + message_part.len());
    put_publish_head(&mut out, id, queues);
    out.put_slice(message_part);
    finish(out)
}

/// A framed settle record.
pub(crate) fn encode_settle(queue: &QueueKey, id: MsgId) -> Result<Bytes, DecodeError> {
    let mut out = begin(KIND_SETTLE, 16 + queue.vhost.len() + queue.name.len());
    put_queue(&mut out, queue);
    out.put_u64_le(id);
    finish(out)
}

/// A framed definition record.
pub(crate) fn encode_define(def: &Definition) -> Result<Bytes, DecodeError> {
    let mut out = begin(KIND_DEFINE, 64);
    put_definition(&mut out, def);
    finish(out)
}

/// A framed checkpoint record.
pub(crate) fn encode_checkpoint(cp: &Checkpoint) -> Result<Bytes, DecodeError> {
    let mut out = begin(KIND_CHECKPOINT, 64 + 64 * cp.definitions.len());
    out.put_u64_le(cp.next_id);
    put_count(&mut out, cp.segments.len());
    for s in &cp.segments {
        out.put_u64_le(*s);
    }
    put_count(&mut out, cp.definitions.len());
    for d in &cp.definitions {
        put_nested(&mut out, |out| put_definition(out, d));
    }
    finish(out)
}

/// A framed summary record around an encoded summary body (see `summary`).
pub(crate) fn encode_summary(body: &[u8]) -> Result<Bytes, DecodeError> {
    let mut out = begin(KIND_SUMMARY, body.len());
    out.put_slice(body);
    finish(out)
}

/// The framed trailer that ends a sealed segment: where its summary record starts.
pub(crate) fn encode_summary_end(summary_offset: u64) -> Result<Bytes, DecodeError> {
    let mut out = begin(KIND_SUMMARY_END, 8);
    out.put_u64_le(summary_offset);
    finish(out)
}

/// The offset of the summary a trailer payload points at, or `None` if it is not a trailer.
pub(crate) fn decode_summary_end(payload: &[u8]) -> Option<u64> {
    let mut r = Reader { buf: payload };
    if r.u8("record kind").ok()? != KIND_SUMMARY_END {
        return None;
    }
    let offset = r.u64("summary offset").ok()?;
    r.end("summary trailer").ok()?;
    Some(offset)
}

/// The body of a summary record payload, or `None` if it is not one.
pub(crate) fn decode_summary(payload: &[u8]) -> Option<&[u8]> {
    match payload.split_first() {
        Some((&KIND_SUMMARY, body)) => Some(body),
        _ => None,
    }
}

/// A framed segment-deleted record.
pub(crate) fn encode_segment_deleted(segment: u64) -> Result<Bytes, DecodeError> {
    let mut out = begin(KIND_SEGMENT_DELETED, 8);
    out.put_u64_le(segment);
    finish(out)
}

const DEF_VHOST: u8 = 1;
const DEF_DELETE_VHOST: u8 = 2;
const DEF_USER: u8 = 3;
const DEF_DELETE_USER: u8 = 4;
const DEF_PERMISSION: u8 = 5;
const DEF_DELETE_PERMISSION: u8 = 6;
const DEF_EXCHANGE: u8 = 7;
const DEF_DELETE_EXCHANGE: u8 = 8;
const DEF_QUEUE: u8 = 9;
const DEF_DELETE_QUEUE: u8 = 10;
const DEF_BIND: u8 = 11;
const DEF_UNBIND: u8 = 12;
const DEF_EXCHANGE2: u8 = 13;
const DEF_QUEUE2: u8 = 14;
const DEF_BIND2: u8 = 15;
const DEF_UNBIND2: u8 = 16;
const DEF_RETAINED: u8 = 17;
const DEF_DELETE_RETAINED: u8 = 18;

/// The kind to write for a definition with arguments: the format 1 kind for format 1 arguments (kept as they
/// were read, e.g. when a checkpoint copies a recovered definition), the current kind otherwise.
fn kind_for(args: &Opaque, format1: u8, current: u8) -> u8 {
    match args.format {
        Format::Format1 => format1,
        Format::Current => current,
    }
}

/// Arguments as their format lays them out: a format 1 field table carries its own length prefix.
fn put_args(out: &mut BytesMut, args: &Opaque) {
    match args.format {
        Format::Format1 => out.put_slice(&args.bytes),
        Format::Current => put_bytes(out, &args.bytes),
    }
}

fn put_definition(out: &mut BytesMut, def: &Definition) {
    match def {
        Definition::VHost { name } => {
            out.put_u8(DEF_VHOST);
            put_str(out, name);
        }
        Definition::DeleteVHost { name } => {
            out.put_u8(DEF_DELETE_VHOST);
            put_str(out, name);
        }
        Definition::User {
            name,
            password_hash,
            tags,
        } => {
            out.put_u8(DEF_USER);
            put_str(out, name);
            put_str(out, password_hash);
            put_count(out, tags.len());
            for t in tags {
                put_str(out, t);
            }
        }
        Definition::DeleteUser { name } => {
            out.put_u8(DEF_DELETE_USER);
            put_str(out, name);
        }
        Definition::Permission {
            user,
            vhost,
            configure,
            write,
            read,
        } => {
            out.put_u8(DEF_PERMISSION);
            for s in [user, vhost, configure, write, read] {
                put_str(out, s);
            }
        }
        Definition::DeletePermission { user, vhost } => {
            out.put_u8(DEF_DELETE_PERMISSION);
            put_str(out, user);
            put_str(out, vhost);
        }
        Definition::Exchange {
            vhost,
            name,
            kind,
            auto_delete,
            internal,
            arguments,
        } => {
            out.put_u8(kind_for(arguments, DEF_EXCHANGE, DEF_EXCHANGE2));
            for s in [vhost, name, kind] {
                put_str(out, s);
            }
            out.put_u8(u8::from(*auto_delete));
            out.put_u8(u8::from(*internal));
            put_args(out, arguments);
        }
        Definition::DeleteExchange { vhost, name } => {
            out.put_u8(DEF_DELETE_EXCHANGE);
            put_str(out, vhost);
            put_str(out, name);
        }
        Definition::Queue {
            vhost,
            name,
            auto_delete,
            arguments,
        } => {
            out.put_u8(kind_for(arguments, DEF_QUEUE, DEF_QUEUE2));
            put_str(out, vhost);
            put_str(out, name);
            out.put_u8(u8::from(*auto_delete));
            put_args(out, arguments);
        }
        Definition::DeleteQueue { vhost, name } => {
            out.put_u8(DEF_DELETE_QUEUE);
            put_str(out, vhost);
            put_str(out, name);
        }
        Definition::Bind(b) => {
            out.put_u8(kind_for(&b.arguments, DEF_BIND, DEF_BIND2));
            put_binding(out, b);
        }
        Definition::Unbind(b) => {
            out.put_u8(kind_for(&b.arguments, DEF_UNBIND, DEF_UNBIND2));
            put_binding(out, b);
        }
        Definition::Retained {
            vhost,
            key,
            meta,
            body,
        } => {
            out.put_u8(DEF_RETAINED);
            put_str(out, vhost);
            put_str(out, key);
            put_bytes(out, &meta.bytes);
            put_bytes(out, body);
        }
        Definition::DeleteRetained { vhost, key } => {
            out.put_u8(DEF_DELETE_RETAINED);
            put_str(out, vhost);
            put_str(out, key);
        }
    }
}

fn put_binding(out: &mut BytesMut, b: &Binding) {
    for s in [&b.vhost, &b.source, &b.destination] {
        put_str(out, s);
    }
    out.put_u8(match b.destination_kind {
        DestinationKind::Queue => 0,
        DestinationKind::Exchange => 1,
    });
    put_str(out, &b.routing_key);
    put_args(out, &b.arguments);
}

// ---- decoding ----

/// A bounds-checked reader over one payload.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], DecodeError> {
        if n > self.buf.len() {
            return Err(DecodeError::new(format!(
                "{what}: needs {n} bytes, only {} left in the record",
                self.buf.len()
            )));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn u8(&mut self, what: &str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }

    fn u32(&mut self, what: &str) -> Result<u32, DecodeError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self, what: &str) -> Result<u64, DecodeError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn bool(&mut self, what: &str) -> Result<bool, DecodeError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(DecodeError::new(format!("{what}: {v} is not a boolean"))),
        }
    }

    fn bytes(&mut self, what: &str) -> Result<&'a [u8], DecodeError> {
        let len = self.u32(what)? as usize;
        self.take(len, what)
    }

    fn string(&mut self, what: &str) -> Result<String, DecodeError> {
        let b = self.bytes(what)?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| DecodeError::new(format!("{what}: not valid UTF-8")))
    }

    /// A count of items each at least `min_size` bytes long, checked against what is left.
    fn count(&mut self, min_size: usize, what: &str) -> Result<usize, DecodeError> {
        let n = self.u32(what)? as usize;
        if n.saturating_mul(min_size) > self.buf.len() {
            return Err(DecodeError::new(format!(
                "{what}: {n} items cannot fit in the {} bytes left",
                self.buf.len()
            )));
        }
        Ok(n)
    }

    fn queue(&mut self) -> Result<QueueKey, DecodeError> {
        Ok(QueueKey {
            vhost: self.string("queue vhost")?,
            name: self.string("queue name")?,
        })
    }

    /// Definition arguments: a format 1 field table (with its big-endian length prefix, kept in the bytes) or
    /// current-format bytes.
    fn args(&mut self, format: Format, what: &str) -> Result<Opaque, DecodeError> {
        let bytes = match format {
            Format::Format1 => {
                let len = match self.buf.get(..4) {
                    Some(b) => u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize,
                    None => return Err(DecodeError::new(format!("{what}: truncated length"))),
                };
                self.take(4usize.saturating_add(len), what)?
            }
            Format::Current => self.bytes(what)?,
        };
        Ok(Opaque {
            format,
            bytes: Bytes::copy_from_slice(bytes),
        })
    }

    fn end(&self, what: &str) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::new(format!(
                "{what}: {} unexpected trailing bytes",
                self.buf.len()
            )))
        }
    }
}

/// Decodes a payload (the bytes after the frame header, CRC already verified).
pub(crate) fn decode(payload: &[u8]) -> Result<Record, DecodeError> {
    let mut r = Reader { buf: payload };
    let record = match r.u8("record kind")? {
        kind @ (KIND_PUBLISH | KIND_PUBLISH_FORMAT1) => {
            let head = publish_parts(kind, &mut r)?;
            Record::Publish(Box::new(PublishRecord {
                id: head.id,
                message: decode_message(&head)?,
                queues: head.queues,
            }))
        }
        KIND_SETTLE => {
            let queue = r.queue()?;
            let id = r.u64("settle id")?;
            Record::Settle { queue, id }
        }
        KIND_DEFINE => Record::Define(get_definition(&mut r)?),
        KIND_CHECKPOINT => Record::Checkpoint(get_checkpoint(&mut r)?),
        KIND_SEGMENT_DELETED => Record::SegmentDeleted {
            segment: r.u64("deleted segment")?,
        },
        KIND_SUMMARY | KIND_SUMMARY_END => {
            r.buf = &[];
            Record::Summary
        }
        kind => return Err(DecodeError::new(format!("unknown record kind {kind}"))),
    };
    r.end("record")?;
    Ok(record)
}

/// For compaction: the id, queue list and verbatim message part of a publish payload, or `None` for any other
/// kind of record.
pub(crate) fn decode_publish_head(payload: &[u8]) -> Result<Option<PublishHead<'_>>, DecodeError> {
    let mut r = Reader { buf: payload };
    match r.u8("record kind")? {
        kind @ (KIND_PUBLISH | KIND_PUBLISH_FORMAT1) => publish_parts(kind, &mut r).map(Some),
        _ => Ok(None),
    }
}

/// A publish record's kind, id, queue list, and its message part as raw bytes.
#[derive(Debug)]
pub(crate) struct PublishHead<'a> {
    pub(crate) kind: u8,
    pub(crate) id: MsgId,
    pub(crate) queues: Vec<QueueKey>,
    pub(crate) part: &'a [u8],
}

fn publish_parts<'a>(kind: u8, r: &mut Reader<'a>) -> Result<PublishHead<'a>, DecodeError> {
    let id = r.u64("publish id")?;
    let n = r.count(8, "publish queue count")?;
    let mut queues = Vec::with_capacity(n);
    for _ in 0..n {
        queues.push(r.queue()?);
    }
    let part = r.buf;
    r.buf = &[];
    Ok(PublishHead {
        kind,
        id,
        queues,
        part,
    })
}

/// A publish payload's id, queues and meta, without copying its body: what recovery reads of a publish.
pub(crate) fn decode_publish_meta(
    payload: &[u8],
) -> Result<Option<(MsgId, Vec<QueueKey>, PublishMeta)>, DecodeError> {
    let Some(head) = decode_publish_head(payload)? else {
        return Ok(None);
    };
    let meta = message_part_meta(head.kind, head.part)?;
    Ok(Some((head.id, head.queues, meta)))
}

/// The meta of a publish payload's message part (see [`decode_publish_head`]), without copying the body.
pub(crate) fn message_part_meta(kind: u8, part: &[u8]) -> Result<PublishMeta, DecodeError> {
    let mut r = Reader { buf: part };
    if kind == KIND_PUBLISH_FORMAT1 {
        r.bytes("exchange")?;
        r.bytes("routing key")?;
        let fields = format1::fields(r.bytes("properties")?).map_err(DecodeError::new)?;
        let body = r.bytes("body")?;
        r.end("message")?;
        return Ok(PublishMeta {
            size: u32::try_from(body.len()).unwrap_or(u32::MAX),
            priority: fields.priority,
            expiry: fields.ttl_ms.map(Expiry::Ttl),
            published_at_ms: None,
        });
    }
    let priority = r.u8("priority")?;
    let published_at_ms = r.u64("publish time")?;
    let flags = r.u8("message flags")?;
    let expiry = if flags & MESSAGE_HAS_DEADLINE != 0 {
        Some(Expiry::Deadline(r.u64("expiry")?))
    } else {
        None
    };
    r.bytes("metadata")?;
    let body = r.bytes("body")?;
    r.end("message")?;
    Ok(PublishMeta {
        size: u32::try_from(body.len()).unwrap_or(u32::MAX),
        priority,
        expiry,
        published_at_ms: (flags & MESSAGE_RECOVER_PUBLISH_TIME != 0).then_some(published_at_ms),
    })
}

fn decode_message(head: &PublishHead<'_>) -> Result<StoredMessage, DecodeError> {
    let mut r = Reader { buf: head.part };
    if head.kind == KIND_PUBLISH_FORMAT1 {
        let exchange = r.bytes("exchange")?;
        let routing_key = r.bytes("routing key")?;
        let properties = r.bytes("properties")?;
        let meta_len = 12 + exchange.len() + routing_key.len() + properties.len();
        let fields = format1::fields(properties).map_err(DecodeError::new)?;
        let body = Bytes::copy_from_slice(r.bytes("body")?);
        r.end("message")?;
        return Ok(StoredMessage {
            meta: Opaque {
                format: Format::Format1,
                bytes: Bytes::copy_from_slice(&head.part[..meta_len]),
            },
            body,
            priority: fields.priority,
            expires_at_ms: fields
                .ttl_ms
                .map(|ttl| crate::store::now_ms().saturating_add(ttl)),
            published_at_ms: 0,
            recover_publish_time: false,
        });
    }
    let priority = r.u8("priority")?;
    let published_at_ms = r.u64("publish time")?;
    let flags = r.u8("message flags")?;
    let expires_at_ms = if flags & MESSAGE_HAS_DEADLINE != 0 {
        Some(r.u64("expiry")?)
    } else {
        None
    };
    let meta = Opaque::current(Bytes::copy_from_slice(r.bytes("metadata")?));
    let body = Bytes::copy_from_slice(r.bytes("body")?);
    r.end("message")?;
    Ok(StoredMessage {
        meta,
        body,
        priority,
        expires_at_ms,
        published_at_ms,
        recover_publish_time: flags & MESSAGE_RECOVER_PUBLISH_TIME != 0,
    })
}

fn get_checkpoint(r: &mut Reader<'_>) -> Result<Checkpoint, DecodeError> {
    let next_id = r.u64("checkpoint next id")?;
    let n = r.count(8, "checkpoint segment count")?;
    let mut segments = Vec::with_capacity(n);
    for _ in 0..n {
        segments.push(r.u64("checkpoint segment")?);
    }
    let n = r.count(5, "checkpoint definition count")?;
    let mut definitions = Vec::with_capacity(n);
    for _ in 0..n {
        let mut inner = Reader {
            buf: r.bytes("checkpoint definition")?,
        };
        definitions.push(get_definition(&mut inner)?);
        inner.end("checkpoint definition")?;
    }
    Ok(Checkpoint {
        next_id,
        segments,
        definitions,
    })
}

/// The arguments format of a definition kind: its format 1 kind or the current one.
fn args_format(kind: u8, format1: u8) -> Format {
    if kind == format1 {
        Format::Format1
    } else {
        Format::Current
    }
}

fn get_definition(r: &mut Reader<'_>) -> Result<Definition, DecodeError> {
    let def = match r.u8("definition kind")? {
        DEF_VHOST => Definition::VHost {
            name: r.string("vhost")?,
        },
        DEF_DELETE_VHOST => Definition::DeleteVHost {
            name: r.string("vhost")?,
        },
        DEF_USER => {
            let name = r.string("user")?;
            let password_hash = r.string("password hash")?;
            let n = r.count(4, "tag count")?;
            let mut tags = Vec::with_capacity(n);
            for _ in 0..n {
                tags.push(r.string("tag")?);
            }
            Definition::User {
                name,
                password_hash,
                tags,
            }
        }
        DEF_DELETE_USER => Definition::DeleteUser {
            name: r.string("user")?,
        },
        DEF_PERMISSION => Definition::Permission {
            user: r.string("user")?,
            vhost: r.string("vhost")?,
            configure: r.string("configure")?,
            write: r.string("write")?,
            read: r.string("read")?,
        },
        DEF_DELETE_PERMISSION => Definition::DeletePermission {
            user: r.string("user")?,
            vhost: r.string("vhost")?,
        },
        kind @ (DEF_EXCHANGE | DEF_EXCHANGE2) => Definition::Exchange {
            vhost: r.string("vhost")?,
            name: r.string("exchange")?,
            kind: r.string("exchange type")?,
            auto_delete: r.bool("auto-delete")?,
            internal: r.bool("internal")?,
            arguments: r.args(args_format(kind, DEF_EXCHANGE), "exchange arguments")?,
        },
        DEF_DELETE_EXCHANGE => Definition::DeleteExchange {
            vhost: r.string("vhost")?,
            name: r.string("exchange")?,
        },
        kind @ (DEF_QUEUE | DEF_QUEUE2) => Definition::Queue {
            vhost: r.string("vhost")?,
            name: r.string("queue")?,
            auto_delete: r.bool("auto-delete")?,
            arguments: r.args(args_format(kind, DEF_QUEUE), "queue arguments")?,
        },
        DEF_DELETE_QUEUE => Definition::DeleteQueue {
            vhost: r.string("vhost")?,
            name: r.string("queue")?,
        },
        kind @ (DEF_BIND | DEF_UNBIND | DEF_BIND2 | DEF_UNBIND2) => {
            let vhost = r.string("vhost")?;
            let source = r.string("binding source")?;
            let destination = r.string("binding destination")?;
            let destination_kind = match r.u8("destination kind")? {
                0 => DestinationKind::Queue,
                1 => DestinationKind::Exchange,
                v => {
                    return Err(DecodeError::new(format!(
                        "unknown binding destination kind {v}"
                    )));
                }
            };
            let routing_key = r.string("routing key")?;
            let format1 = kind == DEF_BIND || kind == DEF_UNBIND;
            let format = if format1 {
                Format::Format1
            } else {
                Format::Current
            };
            let arguments = r.args(format, "binding arguments")?;
            let binding = Binding {
                vhost,
                source,
                destination,
                destination_kind,
                routing_key,
                arguments,
            };
            if kind == DEF_BIND || kind == DEF_BIND2 {
                Definition::Bind(binding)
            } else {
                Definition::Unbind(binding)
            }
        }
        DEF_RETAINED => Definition::Retained {
            vhost: r.string("vhost")?,
            key: r.string("retained key")?,
            meta: Opaque::current(Bytes::copy_from_slice(r.bytes("retained meta")?)),
            body: Bytes::copy_from_slice(r.bytes("retained body")?),
        },
        DEF_DELETE_RETAINED => Definition::DeleteRetained {
            vhost: r.string("vhost")?,
            key: r.string("retained key")?,
        },
        kind => return Err(DecodeError::new(format!("unknown definition kind {kind}"))),
    };
    Ok(def)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(framed: &Bytes) -> &[u8] {
        &framed[FRAME_HEADER..]
    }

    fn table() -> Opaque {
        Opaque::current(Bytes::from_static(b"\x01core table bytes"))
    }

    /// An AMQP field table as format 1 wrote it: big-endian length, then `k` = long string "v".
    fn format1_table() -> Opaque {
        Opaque {
            format: Format::Format1,
            bytes: Bytes::from_static(b"\x00\x00\x00\x08\x01kS\x00\x00\x00\x01v"),
        }
    }

    fn every_definition() -> Vec<Definition> {
        vec![
            Definition::VHost { name: "v".into() },
            Definition::DeleteVHost { name: "v".into() },
            Definition::User {
                name: "u".into(),
                password_hash: "h".into(),
                tags: vec!["a".into(), "b".into()],
            },
            Definition::DeleteUser { name: "u".into() },
            Definition::Permission {
                user: "u".into(),
                vhost: "/".into(),
                configure: ".*".into(),
                write: "w".into(),
                read: "".into(),
            },
            Definition::DeletePermission {
                user: "u".into(),
                vhost: "/".into(),
            },
            Definition::Exchange {
                vhost: "/".into(),
                name: "e".into(),
                kind: "topic".into(),
                auto_delete: true,
                internal: false,
                arguments: table(),
            },
            Definition::DeleteExchange {
                vhost: "/".into(),
                name: "e".into(),
            },
            Definition::Queue {
                vhost: "/".into(),
                name: "q".into(),
                auto_delete: false,
                arguments: table(),
            },
            Definition::DeleteQueue {
                vhost: "/".into(),
                name: "q".into(),
            },
            Definition::Bind(Binding {
                vhost: "/".into(),
                source: "e".into(),
                destination: "q".into(),
                destination_kind: DestinationKind::Queue,
                routing_key: "a.#".into(),
                arguments: table(),
            }),
            Definition::Unbind(Binding {
                vhost: "/".into(),
                source: "e".into(),
                destination: "e2".into(),
                destination_kind: DestinationKind::Exchange,
                routing_key: "".into(),
                arguments: Opaque::default(),
            }),
            Definition::Retained {
                vhost: "/".into(),
                key: "a.b".into(),
                meta: table(),
                body: Bytes::from_static(b"retained body"),
            },
            Definition::DeleteRetained {
                vhost: "/".into(),
                key: "a.b".into(),
            },
            Definition::Queue {
                vhost: "/".into(),
                name: "old".into(),
                auto_delete: false,
                arguments: format1_table(),
            },
            Definition::Bind(Binding {
                vhost: "/".into(),
                source: "e".into(),
                destination: "old".into(),
                destination_kind: DestinationKind::Queue,
                routing_key: "k".into(),
                arguments: format1_table(),
            }),
        ]
    }

    #[test]
    fn every_definition_round_trips() -> Result<(), DecodeError> {
        for def in every_definition() {
            let framed = encode_define(&def)?;
            assert_eq!(decode(payload(&framed))?, Record::Define(def));
        }
        Ok(())
    }

    #[test]
    fn publish_round_trips_with_properties_and_queues() -> Result<(), DecodeError> {
        for (expires_at_ms, recover_publish_time) in
            [(Some(99), false), (None, true), (Some(99), true)]
        {
            let message = StoredMessage {
                meta: Opaque::current(Bytes::from_static(b"meta")),
                body: Bytes::from_static(b"hello"),
                priority: 3,
                expires_at_ms,
                published_at_ms: 12,
                recover_publish_time,
            };
            let queues = vec![QueueKey::new("/", "q1"), QueueKey::new("v", "q2")];
            let framed = encode_publish(7, &queues, &message)?;
            let want = Record::Publish(Box::new(PublishRecord {
                id: 7,
                queues: queues.clone(),
                message: message.clone(),
            }));
            assert_eq!(decode(payload(&framed))?, want);

            let Some(head) = decode_publish_head(payload(&framed))? else {
                panic!("not a publish");
            };
            assert_eq!((head.id, &head.queues), (7, &queues));
            let meta = message_part_meta(head.kind, head.part)?;
            assert_eq!(meta, PublishMeta::of(&message));
            assert_eq!(meta.published_at_ms, recover_publish_time.then_some(12));
            let narrowed = reencode_publish(&head, &queues[1..])?;
            let want = Record::Publish(Box::new(PublishRecord {
                id: 7,
                queues: queues[1..].to_vec(),
                message,
            }));
            assert_eq!(decode(payload(&narrowed))?, want);
        }
        Ok(())
    }

    #[test]
    fn checkpoint_settle_and_deletion_round_trip() -> Result<(), DecodeError> {
        let cp = Checkpoint {
            next_id: 42,
            segments: vec![1, 5, 9],
            definitions: every_definition(),
        };
        assert_eq!(
            decode(payload(&encode_checkpoint(&cp)?))?,
            Record::Checkpoint(cp)
        );
        let q = QueueKey::new("/", "q");
        assert_eq!(
            decode(payload(&encode_settle(&q, 3)?))?,
            Record::Settle { queue: q, id: 3 }
        );
        assert_eq!(
            decode(payload(&encode_segment_deleted(4)?))?,
            Record::SegmentDeleted { segment: 4 }
        );
        Ok(())
    }

    #[test]
    fn a_sealed_frame_checks_out_only_for_its_own_segment_salt_and_batch() -> Result<(), DecodeError>
    {
        let mut framed = encode_segment_deleted(4)?.to_vec();
        let framing = Framing::v2(7, 0xfeed);
        framing.seal(&mut framed, 16);
        let header = framing.parse(&framed);
        assert_eq!(header.len as usize, framed.len() - FRAME_HEADER);
        assert_eq!(header.batch, 16);
        let body = &framed[FRAME_HEADER..];
        assert!(framing.verify(&header, body));
        assert!(
            !Framing::v2(8, 0xfeed).verify(&header, body),
            "another segment"
        );
        assert!(
            !Framing::v2(7, 0xbeef).verify(&header, body),
            "another incarnation"
        );
        let moved = FrameHeader {
            batch: 17,
            ..header
        };
        assert!(!framing.verify(&moved, body), "another batch");
        let longer = FrameHeader {
            len: header.len + 1,
            ..header
        };
        assert!(!framing.verify(&longer, body), "another length");
        Ok(())
    }

    #[test]
    fn a_version_1_frame_checks_length_and_payload() -> Result<(), DecodeError> {
        let framed = frame_v1(&encode_segment_deleted(4)?);
        let header = Framing::V1.parse(&framed);
        assert_eq!(header.len as usize, framed.len() - FRAME_HEADER_V1);
        let body = &framed[FRAME_HEADER_V1..];
        assert!(Framing::V1.verify(&header, body));
        assert_eq!(decode(body)?, Record::SegmentDeleted { segment: 4 });
        let longer = FrameHeader {
            len: header.len + 1,
            ..header
        };
        assert!(!Framing::V1.verify(&longer, body));
        Ok(())
    }

    #[test]
    fn huge_counts_are_rejected_before_allocating() {
        // A checkpoint claiming u32::MAX segments in a 20-byte payload.
        let mut p = vec![KIND_CHECKPOINT];
        p.extend_from_slice(&0u64.to_le_bytes());
        p.extend_from_slice(&u32::MAX.to_le_bytes());
        p.extend_from_slice(&[0; 8]);
        let err = decode(&p).expect_err("must not decode");
        assert!(err.0.contains("cannot fit"), "{err}");
    }

    #[test]
    fn every_truncation_of_a_payload_is_an_error_not_a_panic() -> Result<(), DecodeError> {
        let def = every_definition().remove(6);
        let framed = encode_define(&def)?;
        let p = payload(&framed);
        for cut in 0..p.len() {
            assert!(decode(&p[..cut]).is_err(), "cut at {cut} decoded");
        }
        Ok(())
    }
}
