//! Delayed messages: a message whose `deliver_at` annotation (SQS DelaySeconds) is in the future is held aside,
//! out of the ready lists, until it is due, and then appended to its level with a new tag, as if published then
//! (it never had a tag of its level: the paged tail relies on a level's tags being consecutive). While it waits
//! it is counted as delayed, not ready (SQS ApproximateNumberOfMessagesDelayed). Delayed bodies are kept up to
//! the same budget as ready ones ([`PAGE_BUDGET_MESSAGES`], [`PAGE_BUDGET_BYTES`]), so a message due soon is
//! ready to hand out the moment it is due; beyond the budget one with a store copy keeps only its store id (its
//! body is read back like a paged one once due), so a large delayed backlog costs about an entry per message. After a restart delayed messages come back as ready ones; the ones found not due
//! when they reach the front of the queue go back aside (`Actor::pop_ready`).

use std::collections::BTreeMap;

use super::*;

/// The delayed entries, by due time and arrival.
#[derive(Default)]
pub(super) struct Delayed {
    by_due: BTreeMap<(Instant, u64), Entry>,
    arrivals: u64,
    /// Delayed entries holding their body, and those bodies' bytes.
    loaded: usize,
    loaded_bytes: u64,
}

impl Delayed {
    pub(super) fn len(&self) -> usize {
        self.by_due.len()
    }

    /// When the first delayed entry is due.
    pub(super) fn first_due(&self) -> Option<Instant> {
        self.by_due.first_key_value().map(|((t, _), _)| *t)
    }

    /// Every delayed entry, taken out.
    pub(super) fn drain(&mut self) -> impl Iterator<Item = Entry> + use<> {
        self.loaded = 0;
        self.loaded_bytes = 0;
        std::mem::take(&mut self.by_due).into_values()
    }

    fn over_budget(&self, size: u32) -> bool {
        self.loaded >= PAGE_BUDGET_MESSAGES
            || self.loaded_bytes + u64::from(size) > PAGE_BUDGET_BYTES
    }

    /// The delayed entries (loaded or not).
    pub(super) fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.by_due.values()
    }

    /// The delayed entries, to change their deadlines (not their due times).
    pub(super) fn entries_mut(&mut self) -> impl Iterator<Item = &mut Entry> {
        self.by_due.values_mut()
    }
}

/// When `message` may be delivered, if that is still in the future.
pub(super) fn delayed_until(message: &Message) -> Option<Instant> {
    let at = message.annotations.deliver_at?.get();
    let now = now_ms();
    (at > now).then(|| Instant::now() + Duration::from_millis(at - now))
}

impl Actor {
    /// Holds `entry` aside until `until` (beyond the budget, its body goes if the store can read it back).
    pub(super) fn hold(&mut self, mut entry: Entry, until: Instant) {
        if entry.message.is_some() {
            if self.pages && entry.store_id.get().is_some() && self.delayed.over_budget(entry.size)
            {
                self.memory.sub(entry.cost());
                entry.message = None;
            } else {
                self.delayed.loaded += 1;
                self.delayed.loaded_bytes += u64::from(entry.size);
            }
        }
        let d = &mut self.delayed;
        d.arrivals += 1;
        d.by_due.insert((until, d.arrivals), entry);
    }

    /// Moves the delayed entries due by `now` to the ready lists.
    pub(super) fn release_due(&mut self, now: Instant) {
        while let Some(entry) = self.delayed.by_due.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let mut entry = entry.remove();
            if entry.message.is_some() {
                self.delayed.loaded -= 1;
                self.delayed.loaded_bytes -= u64::from(entry.size);
            }
            entry.tag = self.take_tag(entry.priority);
            self.push_ready(entry);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_future_delivery_time_delays() {
        let mut m = Message::default();
        assert_eq!(delayed_until(&m), None);
        m.annotations.deliver_at = std::num::NonZeroU64::new(now_ms().saturating_sub(1));
        assert_eq!(delayed_until(&m), None);
        m.annotations.deliver_at = std::num::NonZeroU64::new(now_ms() + 60_000);
        let until = delayed_until(&m).expect("delayed");
        assert!(until > Instant::now() + Duration::from_secs(55));
    }
}
