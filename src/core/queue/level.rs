//! One ready level of a queue (one priority; a queue without `x-max-priority` has one): its messages in
//! order, as a loaded head (entries with their bodies, what consumers are served from) followed by a paged tail
//! (see `tail`). Every head tag is below every tail tag; messages move from the tail to the head only from the
//! tail's front (when their bodies have been read back), and a loaded message at the tail's front moves to the
//! head at once, so the tail is either empty or starts with a paged message. The actor decides what is paged
//! and counts what is ready and loaded; the level only keeps order.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use super::entry::{Deadline, Entry};
use super::tail::PagedTail;
use crate::core::message::Message;
use crate::store::MsgId;

pub(super) struct Level {
    head: VecDeque<Entry>,
    head_bytes: u64,
    tail: PagedTail,
}

impl Level {
    pub(super) fn new(priority: u8) -> Self {
        Self {
            head: VecDeque::new(),
            head_bytes: 0,
            tail: PagedTail::new(priority),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.head.len() + self.tail.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Messages and body bytes in the loaded head.
    pub(super) fn head_len(&self) -> usize {
        self.head.len()
    }

    pub(super) fn head_bytes(&self) -> u64 {
        self.head_bytes
    }

    pub(super) fn tail(&self) -> &PagedTail {
        &self.tail
    }

    /// Whether the next message of this level is paged: nothing can leave the level for a consumer until its
    /// body has been read back.
    pub(super) fn waits_for_read(&self) -> bool {
        self.head.is_empty() && self.tail.front_is_paged()
    }

    /// The expiry deadline of the level's first message.
    pub(super) fn front_deadline(&self) -> Option<Instant> {
        match self.head.front() {
            Some(e) => e.expires_at.get(),
            None => self.tail.front_deadline(),
        }
    }

    /// Appends a message: to the head if it is loaded and nothing is paged before it, to the tail otherwise.
    pub(super) fn push_back(&mut self, entry: Entry) {
        if self.tail.is_empty() && !entry.is_paged() {
            self.head_bytes += u64::from(entry.size);
            self.head.push_back(entry);
        } else {
            self.tail.push(entry);
        }
    }

    /// Puts a delivered (loaded) message back at its position by tag.
    ///
    /// It always belongs in the head: it was delivered from the front of this level, so every message still in
    /// the level then had a higher tag, and every message enqueued since took a higher tag still; the tail only
    /// ever holds messages that were in the level after it, so they all sort after it.
    pub(super) fn requeue(&mut self, entry: Entry) {
        debug_assert!(self.tail.front_tag().is_none_or(|t| t > entry.tag));
        let at = self.head.partition_point(|e| e.tag < entry.tag);
        self.head_bytes += u64::from(entry.size);
        self.head.insert(at, entry);
    }

    /// Takes message `tag` out of the head, wherever it is (the head is in tag order).
    pub(super) fn remove_loaded(&mut self, tag: u64) -> Option<Entry> {
        let at = self.head.binary_search_by_key(&tag, |e| e.tag).ok()?;
        let entry = self.head.remove(at)?;
        self.head_bytes -= u64::from(entry.size);
        Some(entry)
    }

    /// Takes the first loaded message of the head; `None` when the head is empty (the level is empty, or
    /// [`Level::waits_for_read`]).
    pub(super) fn pop_loaded(&mut self) -> Option<Entry> {
        let entry = self.head.pop_front()?;
        self.head_bytes -= u64::from(entry.size);
        // Give memory back after a backlog drained: a deque keeps its largest capacity otherwise.
        if self.head.capacity() > 8192 && self.head.len() * 4 < self.head.capacity() {
            self.head.shrink_to(self.head.len() * 2);
        }
        Some(entry)
    }

    /// Takes the first message as it is, loaded or paged.
    pub(super) fn pop_front(&mut self) -> Option<Entry> {
        if let Some(entry) = self.pop_loaded() {
            return Some(entry);
        }
        let entry = self.tail.pop_front();
        self.promote();
        entry
    }

    /// The body of `tag` was read back: if that message is still first in the tail, it moves to the back of
    /// the head with `message`, and is returned; otherwise (it left the queue meanwhile) nothing happens.
    pub(super) fn loaded_read(&mut self, tag: u64, message: Arc<Message>) -> Option<&Entry> {
        if self.tail.front_tag() != Some(tag) || !self.tail.front_is_paged() {
            return None;
        }
        let mut entry = self.tail.pop_front()?;
        entry.message = Some(message);
        self.head_bytes += u64::from(entry.size);
        self.head.push_back(entry);
        self.promote();
        self.head.back()
    }

    /// The body of `tag` could not be read back: if that message is still first in the tail, it leaves the
    /// level and is returned.
    pub(super) fn drop_unreadable(&mut self, tag: u64) -> Option<Entry> {
        if self.tail.front_tag() != Some(tag) || !self.tail.front_is_paged() {
            return None;
        }
        let entry = self.tail.pop_front();
        self.promote();
        entry
    }

    /// Moves loaded messages at the front of the tail to the head (no read needed for them).
    fn promote(&mut self) {
        while let Some(entry) = self.tail.pop_loaded_front() {
            self.head_bytes += u64::from(entry.size);
            self.head.push_back(entry);
        }
    }

    /// Every message of the level as (deadline, body if loaded, store id if it has one), in order.
    pub(super) fn each(
        &self,
    ) -> impl Iterator<Item = (Deadline, Option<&Arc<Message>>, Option<MsgId>)> {
        self.head
            .iter()
            .map(|e| (e.expires_at, e.message.as_ref(), e.store_id.get()))
            .chain(self.tail.each())
    }

    /// Applies `f` to the deadline of every message of the level.
    pub(super) fn each_deadline_mut(&mut self, mut f: impl FnMut(&mut Deadline)) {
        self.head.iter_mut().for_each(|e| f(&mut e.expires_at));
        self.tail.each_deadline_mut(f);
    }

    /// Every loaded message (head and tail).
    pub(super) fn loaded(&self) -> impl Iterator<Item = &Entry> {
        self.head.iter().chain(self.tail.loaded())
    }

    /// Empties the level, handing every message out in order.
    pub(super) fn drain(&mut self) -> impl Iterator<Item = Entry> + use<> {
        self.head_bytes = 0;
        std::mem::take(&mut self.head)
            .into_iter()
            .chain(self.tail.drain())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::queue::entry::{Deadline, StoreRef, TAG_STEP};
    use bytes::Bytes;

    fn message() -> Arc<Message> {
        Arc::new(Message::new("", "q", Bytes::from_static(b"0123456789")))
    }

    fn entry(seq: u64, paged: bool, store: bool) -> Entry {
        Entry {
            tag: seq * TAG_STEP,
            message: (!paged).then(message),
            store_id: StoreRef::new(store.then_some(seq)),
            expires_at: Deadline::NONE,
            size: 10,
            priority: 0,
            redelivered: false,
        }
    }

    fn tags(level: &mut Level) -> Vec<u64> {
        std::iter::from_fn(|| level.pop_front())
            .map(|e| e.tag / TAG_STEP)
            .collect()
    }

    #[test]
    fn loaded_messages_behind_a_paged_one_wait_in_the_tail_and_move_up_when_reached() {
        let mut level = Level::new(0);
        level.push_back(entry(1, false, true));
        level.push_back(entry(2, true, true));
        level.push_back(entry(3, false, false)); // transient, behind a paged one
        level.push_back(entry(4, true, true));
        assert_eq!(
            (level.len(), level.head_len(), level.head_bytes()),
            (4, 1, 10)
        );
        assert!(level.pop_loaded().is_some());
        assert!(level.waits_for_read());
        assert!(level.pop_loaded().is_none());
        // A read for a message that is not first is ignored; the right one moves up with the transient one.
        assert!(level.loaded_read(4 * TAG_STEP, message()).is_none());
        assert!(level.loaded_read(2 * TAG_STEP, message()).is_some());
        assert_eq!(level.head_len(), 2);
        assert!(!level.waits_for_read());
        assert_eq!(tags(&mut level), vec![2, 3, 4]);
    }

    #[test]
    fn a_requeued_message_goes_back_before_the_tail_in_tag_order() {
        let mut level = Level::new(0);
        for seq in 1..=3 {
            level.push_back(entry(seq, false, true));
        }
        level.push_back(entry(4, true, true));
        let first = level.pop_loaded().expect("first");
        let second = level.pop_loaded().expect("second");
        level.requeue(second);
        level.requeue(first);
        assert_eq!(tags(&mut level), vec![1, 2, 3, 4]);
    }

    #[test]
    fn an_unreadable_message_leaves_the_level() {
        let mut level = Level::new(0);
        level.push_back(entry(1, true, true));
        level.push_back(entry(2, false, false));
        assert!(level.drop_unreadable(2 * TAG_STEP).is_none());
        assert!(level.drop_unreadable(TAG_STEP).is_some());
        assert_eq!(level.len(), 1);
        assert!(!level.waits_for_read(), "the transient message moved up");
        assert_eq!(level.loaded().count(), 1);
        assert_eq!(level.drain().count(), 1);
        assert!(level.is_empty());
    }
}
