//! Consuming: basic.consume (with direct reply-to), basic.get, acknowledgements (ack, nack, reject, inside a
//! transaction or not) and basic.recover.

use super::*;

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Connection<S> {
    pub(super) async fn consume(
        &mut self,
        ch: u16,
        m: codec::BasicConsume,
    ) -> Result<(), AmqpError> {
        let session = self.session()?;
        let tag: Arc<str> = if m.consumer_tag.is_empty() {
            generated_tag().into()
        } else {
            m.consumer_tag.as_str().into()
        };
        let mut queue = self.queue_name(ch, &m.queue)?;
        if queue == REPLY_TO {
            if !m.no_ack {
                return Err(AmqpError::channel(
                    code::PRECONDITION_FAILED,
                    "reply consumer cannot acknowledge",
                ));
            }
            queue = self.direct_reply_queue(ch, &session).await?;
        }
        let priority = match m.arguments.get("x-priority") {
            None => 0,
            Some(v) => v.as_i64().ok_or_else(|| {
                AmqpError::channel(
                    code::PRECONDITION_FAILED,
                    format!("invalid x-priority argument {v:?}"),
                )
            })? as i32,
        };
        let key = self.ctx.broker.next_consumer_key();
        let channel = self.channel(ch)?;
        if channel.consumers.contains_key(&tag) {
            return Err(AmqpError::connection(
                code::NOT_ALLOWED,
                format!("attempt to reuse consumer tag '{tag}'"),
            ));
        }
        let spec = ConsumerSpec {
            key,
            tag: tag.clone(),
            no_ack: m.no_ack,
            exclusive: m.exclusive,
            priority,
            prefetch: channel.consumer_prefetch,
            channel_limit: Some(channel.limit.clone()),
            sink: self.sink.clone(),
        };
        self.consumers.insert(
            key,
            ConsumerRoute {
                channel: ch,
                tag: tag.clone(),
                no_ack: m.no_ack,
            },
        );
        // consume-ok goes out before any delivery: deliveries are only written after this handler returns.
        let q = match session.consume(&queue, spec).await {
            Ok(q) => q,
            Err(e) => {
                self.consumers.remove(&key);
                return Err(e.into());
            }
        };
        self.channel(ch)?
            .consumers
            .insert(tag.clone(), ChannelConsumer { key, queue: q });
        self.reply(
            ch,
            m.no_wait,
            Method::BasicConsumeOk(codec::BasicConsumeOk {
                consumer_tag: tag.to_string(),
            }),
        );
        Ok(())
    }

    /// The private queue behind `amq.rabbitmq.reply-to` for this channel (created on first use).
    pub(super) async fn direct_reply_queue(
        &mut self,
        ch: u16,
        session: &Session,
    ) -> Result<String, AmqpError> {
        if let Some(name) = self.channel(ch)?.reply_to.clone() {
            return Ok(name);
        }
        let name = format!(
            "{REPLY_TO}.{}",
            generated_tag().trim_start_matches("amq.ctag-")
        );
        session.declare_private_queue(&name)?;
        self.channel(ch)?.reply_to = Some(name.clone());
        Ok(name)
    }

    pub(super) async fn get(
        &mut self,
        ch: u16,
        queue: &str,
        no_ack: bool,
    ) -> Result<(), AmqpError> {
        let queue = self.queue_name(ch, queue)?;
        let Some(d) = self.session()?.get(&queue, no_ack, None).await? else {
            self.send_method(ch, &Method::BasicGetEmpty);
            return Ok(());
        };
        let unacked = (!no_ack).then(|| Unacked {
            queue: d.queue.clone(),
            tag: d.tag,
            consumer: None,
        });
        let delivery_tag = self.channel(ch)?.deliver(unacked);
        let ok = codec::BasicGetOk {
            delivery_tag,
            redelivered: d.redelivered,
            exchange: d.message.exchange.clone(),
            routing_key: d.message.routing_key.clone(),
            message_count: d.remaining,
        };
        codec::encode_content(
            ch,
            &Method::BasicGetOk(ok),
            BASIC_CLASS,
            &Outgoing(&d.message),
            &d.message.body,
            self.frame_max,
            &mut self.out,
        );
        Ok(())
    }

    pub(super) fn settle(
        &mut self,
        ch: u16,
        delivery_tag: u64,
        multiple: bool,
        outcome: Settle,
    ) -> Result<(), AmqpError> {
        let channel = self.channel(ch)?;
        if channel.tx.is_some() {
            let settle = TxSettle {
                delivery_tag,
                multiple,
                outcome,
            };
            return Ok(channel.tx_settle(settle)?);
        }
        self.apply_settle(ch, delivery_tag, multiple, outcome)
    }

    pub(super) fn apply_settle(
        &mut self,
        ch: u16,
        delivery_tag: u64,
        multiple: bool,
        outcome: Settle,
    ) -> Result<(), AmqpError> {
        let channel = self.channel(ch)?;
        let taken = channel.take(delivery_tag, multiple)?;
        let global = channel
            .limit
            .limit
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0;
        let others: Vec<QueueHandle> = if global {
            channel
                .consumers
                .values()
                .map(|c| c.queue.clone())
                .collect()
        } else {
            Vec::new()
        };
        settle_grouped(taken, outcome);
        others.iter().for_each(QueueHandle::wake);
        Ok(())
    }

    pub(super) fn recover(&mut self, ch: u16) -> Result<(), AmqpError> {
        let all = self.channel(ch)?.take_all();
        settle_grouped(all, Settle::Requeue);
        Ok(())
    }
}

/// Send settlements to their queues, one command per (queue, holder).
pub(super) fn settle_grouped(deliveries: Vec<Unacked>, outcome: Settle) {
    let mut groups: Vec<(QueueHandle, Option<u64>, Vec<u64>)> = Vec::new();
    for u in deliveries {
        match groups
            .iter_mut()
            .find(|(q, c, _)| *q == u.queue && *c == u.consumer)
        {
            Some(g) => g.2.push(u.tag),
            None => groups.push((u.queue, u.consumer, vec![u.tag])),
        }
    }
    for (queue, consumer, tags) in groups {
        queue.settle(tags, outcome, consumer);
    }
}

pub(super) fn requeue_or_reject(requeue: bool) -> Settle {
    if requeue {
        Settle::Requeue
    } else {
        Settle::Reject
    }
}

/// `amq.ctag-` + 22 random URL-safe characters, like RabbitMQ's server-generated consumer tags.
pub(super) fn generated_tag() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut rng = rand::rng();
    let suffix: String = (0..22)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("amq.ctag-{suffix}")
}
