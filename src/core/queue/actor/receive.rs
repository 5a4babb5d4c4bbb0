//! Receiving with a lease (SQS ReceiveMessage): a batch of up to `max` messages, each leased for the
//! visibility timeout and counted (how often it was received, when first), and long polling: a receive that
//! finds the queue empty waits in the actor until a message arrives or its wait runs out, whichever comes
//! first, so it answers as soon as something can be handed out. Message groups (SQS FIFO): with `group_by`, a
//! group with a message out is locked, and its messages are set aside (and put back in place) until it is
//! settled or visible again. Also changing or ending a lease before it runs out (ChangeMessageVisibility) and
//! deleting received messages wherever they are (DeleteMessage with an older receipt handle). Receive counts
//! live beside the entries, keyed by tag, only for messages received this way, and are forgotten when the
//! message leaves the queue (they do not survive a restart).

use bytes::Bytes;

use super::*;
use crate::core::message::Value;
use crate::core::queue::{ReceiveRequest, Received};

/// How often a message was received and when first (ms since the epoch).
#[derive(Debug, Clone, Copy)]
pub(super) struct ReceiveCount {
    pub(super) count: u32,
    pub(super) first_ms: u64,
}

/// A receive waiting for messages.
pub(super) struct PendingReceive {
    pub(super) request: ReceiveRequest,
    pub(super) wait_until: Instant,
    pub(super) reply: oneshot::Sender<Vec<Received>>,
}

/// Message groups with messages out: how many each, and the group of each such message.
#[derive(Debug, Default)]
pub(super) struct Groups {
    locked: HashMap<Bytes, u32>,
    of_tag: HashMap<u64, Bytes>,
}

impl Groups {
    fn lock(&mut self, tag: u64, group: Bytes) {
        *self.locked.entry(group.clone()).or_insert(0) += 1;
        self.of_tag.insert(tag, group);
    }

    /// Message `tag` is no longer out: its group may unlock.
    pub(super) fn release(&mut self, tag: u64) {
        if self.of_tag.is_empty() {
            return;
        }
        let Some(group) = self.of_tag.remove(&tag) else {
            return;
        };
        if let Some(n) = self.locked.get_mut(&group) {
            *n -= 1;
            if *n == 0 {
                self.locked.remove(&group);
            }
        }
    }

    fn is_locked(&self, group: &Bytes) -> bool {
        self.locked.contains_key(group)
    }
}

/// The group a message belongs to under header `by`.
fn group_of(message: &Message, by: Option<&str>) -> Option<Bytes> {
    match message.headers.get(by?)? {
        Value::Text(b) | Value::Binary(b) => Some(b.clone()),
        _ => None,
    }
}

impl Actor {
    /// Queues a receive and answers what can be answered now.
    pub(super) fn receive(
        &mut self,
        request: ReceiveRequest,
        reply: oneshot::Sender<Vec<Received>>,
    ) {
        self.last_used = Instant::now();
        let wait_until = Instant::now() + request.wait;
        self.receives.push_back(PendingReceive {
            request,
            wait_until,
            reply,
        });
        self.serve_receives(Instant::now());
    }

    /// Answers waiting receives in order: each takes up to its `max` ready messages; one that finds nothing
    /// keeps waiting until its deadline (then it gets an empty answer). Stops at a message still being read.
    pub(super) fn serve_receives(&mut self, now: Instant) {
        let mut waiting = VecDeque::new();
        while let Some(pending) = self.receives.pop_front() {
            if pending.reply.is_closed() {
                continue;
            }
            let got = self.take_for(&pending.request);
            if got.is_empty() && now < pending.wait_until {
                waiting.push_back(pending);
            } else {
                let _ = pending.reply.send(got);
            }
        }
        self.receives = waiting;
    }

    /// Up to `request.max` ready messages, leased; messages of locked groups are set aside and put back.
    fn take_for(&mut self, request: &ReceiveRequest) -> Vec<Received> {
        let mut got = Vec::new();
        let mut set_aside = Vec::new();
        let mut taken: Vec<Bytes> = Vec::new();
        while got.len() < request.max && self.ready_count > 0 {
            let Some((entry, message)) = self.pop_ready() else {
                break;
            };
            if let Some(group) = group_of(&message, request.group_by) {
                if self.groups.is_locked(&group) && !taken.contains(&group) {
                    set_aside.push(entry);
                    continue;
                }
                if !taken.contains(&group) {
                    taken.push(group.clone());
                }
                self.groups.lock(entry.tag, group);
            }
            got.push(self.lease_out(entry, message, request.lease));
        }
        for entry in set_aside {
            self.put_back(entry);
        }
        got
    }

    /// A message taken off the head but not handed out goes back to its place, as it was.
    fn put_back(&mut self, entry: Entry) {
        let level = self.level_of(entry.priority);
        self.count_in(&entry);
        self.levels[level].requeue(entry);
    }

    /// Hands out one message under a lease and counts the receive.
    fn lease_out(&mut self, entry: Entry, message: Arc<Message>, lease: Duration) -> Received {
        let tag = entry.tag;
        let counted = self.receive_counts.entry(tag).or_insert(ReceiveCount {
            count: 0,
            first_ms: now_ms(),
        });
        counted.count += 1;
        let ReceiveCount { count, first_ms } = *counted;
        let delivery = self.get(entry, message, false, Some(lease));
        Received {
            delivery,
            receive_count: count,
            first_receive_ms: first_ms,
        }
    }

    /// The first deadline of a waiting receive.
    pub(super) fn next_receive_deadline(&self) -> Option<Instant> {
        self.receives.iter().map(|r| r.wait_until).min()
    }

    /// Sets a new lease on a received message still out (false: not out, or, with `receive`, received again
    /// since). A zero lease makes it visible again at once.
    pub(super) fn change_lease(&mut self, tag: u64, lease: Duration, receive: Option<u32>) -> bool {
        let current = self.receive_counts.get(&tag).map(|c| c.count);
        if current.is_none() || receive.is_some_and(|r| Some(r) != current) {
            return false;
        }
        let Some(out) = self.outstanding.get_mut(&tag) else {
            return false;
        };
        if out.holder.is_some() {
            return false;
        }
        if let Some(until) = out.lease_until.take() {
            self.leases.remove(&(until, tag));
        }
        if lease.is_zero() {
            if let Some(out) = self.outstanding.remove(&tag) {
                self.groups.release(tag);
                self.requeue(out.entry);
            }
            return true;
        }
        let until = Instant::now() + lease;
        out.lease_until = Some(until);
        self.leases.insert((until, tag));
        true
    }

    /// Received messages leave the queue: acked if still out, taken out of the head if visible again (a
    /// received message that went back is always in the head: see `Level::requeue`).
    pub(super) fn delete_received(&mut self, tags: Vec<u64>) {
        for tag in tags {
            if self
                .outstanding
                .get(&tag)
                .is_some_and(|o| o.holder.is_none())
            {
                self.settle(vec![tag], super::super::Settle::Ack, None);
                continue;
            }
            if !self.receive_counts.contains_key(&tag) {
                continue;
            }
            let removed = self.levels.iter_mut().find_map(|l| l.remove_loaded(tag));
            if let Some(entry) = removed {
                self.count_out(&entry);
                self.drop_entry(entry);
            }
        }
    }

    /// Every message out under a lease (not a consumer's) leaves the queue; returns how many.
    pub(super) fn purge_received(&mut self) -> u32 {
        let tags: Vec<u64> = self
            .outstanding
            .iter()
            .filter(|(_, o)| o.holder.is_none() && o.lease_until.is_some())
            .map(|(tag, _)| *tag)
            .collect();
        let n = u32::try_from(tags.len()).unwrap_or(u32::MAX);
        self.settle(tags, super::super::Settle::Ack, None);
        n
    }

    /// A message left the queue: its receive count goes too.
    pub(super) fn forget_receives(&mut self, tag: u64) {
        if !self.receive_counts.is_empty() {
            self.receive_counts.remove(&tag);
        }
    }
}
