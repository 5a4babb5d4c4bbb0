//! Segment summaries: what recovery needs of a sealed segment without reading its bodies.
//!
//! When the writer seals a segment (it rolls to the next one, or the journal is closed) it appends a summary
//! record and then a fixed-size trailer that says where the summary starts, so recovery can find the summary
//! from the end of the file. The summary lists every record of the segment in order (records are back to back,
//! so each one's offset is the previous one's end): for a publish its length, id, queues and [`PublishMeta`]
//! (body size, priority, expiry: some ten bytes instead of the whole record), for every other record its length
//! and its payload verbatim (settles, definitions, checkpoints and deletion records are small and replay needs
//! them whole). So a restart reads summaries and scans only segments that have none: the unsealed last segment,
//! a segment whose summary would not have been much smaller than the segment itself, and segments written by the
//! previous release.
//!
//! Body of a summary record (after its kind octet), all integers LEB128 varints unless noted:
//! `queue count, (vhost len, vhost, name len, name)*, entry count, entry*`, where an entry is
//! - `1 | len | id delta (zigzag, from the previous publish's id) | queue count | queue index* | size |
//!   priority (u8) | expiry kind (u8: 0 none, 1 TTL, 2 deadline; plus 16 when a publish time follows) |
//!   expiry value (if the kind is not 0 or 16) | publish time (if 16 was added)`, or
//! - `2 | len | payload len | payload`.
//!
//! Summaries are checked like any record (their frame's checksum); one that does not check out, or does not end
//! exactly where its trailer starts, is ignored and the segment is scanned instead. What a summary cannot show is
//! damage to a body it does not copy: that is found when the message is read (`reader` checks every frame).

use std::collections::HashMap;

use bytes::{BufMut, Bytes, BytesMut};

use super::fs::SegmentFile;
use super::record::{self, DecodeError, Expiry, Framing, PublishMeta, SUMMARY_END_LEN};
use super::segment::read_full;
use crate::store::{MsgId, QueueKey};

const ENTRY_PUBLISH: u8 = 1;
const ENTRY_OTHER: u8 = 2;
/// Added to an entry's expiry kind when the publish time follows (a message journaled with
/// `recover_publish_time`; summaries written before this existed never have it).
const WITH_PUBLISH_TIME: u8 = 16;

fn put_varint(out: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        out.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// The summary of the head segment, built record by record as the writer appends them.
#[derive(Debug, Default)]
pub(crate) struct SummaryBuilder {
    queue_numbers: HashMap<QueueKey, u64>,
    queues: Vec<QueueKey>,
    entries: BytesMut,
    count: u64,
    last_id: MsgId,
}

impl SummaryBuilder {
    /// Notes a publish record of `len` bytes (frame included).
    pub(crate) fn publish(&mut self, len: u64, id: MsgId, queues: &[QueueKey], meta: &PublishMeta) {
        let numbers: Vec<u64> = queues.iter().map(|q| self.queue_number(q)).collect();
        let e = &mut self.entries;
        e.put_u8(ENTRY_PUBLISH);
        put_varint(e, len);
        put_varint(e, zigzag(id.wrapping_sub(self.last_id) as i64));
        put_varint(e, numbers.len() as u64);
        for n in numbers {
            put_varint(e, n);
        }
        put_varint(e, u64::from(meta.size));
        e.put_u8(meta.priority);
        let with_time = if meta.published_at_ms.is_some() {
            WITH_PUBLISH_TIME
        } else {
            0
        };
        match meta.expiry {
            None => e.put_u8(with_time),
            Some(Expiry::Ttl(ms)) => {
                e.put_u8(1 | with_time);
                put_varint(e, ms);
            }
            Some(Expiry::Deadline(ms)) => {
                e.put_u8(2 | with_time);
                put_varint(e, ms);
            }
        }
        if let Some(at) = meta.published_at_ms {
            put_varint(e, at);
        }
        self.last_id = id;
        self.count += 1;
    }

    /// Notes any other record of `len` bytes (frame included) with its payload.
    pub(crate) fn other(&mut self, len: u64, payload: &[u8]) {
        let e = &mut self.entries;
        e.put_u8(ENTRY_OTHER);
        put_varint(e, len);
        put_varint(e, payload.len() as u64);
        e.put_slice(payload);
        self.count += 1;
    }

    fn queue_number(&mut self, q: &QueueKey) -> u64 {
        if let Some(n) = self.queue_numbers.get(q) {
            return *n;
        }
        let n = self.queues.len() as u64;
        self.queue_numbers.insert(q.clone(), n);
        self.queues.push(q.clone());
        n
    }

    /// Bytes the entries take so far.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The framed summary record.
    pub(crate) fn encode(&self) -> Result<Bytes, DecodeError> {
        let mut body = BytesMut::with_capacity(self.entries.len() + 16 + 32 * self.queues.len());
        put_varint(&mut body, self.queues.len() as u64);
        for q in &self.queues {
            for s in [&q.vhost, &q.name] {
                put_varint(&mut body, s.len() as u64);
                body.put_slice(s.as_bytes());
            }
        }
        put_varint(&mut body, self.count);
        body.put_slice(&self.entries);
        record::encode_summary(&body)
    }
}

/// One record of a summarised segment (a publish's queues are handed out separately, see
/// [`Summary::next_entry`]).
#[derive(Debug, PartialEq)]
pub(crate) enum Entry<'a> {
    Publish {
        len: u64,
        id: MsgId,
        meta: PublishMeta,
    },
    Other {
        len: u64,
        payload: &'a [u8],
    },
}

/// A decoded summary: its queue table and a cursor over its entries.
#[derive(Debug)]
pub(crate) struct Summary<'a> {
    queues: Vec<QueueKey>,
    left: u64,
    buf: &'a [u8],
    last_id: MsgId,
}

fn bad(what: &str) -> DecodeError {
    DecodeError(format!("summary: {what}"))
}

impl<'a> Summary<'a> {
    /// Decodes the queue table of a summary body.
    pub(crate) fn parse(body: &'a [u8]) -> Result<Self, DecodeError> {
        let mut s = Summary {
            queues: Vec::new(),
            left: 0,
            buf: body,
            last_id: 0,
        };
        let n = s.varint()?;
        if n > s.buf.len() as u64 {
            return Err(bad("queue count larger than the summary"));
        }
        for _ in 0..n {
            let vhost = s.string()?;
            let name = s.string()?;
            s.queues.push(QueueKey { vhost, name });
        }
        s.left = s.varint()?;
        if s.left > s.buf.len() as u64 {
            return Err(bad("entry count larger than the summary"));
        }
        Ok(s)
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for (i, b) in self.buf.iter().enumerate().take(10) {
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                self.buf = &self.buf[i + 1..];
                return Ok(v);
            }
        }
        Err(bad("truncated or overlong varint"))
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        let (b, rest) = self.buf.split_first().ok_or_else(|| bad("truncated"))?;
        self.buf = rest;
        Ok(*b)
    }

    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = usize::try_from(self.varint()?).map_err(|_| bad("length"))?;
        if n > self.buf.len() {
            return Err(bad("length runs past the end"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        std::str::from_utf8(self.bytes()?)
            .map(str::to_owned)
            .map_err(|_| bad("queue name is not UTF-8"))
    }

    /// The summary's queue table: what the queue numbers of its publishes refer to.
    pub(crate) fn queues(&self) -> &[QueueKey] {
        &self.queues
    }

    /// The next entry, or `None` after the last one (trailing bytes are an error). For a publish, `queues` is
    /// set to the numbers (in [`Summary::queues`]) of its queues; no allocation per entry.
    pub(crate) fn next_entry(
        &mut self,
        queues: &mut Vec<u32>,
    ) -> Result<Option<Entry<'a>>, DecodeError> {
        if self.left == 0 {
            return if self.buf.is_empty() {
                Ok(None)
            } else {
                Err(bad("trailing bytes"))
            };
        }
        self.left -= 1;
        match self.u8()? {
            ENTRY_PUBLISH => self.publish(queues).map(Some),
            ENTRY_OTHER => {
                let len = self.varint()?;
                let payload = self.bytes()?;
                Ok(Some(Entry::Other { len, payload }))
            }
            tag => Err(bad(&format!("unknown entry tag {tag}"))),
        }
    }

    fn publish(&mut self, queues: &mut Vec<u32>) -> Result<Entry<'a>, DecodeError> {
        let len = self.varint()?;
        let id = self.last_id.wrapping_add(unzigzag(self.varint()?) as u64);
        self.last_id = id;
        let n = self.varint()?;
        if n > self.buf.len() as u64 {
            return Err(bad("queue list larger than the summary"));
        }
        queues.clear();
        for _ in 0..n {
            let q = u32::try_from(self.varint()?).map_err(|_| bad("queue index"))?;
            if q as usize >= self.queues.len() {
                return Err(bad("queue index"));
            }
            queues.push(q);
        }
        let size = u32::try_from(self.varint()?).map_err(|_| bad("body size"))?;
        let priority = self.u8()?;
        let kind = self.u8()?;
        let expiry = match kind & !WITH_PUBLISH_TIME {
            0 => None,
            1 => Some(Expiry::Ttl(self.varint()?)),
            2 => Some(Expiry::Deadline(self.varint()?)),
            k => return Err(bad(&format!("unknown expiry kind {k}"))),
        };
        let published_at_ms = if kind & WITH_PUBLISH_TIME != 0 {
            Some(self.varint()?)
        } else {
            None
        };
        Ok(Entry::Publish {
            len,
            id,
            meta: PublishMeta {
                size,
                priority,
                expiry,
                published_at_ms,
            },
        })
    }
}

/// The summary body of a sealed segment of `len` bytes with this framing, and the offset of the summary
/// record, if the segment ends in a trailer and a summary that check out; `None` means "scan it".
pub(crate) fn read(
    file: &dyn SegmentFile,
    framing: Framing,
    data_start: u64,
    len: u64,
) -> std::io::Result<Option<(Vec<u8>, u64)>> {
    let Framing::V2 { .. } = framing else {
        return Ok(None);
    };
    let end_len = SUMMARY_END_LEN as u64;
    if len < data_start + end_len || len > u64::from(u32::MAX) {
        return Ok(None);
    }
    let trailer_at = len - end_len;
    let Some(trailer) = checked_frame(file, framing, trailer_at, end_len)? else {
        return Ok(None);
    };
    let Some(at) = record::decode_summary_end(&trailer) else {
        return Ok(None);
    };
    if at < data_start || at >= trailer_at {
        return Ok(None);
    }
    let Some(payload) = checked_frame(file, framing, at, trailer_at - at)? else {
        return Ok(None);
    };
    Ok(record::decode_summary(&payload).map(|body| (body.to_vec(), at)))
}

/// The payload of the frame of `len` bytes at `offset`, if it checks out.
fn checked_frame(
    file: &dyn SegmentFile,
    framing: Framing,
    offset: u64,
    len: u64,
) -> std::io::Result<Option<Vec<u8>>> {
    let hlen = framing.header_len();
    let Ok(len) = usize::try_from(len) else {
        return Ok(None);
    };
    if len < hlen || len > record::MAX_RECORD as usize + hlen {
        return Ok(None);
    }
    let mut framed = vec![0u8; len];
    if read_full(file, &mut framed, offset)? < len {
        return Ok(None);
    }
    let header = framing.parse(&framed);
    let payload = &framed[hlen..];
    if header.len as usize != payload.len()
        || u64::from(header.batch) > offset
        || !framing.verify(&header, payload)
    {
        return Ok(None);
    }
    framed.drain(..hlen);
    Ok(Some(framed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_round_trips_every_kind_of_entry() -> Result<(), DecodeError> {
        let mut b = SummaryBuilder::default();
        let (a, c) = (QueueKey::new("/", "a"), QueueKey::new("v", "c"));
        let metas = [
            PublishMeta {
                size: 1024,
                priority: 0,
                expiry: None,
                published_at_ms: None,
            },
            PublishMeta {
                size: 7,
                priority: 9,
                expiry: Some(Expiry::Ttl(60_000)),
                published_at_ms: Some(1_699_999_999_000),
            },
            PublishMeta {
                size: u32::MAX,
                priority: 255,
                expiry: Some(Expiry::Deadline(1_700_000_000_000)),
                published_at_ms: None,
            },
            PublishMeta {
                size: 3,
                priority: 0,
                expiry: None,
                published_at_ms: Some(u64::MAX),
            },
        ];
        b.publish(1100, 40, std::slice::from_ref(&a), &metas[0]);
        b.other(30, b"settle payload");
        b.publish(80, 39, &[a.clone(), c.clone()], &metas[1]);
        b.publish(
            u64::from(u32::MAX),
            u64::MAX,
            std::slice::from_ref(&c),
            &metas[2],
        );
        b.publish(90, 41, std::slice::from_ref(&a), &metas[3]);
        let (a, c) = (a.clone(), c.clone());
        let framed = b.encode()?;
        let body = record::decode_summary(&framed[record::FRAME_HEADER..]).ok_or(bad("kind"))?;
        let mut s = Summary::parse(body)?;
        assert_eq!(s.queues(), &[a, c]);
        let mut got = Vec::new();
        let mut queues = Vec::new();
        while let Some(e) = s.next_entry(&mut queues)? {
            got.push((e, queues.clone()));
        }
        assert_eq!(
            got,
            vec![
                (
                    Entry::Publish {
                        len: 1100,
                        id: 40,
                        meta: metas[0],
                    },
                    vec![0]
                ),
                (
                    Entry::Other {
                        len: 30,
                        payload: b"settle payload",
                    },
                    vec![0]
                ),
                (
                    Entry::Publish {
                        len: 80,
                        id: 39,
                        meta: metas[1],
                    },
                    vec![0, 1]
                ),
                (
                    Entry::Publish {
                        len: u64::from(u32::MAX),
                        id: u64::MAX,
                        meta: metas[2],
                    },
                    vec![1]
                ),
                (
                    Entry::Publish {
                        len: 90,
                        id: 41,
                        meta: metas[3],
                    },
                    vec![0]
                ),
            ]
        );
        Ok(())
    }

    #[test]
    fn every_truncation_of_a_summary_is_an_error_not_a_panic() -> Result<(), DecodeError> {
        let mut b = SummaryBuilder::default();
        b.publish(100, 5, &[QueueKey::new("/", "q")], &PublishMeta::default());
        b.other(20, b"xyz");
        let framed = b.encode()?;
        let body = record::decode_summary(&framed[record::FRAME_HEADER..]).ok_or(bad("kind"))?;
        for cut in 0..body.len() {
            let walk = Summary::parse(&body[..cut]).and_then(|mut s| {
                let mut queues = Vec::new();
                while s.next_entry(&mut queues)?.is_some() {}
                Ok(())
            });
            assert!(walk.is_err(), "cut at {cut} parsed");
        }
        Ok(())
    }
}
