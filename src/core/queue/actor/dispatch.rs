//! Handing ready messages to consumers: picking the consumer (priority, round robin, single active consumer,
//! credit) and the delivery itself; waiting `get`s served in arrival order.

use super::*;

impl Actor {
    pub(super) fn deliver(&mut self) {
        if self.consumers.is_empty() {
            return;
        }
        let mut blocked: Vec<ConsumerKey> = Vec::new();
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
            self.hand_to(index, entry, message);
        }
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

    pub(super) fn hand_to(&mut self, index: usize, entry: Entry, message: Arc<Message>) {
        let bytes = message.body.len() as u64;
        let consumer = &mut self.consumers[index];
        let delivery = Delivery {
            consumer: consumer.spec.key,
            queue: self.me.clone(),
            tag: entry.tag,
            message,
            redelivered: entry.redelivered,
            remaining: 0,
        };
        let key = consumer.spec.key;
        let no_ack = consumer.spec.no_ack;
        let limit = if no_ack {
            None
        } else {
            consumer.spec.channel_limit.clone()
        };
        if consumer
            .spec
            .sink
            .send(SinkEvent::Deliver(delivery))
            .is_err()
        {
            if let Some(limit) = limit {
                limit.release(1);
            }
            self.requeue(entry);
            self.remove_consumer(key, true);
            return;
        }
        consumer.unwritten += 1;
        consumer.unwritten_bytes += bytes;
        if no_ack {
            // Settled now; counted in the memory gauge until its connection reports it written.
            self.settle_in_store(&entry);
        } else {
            consumer.unacked += 1;
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
