//! Channel-level AMQP methods (spec classes channel, exchange, queue, basic, confirm, tx): each handler
//! validates the frame sequence, calls the core through the connection's [`Session`], and writes the reply.
//! Errors come back as [`AmqpError`]; the connection turns channel-scoped ones into channel.close.

use std::sync::Arc;

use bytes::Bytes;
use ferrymq_amqp_codec::{self as codec, ContentHeader, Method};
use tokio::io::{AsyncRead, AsyncWrite};

use super::channel::{
    Assembly, Channel, ChannelConsumer, ChannelState, Confirms, TxBuffer, TxSettle, Unacked,
};
use super::connection::{Connection, ConsumerRoute, method_name};
use super::convert::{self, Outgoing};
use super::error::{AmqpError, code};
use crate::core::DestinationKind;
use crate::core::message::Message;
use crate::core::publish::{Outcome, Publisher, Receipt, Settling};
use crate::core::queue::{ConsumerSpec, QueueHandle, Settle};
use crate::core::session::{AutoDelete, BindOp, Durability, Ownership, QueueOptions, Session};
use crate::core::vhost::ExchangeSpec;

/// The pseudo-queue of RabbitMQ's direct reply-to.
const REPLY_TO: &str = "amq.rabbitmq.reply-to";
/// Basic class id (content frames).
const BASIC_CLASS: u16 = 60;

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Connection<S> {
    fn session(&self) -> Result<Session, AmqpError> {
        self.session
            .clone()
            .ok_or_else(|| AmqpError::connection(code::COMMAND_INVALID, "connection not open"))
    }

    fn channel(&mut self, ch: u16) -> Result<&mut Channel, AmqpError> {
        self.channels.get_mut(&ch).ok_or_else(|| {
            AmqpError::connection(
                code::CHANNEL_ERROR,
                format!("expected 'channel.open' on channel {ch}"),
            )
        })
    }

    fn reply(&mut self, ch: u16, no_wait: bool, method: Method) {
        if !no_wait {
            self.send_method(ch, &method);
        }
    }

    /// Resolve an empty queue name to the channel's last declared queue (AMQP 0-9-1 §1.7.2).
    fn queue_name(&mut self, ch: u16, name: &str) -> Result<String, AmqpError> {
        if !name.is_empty() {
            return Ok(name.to_owned());
        }
        self.channel(ch)?
            .last_queue
            .clone()
            .ok_or_else(|| AmqpError::channel(code::NOT_FOUND, "no previously declared queue"))
    }

    pub(super) async fn on_channel_method(
        &mut self,
        ch: u16,
        method: Method,
    ) -> Result<(), AmqpError> {
        let ids = (method.class_id(), method.method_id());
        self.channel_method(ch, method)
            .await
            .map_err(|e| e.during(ids.0, ids.1))
    }

    async fn channel_method(&mut self, ch: u16, method: Method) -> Result<(), AmqpError> {
        if let Method::ChannelOpen = method {
            return self.open_channel(ch);
        }
        let channel = self.channel(ch)?;
        if channel.state == ChannelState::Closing {
            self.on_closing_channel(ch, &method);
            return Ok(());
        }
        if channel.assembly.is_some() {
            return Err(AmqpError::connection(
                code::UNEXPECTED_FRAME,
                format!(
                    "expected content header for class 60, got non content header frame instead ({})",
                    method_name(&method)
                ),
            ));
        }
        match method {
            Method::ChannelClose(_) => {
                self.drop_channel(ch);
                self.send_method(ch, &Method::ChannelCloseOk);
                Ok(())
            }
            Method::ChannelCloseOk => Err(AmqpError::connection(
                code::COMMAND_INVALID,
                format!("channel.close-ok on channel {ch}, which the server did not close"),
            )),
            Method::ChannelFlow(f) => self.flow(ch, f.active),
            Method::ExchangeDeclare(m) => {
                let spec = ExchangeSpec {
                    name: m.exchange,
                    kind: m.kind,
                    durable: m.durable,
                    auto_delete: m.auto_delete,
                    internal: m.internal,
                    arguments: convert::table_in(m.arguments),
                };
                self.session()?.declare_exchange(spec, m.passive)?;
                self.reply(ch, m.no_wait, Method::ExchangeDeclareOk);
                Ok(())
            }
            Method::ExchangeDelete(m) => {
                self.session()?.delete_exchange(&m.exchange, m.if_unused)?;
                self.reply(ch, m.no_wait, Method::ExchangeDeleteOk);
                Ok(())
            }
            Method::ExchangeBind(m) => {
                let target = (m.destination.as_str(), DestinationKind::Exchange);
                self.session()?.bind(
                    &m.source,
                    target.0,
                    target.1,
                    &m.routing_key,
                    &convert::table_in(m.arguments),
                    BindOp::Bind,
                )?;
                self.reply(ch, m.no_wait, Method::ExchangeBindOk);
                Ok(())
            }
            Method::ExchangeUnbind(m) => {
                let target = (m.destination.as_str(), DestinationKind::Exchange);
                self.session()?.bind(
                    &m.source,
                    target.0,
                    target.1,
                    &m.routing_key,
                    &convert::table_in(m.arguments),
                    BindOp::Unbind,
                )?;
                self.reply(ch, m.no_wait, Method::ExchangeUnbindOk);
                Ok(())
            }
            Method::QueueDeclare(m) => {
                let name = if m.passive {
                    self.queue_name(ch, &m.queue)?
                } else {
                    m.queue
                };
                let s = self.session()?;
                let (q, stats) = if m.passive {
                    s.queue_exists(&name).await?
                } else {
                    let options = QueueOptions {
                        durability: if m.durable {
                            Durability::Durable
                        } else {
                            Durability::Transient
                        },
                        ownership: if m.exclusive {
                            Ownership::Exclusive
                        } else {
                            Ownership::Shared
                        },
                        auto_delete: if m.auto_delete {
                            AutoDelete::WhenUnused
                        } else {
                            AutoDelete::Never
                        },
                        arguments: convert::table_in(m.arguments),
                    };
                    s.declare_queue(&name, options).await?
                };
                self.channel(ch)?.last_queue = Some(q.name.clone());
                let ok = codec::QueueDeclareOk {
                    queue: q.name.clone(),
                    message_count: stats.messages,
                    consumer_count: stats.consumers,
                };
                self.reply(ch, m.no_wait, Method::QueueDeclareOk(ok));
                Ok(())
            }
            Method::QueueBind(m) => {
                let queue = self.queue_name(ch, &m.queue)?;
                let target = (queue.as_str(), DestinationKind::Queue);
                self.session()?.bind(
                    &m.exchange,
                    target.0,
                    target.1,
                    &m.routing_key,
                    &convert::table_in(m.arguments),
                    BindOp::Bind,
                )?;
                self.reply(ch, m.no_wait, Method::QueueBindOk);
                Ok(())
            }
            Method::QueueUnbind(m) => {
                let queue = self.queue_name(ch, &m.queue)?;
                let target = (queue.as_str(), DestinationKind::Queue);
                self.session()?.bind(
                    &m.exchange,
                    target.0,
                    target.1,
                    &m.routing_key,
                    &convert::table_in(m.arguments),
                    BindOp::Unbind,
                )?;
                self.send_method(ch, &Method::QueueUnbindOk);
                Ok(())
            }
            Method::QueuePurge(m) => {
                let queue = self.queue_name(ch, &m.queue)?;
                let count = self.session()?.purge_queue(&queue).await?;
                self.reply(
                    ch,
                    m.no_wait,
                    Method::QueuePurgeOk(codec::QueuePurgeOk {
                        message_count: count,
                    }),
                );
                Ok(())
            }
            Method::QueueDelete(m) => {
                let queue = self.queue_name(ch, &m.queue)?;
                let count = self
                    .session()?
                    .delete_queue(&queue, m.if_unused, m.if_empty)
                    .await?;
                self.reply(
                    ch,
                    m.no_wait,
                    Method::QueueDeleteOk(codec::QueueDeleteOk {
                        message_count: count,
                    }),
                );
                Ok(())
            }
            Method::BasicQos(m) => {
                let channel = self.channel(ch)?;
                if m.global {
                    channel.limit.limit.store(
                        m.prefetch_count as u32,
                        std::sync::atomic::Ordering::Relaxed,
                    );
                    let queues: Vec<QueueHandle> = channel
                        .consumers
                        .values()
                        .map(|c| c.queue.clone())
                        .collect();
                    queues.iter().for_each(QueueHandle::wake);
                } else {
                    channel.consumer_prefetch = m.prefetch_count as u32;
                }
                self.send_method(ch, &Method::BasicQosOk);
                Ok(())
            }
            Method::BasicConsume(m) => self.consume(ch, m).await,
            Method::BasicCancel(m) => {
                if let Some(consumer) = self.channel(ch)?.consumers.remove(m.consumer_tag.as_str())
                {
                    self.consumers.remove(&consumer.key);
                    consumer.queue.cancel(consumer.key).await;
                }
                self.reply(
                    ch,
                    m.no_wait,
                    Method::BasicCancelOk(codec::BasicCancelOk {
                        consumer_tag: m.consumer_tag,
                    }),
                );
                Ok(())
            }
            Method::BasicPublish(m) => {
                if m.immediate {
                    return Err(AmqpError::connection(
                        code::NOT_IMPLEMENTED,
                        "immediate=true",
                    ));
                }
                self.channel(ch)?.assembly = Some(Assembly::new(m));
                Ok(())
            }
            Method::BasicGet(m) => self.get(ch, &m.queue, m.no_ack).await,
            Method::BasicAck(m) => self.settle(ch, m.delivery_tag, m.multiple, Settle::Ack),
            Method::BasicReject(m) => {
                self.settle(ch, m.delivery_tag, false, requeue_or_reject(m.requeue))
            }
            Method::BasicNack(m) => {
                self.settle(ch, m.delivery_tag, m.multiple, requeue_or_reject(m.requeue))
            }
            Method::BasicRecover(_) => {
                self.recover(ch)?;
                self.send_method(ch, &Method::BasicRecoverOk);
                Ok(())
            }
            Method::BasicRecoverAsync(_) => self.recover(ch),
            Method::ConfirmSelect(m) => {
                let channel = self.channel(ch)?;
                if channel.tx.is_some() {
                    return Err(AmqpError::channel(
                        code::PRECONDITION_FAILED,
                        "cannot switch from tx to confirm mode",
                    ));
                }
                channel.confirms.get_or_insert_with(Confirms::default);
                self.reply(ch, m.no_wait, Method::ConfirmSelectOk);
                Ok(())
            }
            Method::TxSelect => {
                let channel = self.channel(ch)?;
                if channel.confirms.is_some() {
                    return Err(AmqpError::channel(
                        code::PRECONDITION_FAILED,
                        "cannot switch from confirm to tx mode",
                    ));
                }
                channel.tx.get_or_insert_with(TxBuffer::default);
                self.send_method(ch, &Method::TxSelectOk);
                Ok(())
            }
            Method::TxCommit => self.commit(ch).await,
            Method::TxRollback => {
                let tx = self
                    .channel(ch)?
                    .tx
                    .as_mut()
                    .ok_or_else(not_transactional)?;
                *tx = TxBuffer::default();
                self.send_method(ch, &Method::TxRollbackOk);
                Ok(())
            }
            other => Err(AmqpError::connection(
                code::COMMAND_INVALID,
                format!(
                    "{} is not a method a client may send on a channel",
                    method_name(&other)
                ),
            )),
        }
    }

    fn open_channel(&mut self, ch: u16) -> Result<(), AmqpError> {
        if ch > self.channel_max {
            return Err(AmqpError::connection(
                code::NOT_ALLOWED,
                format!(
                    "channel number {ch} exceeds the negotiated channel_max {}",
                    self.channel_max
                ),
            ));
        }
        // Also on a channel we are closing: until the client's close-ok the number is taken (RabbitMQ answers
        // the same 504; discarding the open, as the close rule would, leaves the client waiting for open-ok).
        if self.channels.contains_key(&ch) {
            return Err(AmqpError::connection(
                code::CHANNEL_ERROR,
                format!("second 'channel.open' seen on channel {ch}"),
            ));
        }
        self.channels.insert(ch, Channel::default());
        self.send_method(ch, &Method::ChannelOpenOk);
        Ok(())
    }

    /// A method on a channel the server is closing (channel.close sent, close-ok not yet received). AMQP 0-9-1
    /// channel.close rule: "After sending this method, any received methods except Close and Close-OK MUST be
    /// discarded. The response to receiving a Close after sending Close must be to send Close-Ok." So a
    /// crossing close gets close-ok and the channel keeps waiting; the client's close-ok frees the number, as
    /// in RabbitMQ's rabbit_channel. Content frames are discarded in `on_header` / `on_body` without checking
    /// their order (RabbitMQ's frame assembler still answers a misordered one with 505).
    fn on_closing_channel(&mut self, ch: u16, method: &Method) {
        match method {
            Method::ChannelCloseOk => self.drop_channel(ch),
            Method::ChannelClose(_) => self.send_method(ch, &Method::ChannelCloseOk),
            _ => {}
        }
    }

    /// channel.flow from the client. Like RabbitMQ (rabbit_channel.erl), active=true is confirmed and
    /// active=false is refused with 540 NOT_IMPLEMENTED "active=false": the server does not pause deliveries
    /// on request (consumers use basic.qos), and 540 is a connection-level (hard) error in AMQP 0-9-1 §1.2.
    fn flow(&mut self, ch: u16, active: bool) -> Result<(), AmqpError> {
        if !active {
            return Err(AmqpError::connection(code::NOT_IMPLEMENTED, "active=false"));
        }
        self.send_method(ch, &Method::ChannelFlowOk(codec::ChannelFlowOk { active }));
        Ok(())
    }

    /// Close a channel because of an error on it: release its resources now, then wait for close-ok.
    pub(super) fn close_channel_with(&mut self, ch: u16, e: &AmqpError) {
        tracing::debug!(channel = ch, code = e.code, text = %e.text, "closing AMQP channel");
        self.release_channel(ch);
        if let Some(channel) = self.channels.get_mut(&ch) {
            channel.state = ChannelState::Closing;
        }
        let close = codec::ChannelClose {
            reply_code: e.code,
            reply_text: e.reply_text(),
            class_id: e.class_id,
            method_id: e.method_id,
        };
        self.send_method(ch, &Method::ChannelClose(close));
    }

    /// Forget a channel: consumers cancelled, unacked deliveries requeued in order.
    pub(super) fn drop_channel(&mut self, ch: u16) {
        self.release_channel(ch);
        self.channels.remove(&ch);
    }

    fn release_channel(&mut self, ch: u16) {
        let Some(channel) = self.channels.get_mut(&ch) else {
            return;
        };
        let consumers: Vec<ChannelConsumer> = channel.consumers.drain().map(|(_, c)| c).collect();
        let unacked = channel.take_all();
        channel.assembly = None;
        channel.confirms = None;
        for c in consumers {
            self.consumers.remove(&c.key);
            c.queue.cancel_detached(c.key);
        }
        settle_grouped(unacked, Settle::Requeue);
    }

    // ---- content ----

    pub(super) async fn on_header(
        &mut self,
        ch: u16,
        header: Box<ContentHeader>,
    ) -> Result<(), AmqpError> {
        let max = self.ctx.config.max_message_size;
        let channel = self.channel(ch)?;
        if channel.state == ChannelState::Closing {
            return Ok(());
        }
        let Some(assembly) = channel.assembly.as_mut().filter(|a| a.header.is_none()) else {
            return Err(AmqpError::connection(
                code::UNEXPECTED_FRAME,
                "content header without a preceding basic.publish",
            ));
        };
        if header.class_id != BASIC_CLASS {
            return Err(AmqpError::connection(
                code::UNEXPECTED_FRAME,
                format!("content header for class {}", header.class_id),
            ));
        }
        if header.body_size > max {
            channel.assembly = None;
            return Err(AmqpError::channel(
                code::PRECONDITION_FAILED,
                format!(
                    "message size {} is larger than configured max size {max}",
                    header.body_size
                ),
            )
            .during(60, 40));
        }
        let header = *header;
        assembly.header = Some((header.properties, header.raw_properties, header.body_size));
        if header.body_size == 0 {
            return self.finish_publish(ch).await;
        }
        Ok(())
    }

    pub(super) async fn on_body(&mut self, ch: u16, body: Bytes) -> Result<(), AmqpError> {
        let channel = self.channel(ch)?;
        if channel.state == ChannelState::Closing {
            return Ok(());
        }
        let Some(assembly) = channel.assembly.as_mut() else {
            return Err(AmqpError::connection(
                code::UNEXPECTED_FRAME,
                "content body without a preceding basic.publish",
            ));
        };
        let Some((_, _, size)) = assembly.header else {
            return Err(AmqpError::connection(
                code::UNEXPECTED_FRAME,
                "content body before the content header",
            ));
        };
        if assembly.received + body.len() as u64 > size {
            return Err(AmqpError::connection(
                code::FRAME_ERROR,
                format!("content body exceeds the declared size {size}"),
            ));
        }
        assembly.push(body);
        if assembly.received == size {
            return self.finish_publish(ch).await;
        }
        Ok(())
    }

    async fn finish_publish(&mut self, ch: u16) -> Result<(), AmqpError> {
        let channel = self.channel(ch)?;
        let Some(assembly) = channel.assembly.take() else {
            return Ok(());
        };
        let reply_to = channel.reply_to.clone();
        let (publish, mut properties, raw, body) = assembly.finish();
        let mut raw = Some(raw);
        if properties.reply_to.as_deref() == Some(REPLY_TO) {
            let own = reply_to.ok_or_else(|| {
                AmqpError::channel(
                    code::PRECONDITION_FAILED,
                    "fast reply consumer does not exist",
                )
                .during(60, 40)
            })?;
            properties.reply_to = Some(own);
            raw = None;
        }
        let message = convert::message_in(
            publish.exchange,
            publish.routing_key,
            properties,
            raw.as_deref(),
            body,
        )
        .map_err(|e| e.during(60, 40))?;
        if let Some(tx) = self.channel(ch)?.tx.as_mut() {
            tx.publishes.push((publish.mandatory, message));
            return Ok(());
        }
        self.publish(ch, message, publish.mandatory)
            .await
            .map_err(|e| e.during(60, 40))
    }

    /// Hands a message to the core through the channel's publisher; returns what its confirm waits for.
    async fn publish_one(
        &mut self,
        ch: u16,
        message: Message,
        mandatory: bool,
        want_answers: bool,
    ) -> Result<Settling, AmqpError> {
        self.has_published = true;
        let session = self.session()?;
        let mut publisher = self
            .channel(ch)?
            .publisher
            .take()
            .unwrap_or_else(|| Publisher::new(session));
        let receipt = publisher.publish(message, want_answers).await;
        self.channel(ch)?.publisher = Some(publisher);
        Ok(match receipt? {
            Receipt::Unroutable(m) => {
                if mandatory {
                    self.send_return(ch, &m);
                }
                Settling::Done(Outcome::Accepted)
            }
            Receipt::Routed(confirmation) => confirmation.queues_answered().await,
        })
    }

    async fn publish(
        &mut self,
        ch: u16,
        message: Message,
        mandatory: bool,
    ) -> Result<(), AmqpError> {
        let confirming = self.channel(ch)?.confirms.is_some();
        let settling = self.publish_one(ch, message, mandatory, confirming).await?;
        if let Some(confirms) = self.channel(ch)?.confirms.as_mut() {
            let seq = confirms.next();
            confirms.push(seq, settling);
        }
        Ok(())
    }

    /// basic.return with the message a mandatory publish could not route.
    fn send_return(&mut self, ch: u16, m: &Message) {
        let ret = codec::BasicReturn {
            reply_code: code::NO_ROUTE,
            reply_text: "NO_ROUTE".into(),
            exchange: m.exchange.clone(),
            routing_key: m.routing_key.clone(),
        };
        codec::encode_content(
            ch,
            &Method::BasicReturn(ret),
            BASIC_CLASS,
            &Outgoing(m),
            &m.body,
            self.frame_max,
            &mut self.out,
        );
    }

    async fn commit(&mut self, ch: u16) -> Result<(), AmqpError> {
        let tx = self
            .channel(ch)?
            .tx
            .as_mut()
            .ok_or_else(not_transactional)?;
        let work = std::mem::take(tx);
        let mut last_sync = None;
        for (mandatory, message) in work.publishes {
            let settling = self.publish_one(ch, message, mandatory, false).await?;
            if settling.waits_for_store() {
                last_sync = Some(settling);
            }
        }
        for s in work.settles {
            self.apply_settle(ch, s.delivery_tag, s.multiple, s.outcome)?;
        }
        if let Some(settling) = last_sync {
            // A committed transaction is durable: wait for the sync covering its last publish.
            if self.sync.settled(settling).await != Outcome::Accepted {
                return Err(AmqpError::connection(
                    code::INTERNAL_ERROR,
                    "message store failed; transaction not committed",
                ));
            }
        }
        self.send_method(ch, &Method::TxCommitOk);
        Ok(())
    }

    // ---- consuming ----

    async fn consume(&mut self, ch: u16, m: codec::BasicConsume) -> Result<(), AmqpError> {
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
    async fn direct_reply_queue(
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

    async fn get(&mut self, ch: u16, queue: &str, no_ack: bool) -> Result<(), AmqpError> {
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

    fn settle(
        &mut self,
        ch: u16,
        delivery_tag: u64,
        multiple: bool,
        outcome: Settle,
    ) -> Result<(), AmqpError> {
        if let Some(tx) = self.channel(ch)?.tx.as_mut() {
            tx.settles.push(TxSettle {
                delivery_tag,
                multiple,
                outcome,
            });
            return Ok(());
        }
        self.apply_settle(ch, delivery_tag, multiple, outcome)
    }

    fn apply_settle(
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

    fn recover(&mut self, ch: u16) -> Result<(), AmqpError> {
        let all = self.channel(ch)?.take_all();
        settle_grouped(all, Settle::Requeue);
        Ok(())
    }
}

/// Send settlements to their queues, one command per (queue, holder).
fn settle_grouped(deliveries: Vec<Unacked>, outcome: Settle) {
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

fn requeue_or_reject(requeue: bool) -> Settle {
    if requeue {
        Settle::Requeue
    } else {
        Settle::Reject
    }
}

fn not_transactional() -> AmqpError {
    AmqpError::channel(code::PRECONDITION_FAILED, "channel is not transactional")
}

/// `amq.ctag-` + 22 random URL-safe characters, like RabbitMQ's server-generated consumer tags.
fn generated_tag() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut rng = rand::rng();
    let suffix: String = (0..22)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("amq.ctag-{suffix}")
}
