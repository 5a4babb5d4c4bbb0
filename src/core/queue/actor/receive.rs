//! Receiving with a lease (SQS ReceiveMessage): a batch of up to `max` messages, each leased for the
//! visibility timeout and counted (how often it was received, when first), and long polling: a receive that
//! finds the queue empty waits in the actor until a message arrives or its wait runs out, whichever comes
//! first, so it answers as soon as something can be handed out. Also changing or ending a lease before it runs
//! out (ChangeMessageVisibility). Receive counts live beside the entries, keyed by tag, only for messages
//! received this way, and are forgotten when the message leaves the queue (they do not survive a restart).

use super::*;
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
            let mut got = Vec::new();
            while got.len() < pending.request.max && self.ready_count > 0 {
                let Some((entry, message)) = self.pop_ready() else {
                    break;
                };
                got.push(self.lease_out(entry, message, pending.request.lease));
            }
            if got.is_empty() && now < pending.wait_until {
                waiting.push_back(pending);
            } else {
                let _ = pending.reply.send(got);
            }
        }
        self.receives = waiting;
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

    /// Sets a new lease on a received message still out (`None`: not out, or received again since `receive`
    /// was handed out). A zero lease makes it visible again at once.
    pub(super) fn change_lease(&mut self, tag: u64, lease: Duration, receive: u32) -> bool {
        let current = self.receive_counts.get(&tag).map(|c| c.count);
        if current != Some(receive) {
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
                self.requeue(out.entry);
            }
            return true;
        }
        let until = Instant::now() + lease;
        out.lease_until = Some(until);
        self.leases.insert((until, tag));
        true
    }

    /// A message left the queue: its receive count goes too.
    pub(super) fn forget_receives(&mut self, tag: u64) {
        if !self.receive_counts.is_empty() {
            self.receive_counts.remove(&tag);
        }
    }
}
