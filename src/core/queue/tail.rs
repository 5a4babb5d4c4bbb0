//! The paged tail of a ready level: the part of a backlog whose bodies are only on the store, kept in a compact
//! form so that a queue's memory does not grow with its backlog (about 8 bytes a message).
//!
//! The tail is a sequence of segments. A paged segment is a [`Chunk`] of up to [`CHUNK_MESSAGES`] messages
//! holding per message only its store id, as an `i32` delta from the chunk's base id (ids of one queue are close
//! but not always increasing: concurrent publishers take ids before their publishes reach the queue), and its
//! body size; tags are consecutive steps within a chunk ([`TAG_STEP`]) so none is stored, `redelivered` is one
//! flag per chunk (only recovered messages are paged redelivered, and they come in one run), and per-message
//! deadlines are a parallel vector kept only by chunks that have any. The priority is the level's. A message
//! that does not fit the chunk being filled (tag gap, delta overflow, other flag, full chunk) starts a new one.
//! A loaded segment is one [`Entry`] with its body: a transient message that arrived while the level had a
//! paged tail, kept in place so the level keeps publish order.
//!
//! Messages leave the tail only from its front, in order.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use super::entry::{Deadline, Entry, StoreRef, TAG_STEP};
use crate::core::message::Message;
use crate::store::MsgId;

/// Messages per chunk at most (4096 × 8 bytes: a 32 KiB allocation).
pub(super) const CHUNK_MESSAGES: usize = 4096;

/// A paged message: store id as a delta from its chunk's base, and body size.
#[derive(Clone, Copy)]
struct Slot {
    id: i32,
    size: u32,
}

/// A run of paged messages with consecutive tags (see the module docs).
struct Chunk {
    /// Tag of `slots[0]`; `slots[i]` has `first_tag + i * TAG_STEP`.
    first_tag: u64,
    /// Store id the deltas count from.
    base: MsgId,
    /// Index of the first slot still in the tail (the ones before it were popped).
    start: usize,
    redelivered: bool,
    slots: Vec<Slot>,
    /// Deadlines parallel to `slots`, once any message of the chunk has one.
    deadlines: Option<Vec<Deadline>>,
}

impl Chunk {
    fn new(tag: u64, id: MsgId, size: u32, deadline: Deadline, redelivered: bool) -> Self {
        Self {
            first_tag: tag,
            base: id,
            start: 0,
            redelivered,
            slots: vec![Slot { id: 0, size }],
            deadlines: deadline.is_some().then(|| vec![deadline]),
        }
    }

    fn tag_at(&self, i: usize) -> u64 {
        self.first_tag + i as u64 * TAG_STEP
    }

    fn id_at(&self, i: usize) -> MsgId {
        self.base.wrapping_add_signed(i64::from(self.slots[i].id))
    }

    fn deadline_at(&self, i: usize) -> Deadline {
        self.deadlines.as_ref().map_or(Deadline::NONE, |d| d[i])
    }

    fn live(&self) -> usize {
        self.slots.len() - self.start
    }

    /// Appends the message if it belongs to this chunk; false if it must start a new one.
    fn try_push(
        &mut self,
        tag: u64,
        id: MsgId,
        size: u32,
        deadline: Deadline,
        redelivered: bool,
    ) -> bool {
        let n = self.slots.len();
        if n >= CHUNK_MESSAGES || redelivered != self.redelivered || tag != self.tag_at(n) {
            return false;
        }
        let Ok(delta) = i32::try_from(i128::from(id) - i128::from(self.base)) else {
            return false;
        };
        self.slots.push(Slot { id: delta, size });
        match &mut self.deadlines {
            Some(d) => d.push(deadline),
            None if deadline.is_some() => {
                let mut d = vec![Deadline::NONE; n];
                d.push(deadline);
                self.deadlines = Some(d);
            }
            None => {}
        }
        true
    }

    /// No more messages will be appended: give back the growth slack.
    fn seal(&mut self) {
        self.slots.shrink_to_fit();
        if let Some(d) = &mut self.deadlines {
            d.shrink_to_fit();
        }
    }

    fn entry_at(&self, i: usize, priority: u8) -> Entry {
        Entry {
            tag: self.tag_at(i),
            message: None,
            store_id: StoreRef::new(Some(self.id_at(i))),
            expires_at: self.deadline_at(i),
            size: self.slots[i].size,
            priority,
            redelivered: self.redelivered,
        }
    }

    #[cfg(test)]
    fn heap_bytes(&self) -> usize {
        size_of::<Chunk>()
            + self.slots.capacity() * size_of::<Slot>()
            + self
                .deadlines
                .as_ref()
                .map_or(0, |d| d.capacity() * size_of::<Deadline>())
    }
}

enum Segment {
    Paged(Box<Chunk>),
    Loaded(Entry),
}

/// See the module docs.
pub(super) struct PagedTail {
    /// The level's priority, given to the entries popped from paged segments.
    priority: u8,
    segments: VecDeque<Segment>,
    len: usize,
    bytes: u64,
}

impl PagedTail {
    pub(super) fn new(priority: u8) -> Self {
        Self {
            priority,
            segments: VecDeque::new(),
            len: 0,
            bytes: 0,
        }
    }

    /// Messages in the tail, paged or loaded.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Body bytes of the messages in the tail, paged or loaded.
    #[cfg(test)]
    pub(super) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Appends an entry: kept compact if it is paged (no body, a store id), as it is otherwise. Tags must grow.
    pub(super) fn push(&mut self, entry: Entry) {
        self.len += 1;
        self.bytes += u64::from(entry.size);
        let id = match entry.store_id.get() {
            Some(id) if entry.is_paged() => id,
            _ => {
                self.seal_back();
                self.segments.push_back(Segment::Loaded(entry));
                return;
            }
        };
        if let Some(Segment::Paged(chunk)) = self.segments.back_mut()
            && chunk.try_push(
                entry.tag,
                id,
                entry.size,
                entry.expires_at,
                entry.redelivered,
            )
        {
            return;
        }
        self.seal_back();
        self.segments.push_back(Segment::Paged(Box::new(Chunk::new(
            entry.tag,
            id,
            entry.size,
            entry.expires_at,
            entry.redelivered,
        ))));
    }

    fn seal_back(&mut self) {
        if let Some(Segment::Paged(chunk)) = self.segments.back_mut() {
            chunk.seal();
        }
    }

    /// The tag of the first message.
    pub(super) fn front_tag(&self) -> Option<u64> {
        match self.segments.front()? {
            Segment::Paged(c) => Some(c.tag_at(c.start)),
            Segment::Loaded(e) => Some(e.tag),
        }
    }

    /// The expiry deadline of the first message.
    pub(super) fn front_deadline(&self) -> Option<Instant> {
        match self.segments.front()? {
            Segment::Paged(c) => c.deadline_at(c.start).get(),
            Segment::Loaded(e) => e.expires_at.get(),
        }
    }

    /// Whether the first message is paged (its body must be read back before it can be delivered).
    pub(super) fn front_is_paged(&self) -> bool {
        matches!(self.segments.front(), Some(Segment::Paged(_)))
    }

    /// Takes the first message (as a paged [`Entry`] if it is paged).
    pub(super) fn pop_front(&mut self) -> Option<Entry> {
        let entry = match self.segments.front_mut()? {
            Segment::Paged(c) => {
                let entry = c.entry_at(c.start, self.priority);
                c.start += 1;
                if c.live() == 0 {
                    self.segments.pop_front();
                }
                entry
            }
            Segment::Loaded(_) => match self.segments.pop_front() {
                Some(Segment::Loaded(e)) => e,
                _ => return None,
            },
        };
        self.len -= 1;
        self.bytes -= u64::from(entry.size);
        if self.segments.capacity() > 64 && self.segments.len() * 4 < self.segments.capacity() {
            self.segments.shrink_to(self.segments.len() * 2);
        }
        Some(entry)
    }

    /// Takes the first message only if it is loaded.
    pub(super) fn pop_loaded_front(&mut self) -> Option<Entry> {
        if matches!(self.segments.front(), Some(Segment::Loaded(_))) {
            self.pop_front()
        } else {
            None
        }
    }

    /// The tags and store ids of the paged messages at the front, up to the first loaded one, at most
    /// `max_messages` of them and, past the first, at most `max_bytes` of bodies in all.
    pub(super) fn paged_front(&self, max_messages: usize, max_bytes: u64) -> Vec<(u64, MsgId)> {
        let mut out = Vec::new();
        let mut bytes = 0u64;
        for segment in &self.segments {
            let Segment::Paged(c) = segment else {
                break;
            };
            for i in c.start..c.slots.len() {
                let size = u64::from(c.slots[i].size);
                if out.len() >= max_messages || (!out.is_empty() && bytes + size > max_bytes) {
                    return out;
                }
                bytes += size;
                out.push((c.tag_at(i), c.id_at(i)));
            }
        }
        out
    }

    /// Every message in the tail as (deadline, body if loaded, store id if paged), in order.
    pub(super) fn each(
        &self,
    ) -> impl Iterator<Item = (Deadline, Option<&Arc<Message>>, Option<MsgId>)> {
        self.segments.iter().flat_map(|s| {
            let (chunk, entry) = match s {
                Segment::Paged(c) => (Some(c), None),
                Segment::Loaded(e) => (None, Some(e)),
            };
            let paged = chunk.into_iter().flat_map(|c| {
                (c.start..c.slots.len()).map(|i| (c.deadline_at(i), None, Some(c.id_at(i))))
            });
            let loaded = entry
                .into_iter()
                .map(|e| (e.expires_at, e.message.as_ref(), e.store_id.get()));
            paged.chain(loaded)
        })
    }

    /// Applies `f` to the deadline of every message in the tail.
    pub(super) fn each_deadline_mut(&mut self, mut f: impl FnMut(&mut Deadline)) {
        for segment in &mut self.segments {
            match segment {
                Segment::Paged(c) => {
                    let start = c.start;
                    if let Some(d) = &mut c.deadlines {
                        d[start..].iter_mut().for_each(&mut f);
                    }
                }
                Segment::Loaded(e) => f(&mut e.expires_at),
            }
        }
    }

    /// The loaded messages in the tail.
    pub(super) fn loaded(&self) -> impl Iterator<Item = &Entry> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Loaded(e) => Some(e),
            Segment::Paged(_) => None,
        })
    }

    /// Empties the tail, handing every message out in order (paged ones as paged entries, read from nothing).
    pub(super) fn drain(&mut self) -> impl Iterator<Item = Entry> + use<> {
        let priority = self.priority;
        self.len = 0;
        self.bytes = 0;
        std::mem::take(&mut self.segments).into_iter().flat_map(
            move |segment| -> Box<dyn Iterator<Item = Entry>> {
                match segment {
                    Segment::Loaded(e) => Box::new(std::iter::once(e)),
                    Segment::Paged(c) => {
                        Box::new((c.start..c.slots.len()).map(move |i| c.entry_at(i, priority)))
                    }
                }
            },
        )
    }

    /// Heap memory the tail holds for its own bookkeeping (not counting loaded bodies).
    #[cfg(test)]
    pub(super) fn heap_bytes(&self) -> usize {
        self.segments.capacity() * size_of::<Segment>()
            + self
                .segments
                .iter()
                .map(|s| match s {
                    Segment::Paged(c) => c.heap_bytes(),
                    Segment::Loaded(_) => 0,
                })
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::core::message::Message;

    fn paged(tag: u64, id: MsgId, size: u32) -> Entry {
        Entry {
            tag,
            message: None,
            store_id: StoreRef::new(Some(id)),
            expires_at: Deadline::NONE,
            size,
            priority: 0,
            redelivered: false,
        }
    }

    fn transient(tag: u64, size: u32) -> Entry {
        let message = Message::new("", "q", Bytes::from(vec![b'x'; size as usize]));
        Entry {
            message: Some(Arc::new(message)),
            store_id: StoreRef::new(None),
            ..paged(tag, 0, size)
        }
    }

    fn tag(seq: u64) -> u64 {
        seq * TAG_STEP
    }

    fn pop_all(tail: &mut PagedTail) -> Vec<(u64, Option<MsgId>, u32, bool)> {
        std::iter::from_fn(|| tail.pop_front())
            .map(|e| (e.tag, e.store_id.get(), e.size, e.is_paged()))
            .collect()
    }

    #[test]
    fn messages_come_out_in_the_order_they_went_in() {
        let mut tail = PagedTail::new(0);
        for seq in 1..=10_000 {
            tail.push(paged(tag(seq), 1000 + seq * 3, seq as u32));
        }
        assert_eq!(tail.len(), 10_000);
        assert_eq!(tail.segments.len(), 3, "4096 messages a chunk");
        assert_eq!(tail.front_tag(), Some(tag(1)));
        let out = pop_all(&mut tail);
        let want: Vec<_> = (1..=10_000)
            .map(|seq| (tag(seq), Some(1000 + seq * 3), seq as u32, true))
            .collect();
        assert!(out == want);
        assert!(tail.is_empty());
        assert_eq!(tail.bytes(), 0);
        assert!(tail.pop_front().is_none());
    }

    #[test]
    fn ids_out_of_order_and_far_apart_start_new_chunks_only_when_a_delta_does_not_fit() {
        let mut tail = PagedTail::new(0);
        let ids = [
            5_000_000_000u64,
            4_999_999_990, // behind the base: a negative delta fits
            5_000_000_000 + i32::MAX as u64,
            5_000_000_000 + i32::MAX as u64 + 1, // one past i32: new chunk
            5_000_000_000 + i32::MAX as u64 + 2,
            7, // far behind: new chunk
            u64::MAX - 1,
        ];
        for (i, id) in ids.iter().enumerate() {
            tail.push(paged(tag(i as u64 + 1), *id, 10));
        }
        assert_eq!(tail.segments.len(), 4);
        let out: Vec<Option<MsgId>> = pop_all(&mut tail).into_iter().map(|o| o.1).collect();
        let want: Vec<Option<MsgId>> = ids.iter().map(|id| Some(*id)).collect();
        assert_eq!(out, want);
    }

    #[test]
    fn a_tag_gap_or_another_redelivered_flag_starts_a_new_chunk() {
        let mut tail = PagedTail::new(0);
        tail.push(paged(tag(1), 1, 1));
        tail.push(paged(tag(2), 2, 1));
        tail.push(paged(tag(4), 4, 1)); // tag 3 went elsewhere
        let mut again = paged(tag(5), 5, 1);
        again.redelivered = true;
        tail.push(again);
        assert_eq!(tail.segments.len(), 3);
        let out: Vec<u64> = pop_all(&mut tail).into_iter().map(|o| o.0).collect();
        assert_eq!(out, vec![tag(1), tag(2), tag(4), tag(5)]);
    }

    #[test]
    fn deadlines_are_kept_per_message_only_by_chunks_that_have_any() {
        let mut tail = PagedTail::new(3);
        let soon = Instant::now() + Duration::from_secs(1);
        tail.push(paged(tag(1), 1, 1));
        let mut e = paged(tag(2), 2, 1);
        e.expires_at = Deadline::new(Some(soon));
        tail.push(e);
        tail.push(paged(tag(3), 3, 1));
        let Some(Segment::Paged(c)) = tail.segments.front() else {
            panic!("one chunk");
        };
        assert_eq!(c.deadlines.as_ref().map(Vec::len), Some(3));
        assert_eq!(tail.front_deadline(), None);
        let first = tail.pop_front().expect("first");
        assert_eq!(first.priority, 3, "paged entries take the level's priority");
        assert_eq!(tail.front_deadline(), Some(soon));
        let second = tail.pop_front().expect("second");
        assert_eq!(second.expires_at.get(), Some(soon));
        assert_eq!(tail.front_deadline(), None);

        let mut plain = PagedTail::new(0);
        for seq in 1..100 {
            plain.push(paged(tag(seq), seq, 1));
        }
        let Some(Segment::Paged(c)) = plain.segments.front() else {
            panic!("one chunk");
        };
        assert!(c.deadlines.is_none());
    }

    #[test]
    fn a_transient_entry_keeps_its_place_between_chunks() {
        let mut tail = PagedTail::new(0);
        tail.push(paged(tag(1), 1, 10));
        tail.push(paged(tag(2), 2, 10));
        tail.push(transient(tag(3), 5));
        tail.push(paged(tag(4), 4, 10));
        assert_eq!(tail.len(), 4);
        assert_eq!(tail.bytes(), 35);
        assert_eq!(tail.loaded().count(), 1);
        assert_eq!(
            tail.paged_front(100, u64::MAX),
            vec![(tag(1), 1), (tag(2), 2)]
        );
        assert!(tail.pop_loaded_front().is_none(), "the front is paged");
        let out = pop_all(&mut tail);
        assert_eq!(
            out,
            vec![
                (tag(1), Some(1), 10, true),
                (tag(2), Some(2), 10, true),
                (tag(3), None, 5, false),
                (tag(4), Some(4), 10, true),
            ]
        );
    }

    #[test]
    fn bytes_are_accounted_through_pushes_pops_and_drains() {
        let mut tail = PagedTail::new(0);
        for seq in 1..=100 {
            tail.push(paged(tag(seq), seq, 100));
        }
        tail.push(transient(tag(101), 7));
        assert_eq!(tail.bytes(), 100 * 100 + 7);
        tail.pop_front();
        assert_eq!(tail.bytes(), 99 * 100 + 7);
        let drained: Vec<Entry> = tail.drain().collect();
        assert_eq!(drained.len(), 100);
        assert_eq!(drained[0].tag, tag(2));
        assert_eq!(drained[99].tag, tag(101));
        assert!(!drained[99].is_paged());
        assert_eq!((tail.len(), tail.bytes()), (0, 0));
    }

    #[test]
    fn read_batches_stop_at_the_message_or_byte_limit_but_take_at_least_one() {
        let mut tail = PagedTail::new(0);
        for seq in 1..=10 {
            tail.push(paged(tag(seq), seq, 1000));
        }
        assert_eq!(tail.paged_front(4, u64::MAX).len(), 4);
        assert_eq!(tail.paged_front(100, 3500).len(), 3);
        assert_eq!(tail.paged_front(100, 10).len(), 1);
        tail.pop_front();
        assert_eq!(tail.paged_front(1, 0), vec![(tag(2), 2)]);
    }

    /// The point of the tail: a paged backlog costs about 8 bytes a message (store id delta and size).
    #[test]
    fn a_million_paged_messages_cost_at_most_nine_bytes_each() {
        let mut tail = PagedTail::new(0);
        let n = 1_000_000u64;
        for seq in 1..=n {
            // Ids with gaps (other queues publish in between), sizes of 1 KiB.
            tail.push(paged(tag(seq), 17 + seq * 5, 1024));
        }
        let per_message = tail.heap_bytes() as f64 / n as f64;
        println!("{per_message:.3} bytes per paged message");
        assert!(
            per_message <= 9.0,
            "{per_message:.2} bytes per paged message"
        );
        assert_eq!(tail.bytes(), n * 1024);
    }
}
