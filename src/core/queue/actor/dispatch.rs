//! Handing ready messages to consumers: picking the consumer (priority, round robin, single active consumer,
//! credit) and the delivery itself; waiting `get`s served in arrival order. What one pass hands a consumer goes
//! to its connection as one event (up to [`EVENT_MESSAGES`] / [`EVENT_BYTES`]), so a burst costs the queue and
//! the connection one wake-up, not one per message.

use super::*;
use crate::core::queue::{Delivered, Deliveries};

impl Handout {
    fn new(index: usize) -> Self {
        Self {
            index,
            items: Vec::new(),
            bytes: 0,
            no_ack: Vec::new(),
        }
    }

    fn is_full(&self) -> bool {
        self.items.len() >= EVENT_MESSAGES || self.bytes >= EVENT_BYTES
    }
}

/// Most messages and body bytes in one [`SinkEvent::Deliver`]: what a connection encodes in one go.
const EVENT_MESSAGES: usize = 128;
const EVENT_BYTES: usize = 128 * 1024;

/// What one delivery pass hands one consumer, sent as one event at the end of the pass.
struct Handout {
    /// The consumer's index in `Actor::consumers` (stable during a pass).
    index: usize,
    items: Vec<Delivered>,
    bytes: usize,
    /// No-ack entries, settled once the event is sent (given back to the queue if the consumer is gone).
    no_ack: Vec<Entry>,
}

impl Actor {
    pub(super) fn deliver(&mut self) {
        if self.consumers.is_empty() {
            return;
        }
        let mut blocked: Vec<ConsumerKey> = Vec::new();
        let mut handouts: Vec<Handout> = Vec::new();
        // The open handout of each consumer, by consumer index.
        let mut open: Vec<Option<usize>> = vec![None; self.consumers.len()];
        while self.ready_count > 0 {
            let Some(index) = self.pick_consumer(&mut blocked) else {
                break;
            };
            let Some((entry, message)) = self.pop_ready() else {
                // Nothing readable was left: give back the channel credit the pick took.
                let spec = &self.consumers[index].spec;
                if let Some(limit) = spec.channel_limit.as_ref().filter(|_| !spec.no_ack) {
                    limit.release(1);
                }
                break;
            };
            let at = match open[index] {
                Some(at) if !handouts[at].is_full() => at,
                _ => {
                    handouts.push(Handout::new(index));
                    open[index] = Some(handouts.len() - 1);
                    handouts.len() - 1
                }
            };
            self.hand_to(&mut handouts[at], entry, message);
        }
        self.send_handouts(handouts);
    }

    pub(super) fn pick_consumer(&mut self, blocked: &mut Vec<ConsumerKey>) -> Option<usize> {
        loop {
            let eligible = |c: &Consumer| c.has_credit() && !blocked.contains(&c.spec.key);
            let n = self.consumers.len();
            let index = if self.me.args.single_active_consumer {
                eligible(&self.consumers[0]).then_some(0)?
            } else {
                let best = self
                    .consumers
                    .iter()
                    .filter(|c| eligible(c))
                    .map(|c| c.spec.priority)
                    .max()?;
                (0..n).map(|i| (self.rr + i) % n).find(|&i| {
                    eligible(&self.consumers[i]) && self.consumers[i].spec.priority == best
                })?
            };
            let consumer = &self.consumers[index];
            let channel_ok = consumer.spec.no_ack
                || consumer
                    .spec
                    .channel_limit
                    .as_ref()
                    .is_none_or(|l| l.try_acquire());
            if channel_ok {
                self.rr = index + 1;
                return Some(index);
            }
            blocked.push(consumer.spec.key);
        }
    }

    /// Gives one message to the consumer of `handout`: counted against its credit (and write window), and
    /// held as unacked unless it consumes without acks.
    fn hand_to(&mut self, handout: &mut Handout, entry: Entry, message: Arc<Message>) {
        let bytes = message.body.len();
        let consumer = &mut self.consumers[handout.index];
        handout.bytes += bytes;
        handout.items.push(Delivered {
            tag: entry.tag,
            message,
            redelivered: entry.redelivered,
        });
        consumer.unwritten += 1;
        consumer.unwritten_bytes += bytes as u64;
        if consumer.spec.no_ack {
            handout.no_ack.push(entry);
            return;
        }
        consumer.unacked += 1;
        let key = consumer.spec.key;
        let limit = consumer.spec.channel_limit.clone();
        self.outstanding.insert(
            entry.tag,
            Outstanding {
                entry,
                holder: Some(key),
                lease_until: None,
                channel_limit: limit,
            },
        );
    }

    /// Sends each handout to its consumer's connection. No-ack deliveries are settled then (and stay in the
    /// memory gauge until the connection reports them written). A consumer whose connection is gone is
    /// removed: its no-ack deliveries go back to the queue, and so do its unacked ones (as every delivery it
    /// held).
    fn send_handouts(&mut self, handouts: Vec<Handout>) {
        let mut lost: Vec<ConsumerKey> = Vec::new();
        for handout in handouts {
            let count = u32::try_from(handout.items.len()).unwrap_or(u32::MAX);
            let consumer = &mut self.consumers[handout.index];
            let key = consumer.spec.key;
            let event = SinkEvent::Deliver(Deliveries {
                consumer: key,
                queue: self.me.clone(),
                items: handout.items,
            });
            if consumer.spec.sink.send(event).is_ok() {
                handout.no_ack.iter().for_each(|e| self.settle_in_store(e));
                continue;
            }
            // Not handed out after all: no longer in its write window, and the no-ack ones are still ours.
            consumer.unwritten -= count;
            consumer.unwritten_bytes -= handout.bytes as u64;
            handout.no_ack.into_iter().for_each(|e| self.requeue(e));
            if !lost.contains(&key) {
                lost.push(key);
            }
        }
        for key in lost {
            self.remove_consumer(key, true);
        }
    }

    /// Answers waiting gets in order: each takes the next message, or learns the queue is empty. Stops at the
    /// first that must wait for a read.
    pub(super) fn serve_gets(&mut self) {
        while let Some(get) = self.gets.pop_front() {
            if get.reply.is_closed() {
                continue; // the asker went away: leave the message for someone else
            }
            if self.ready_count == 0 {
                let _ = get.reply.send(None);
                continue;
            }
            let Some((entry, message)) = self.pop_ready() else {
                self.gets.push_front(get);
                return;
            };
            let delivery = self.get(entry, message, get.no_ack, get.lease);
            let _ = get.reply.send(Some(delivery));
        }
    }
}
