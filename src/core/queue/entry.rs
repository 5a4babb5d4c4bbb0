//! One message as a queue holds it while it is loaded or unacked: [`Entry`] and the niche-packed values it is
//! made of ([`StoreRef`], [`Deadline`]), plus the queue-local tags that name entries. A paged backlog does not
//! keep entries: see `tail` for its compact form.
//!
//! Tags are numbered per ready level (priority), `seq * TAG_STEP + level`, so that the tags of one level are
//! consecutive steps even when several levels are fed at once: the paged tail relies on it to keep no tag per
//! message. Only the order of tags within one level means anything (requeue puts an entry back by tag).

use std::num::NonZeroU64;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use crate::core::memory::MESSAGE_OVERHEAD;
use crate::core::message::Message;
use crate::store::MsgId;

/// Distance between two successive tags of one level (there are at most 256 levels: priorities 0..=255).
pub(super) const TAG_STEP: u64 = 256;

/// Hands out tags, one sequence per level.
pub(super) struct Tags {
    next: Vec<u64>,
}

impl Tags {
    pub(super) fn new(levels: usize) -> Self {
        Self {
            next: vec![1; levels],
        }
    }

    /// The next tag of `level`.
    pub(super) fn take(&mut self, level: usize) -> u64 {
        let seq = self.next[level];
        self.next[level] += 1;
        seq * TAG_STEP + level as u64
    }
}

/// One message in the queue, loaded or unacked. Kept small (40 bytes): the store id and the expiry are
/// niche-packed, and the body is optional (`None`: paged out to the store).
pub(super) struct Entry {
    pub(super) tag: u64,
    /// The message, or `None` while it is paged out (then `store_id` is set).
    pub(super) message: Option<Arc<Message>>,
    pub(super) store_id: StoreRef,
    pub(super) expires_at: Deadline,
    /// Body length (what `x-max-length-bytes` and the memory gauge count).
    pub(super) size: u32,
    /// The message's priority property (what picks its ready level).
    pub(super) priority: u8,
    pub(super) redelivered: bool,
}

impl Entry {
    /// What the entry counts for in the memory gauge: its body while loaded, nothing while paged.
    pub(super) fn cost(&self) -> u64 {
        if self.message.is_some() {
            u64::from(self.size) + MESSAGE_OVERHEAD
        } else {
            0
        }
    }

    /// Whether the body is out on the store (only its store id is kept).
    pub(super) fn is_paged(&self) -> bool {
        self.message.is_none()
    }
}

/// A store id in 8 bytes: `id + 1`, so `None` takes no extra space. (The one id that cannot be stored this way,
/// `u64::MAX`, is never reached.)
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct StoreRef(Option<NonZeroU64>);

impl StoreRef {
    pub(super) fn new(id: Option<MsgId>) -> Self {
        Self(id.and_then(|id| NonZeroU64::new(id.checked_add(1)?)))
    }
    pub(super) fn get(self) -> Option<MsgId> {
        self.0.map(|n| n.get() - 1)
    }
}

/// The process-wide instant expiry deadlines are counted from.
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// An optional deadline in 8 bytes: nanoseconds after [`EPOCH`] (at least 1).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub(super) struct Deadline(Option<NonZeroU64>);

impl Deadline {
    pub(super) const NONE: Deadline = Deadline(None);

    pub(super) fn new(at: Option<Instant>) -> Self {
        Self(at.and_then(|t| {
            let nanos = u64::try_from(t.saturating_duration_since(*EPOCH).as_nanos()).ok()?;
            NonZeroU64::new(nanos.max(1))
        }))
    }
    pub(super) fn get(self) -> Option<Instant> {
        self.0.map(|n| *EPOCH + Duration::from_nanos(n.get()))
    }
    pub(super) fn is_some(self) -> bool {
        self.0.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Loaded backlogs (non-durable queues, the loaded head) are millions of these: keep them at 40 bytes.
    #[test]
    fn an_entry_is_forty_bytes() {
        assert_eq!(std::mem::size_of::<Entry>(), 40);
    }

    #[test]
    fn store_refs_and_deadlines_round_trip() {
        assert_eq!(StoreRef::new(Some(0)).get(), Some(0));
        assert_eq!(StoreRef::new(Some(41)).get(), Some(41));
        assert_eq!(StoreRef::new(None).get(), None);
        let at = Instant::now() + Duration::from_secs(5);
        let back = Deadline::new(Some(at)).get().map(|t| t.duration_since(at));
        assert_eq!(back, Some(Duration::ZERO));
        assert!(Deadline::new(None).get().is_none());
    }

    #[test]
    fn tags_are_consecutive_steps_per_level_and_unique_across_levels() {
        let mut tags = Tags::new(3);
        let a = tags.take(0);
        let b = tags.take(2);
        let c = tags.take(0);
        assert_eq!(c, a + TAG_STEP);
        assert_ne!(a, b);
        assert_eq!(b % TAG_STEP, 2);
        assert_eq!(tags.take(2), b + TAG_STEP);
    }
}
