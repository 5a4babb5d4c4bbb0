//! Timers: when a message expires (queue TTL from enqueue, the message's own deadline), the next wake-up
//! (first expiry, first lease, the idle deadline of `x-expires`, the first delayed message due) and what
//! happens when it comes.

use super::*;

impl Actor {
    /// When a message entering now expires: the queue's TTL, or the message's own deadline (ms since the Unix
    /// epoch), whichever comes first. The queue's TTL counts from `published_at_ms` when given (a message
    /// recovered after a restart, see `StoredMessage::recover_publish_time`), from now otherwise.
    pub(super) fn expiry_of(
        &self,
        per_message_at_ms: Option<u64>,
        published_at_ms: Option<u64>,
    ) -> Option<Instant> {
        if per_message_at_ms.is_none() && self.me.args.message_ttl.is_none() {
            return None; // most messages: no clock reading
        }
        let now = Instant::now();
        let wall = now_ms();
        let queue = self.me.args.message_ttl.map(|ttl| {
            let elapsed = published_at_ms.map_or(0, |at| wall.saturating_sub(at));
            now + ttl.saturating_sub(Duration::from_millis(elapsed))
        });
        let message =
            per_message_at_ms.map(|at| now + Duration::from_millis(at.saturating_sub(wall)));
        match (queue, message) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next timer: the first expiry at the front of a level (except one already due that waits for its
    /// body: the read wakes the actor), the first lease, the idle deadline, the end of a receive's wait.
    pub(super) fn next_deadline(&self, now: Instant) -> Option<Instant> {
        let needs_body = self.expiry_needs_body();
        let heads = self.levels.iter().filter_map(|l| {
            let t = l.front_deadline()?;
            let waiting = needs_body && l.waits_for_read() && t <= now;
            (!waiting).then_some(t)
        });
        let lease = self.leases.first().map(|(t, _)| *t);
        let idle = match (self.expires, self.consumers.is_empty()) {
            (Some(d), true) => Some(self.last_used + d),
            _ => None,
        };
        let receive = self.next_receive_deadline();
        let delayed = self.delayed.first_due();
        let flow = self.flow_deadline();
        heads
            .chain(lease)
            .chain(idle)
            .chain(receive)
            .chain(delayed)
            .chain(flow)
            .min()
    }

    pub(super) fn on_timers(&mut self, now: Instant) {
        self.release_due(now);
        let needs_body = self.expiry_needs_body();
        for level in 0..self.levels.len() {
            while self.levels[level]
                .front_deadline()
                .is_some_and(|t| t <= now)
            {
                if needs_body && self.levels[level].waits_for_read() {
                    break; // dead-lettered once its body is back (see `read_ahead`)
                }
                let Some(entry) = self.levels[level].pop_front() else {
                    break;
                };
                self.count_out(&entry);
                self.dead_letter(entry, DeathReason::Expired);
            }
        }
        while let Some(&(until, tag)) = self.leases.first() {
            if until > now {
                break;
            }
            self.leases.pop_first();
            if let Some(out) = self.outstanding.remove(&tag) {
                self.groups.release(tag);
                self.requeue(out.entry);
            }
        }
        if let Some(d) = self.expires
            && self.consumers.is_empty()
            && now >= self.last_used + d
        {
            self.self_delete("x-expires: unused");
        }
    }
}

/// The instant of a wall-clock time (ms since the Unix epoch), in the past or in the future.
pub(super) fn instant_at(at_ms: u64) -> Instant {
    let now = Instant::now();
    let wall = now_ms();
    if at_ms >= wall {
        now + Duration::from_millis(at_ms - wall)
    } else {
        now.checked_sub(Duration::from_millis(wall - at_ms))
            .unwrap_or(now)
    }
}

pub(super) async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}
