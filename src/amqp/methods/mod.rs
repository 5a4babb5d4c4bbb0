//! Channel-level AMQP methods (spec classes channel, exchange, queue, basic, confirm, tx): each handler
//! validates the frame sequence, calls the core through the connection's [`Session`], and writes the reply.
//! Errors come back as [`AmqpError`]; the connection turns channel-scoped ones into channel.close.
//!
//! This file dispatches and owns the channel class (open, close, flow and their crossings); `exchange`, `queue`,
//! `basic` and `confirm_tx` hold the other classes' method handlers, `publish` the publish path and `consume`
//! consuming and acknowledgements.

mod basic;
mod confirm_tx;
mod consume;
mod exchange;
mod publish;
mod queue;

pub(crate) use self::publish::PublishStep;

use self::consume::{requeue_or_reject, settle_grouped};

use std::sync::Arc;

use bytes::Bytes;
use ferrymq_amqp_codec::{self as codec, BasicPublish, ContentHeader, Method};
use tokio::io::{AsyncRead, AsyncWrite};

use super::channel::{
    Assembly, Channel, ChannelConsumer, ChannelState, Confirms, TxBuffer, TxSettle, Unacked,
};
use super::connection::{Connection, ConsumerRoute, method_name};
use super::convert::{self, Outgoing};
use super::error::{AmqpError, code};
use crate::core::message::Message;
use crate::core::{
    AutoDelete, BindOp, BindingSpec, ChargeKind, Confirmation, ConsumerSpec, DestinationKind,
    Durability, ExchangeSpec, MESSAGE_OVERHEAD, Outcome, Ownership, Publisher, QueueHandle,
    QueueOptions, Receipt, Session, Settle, Settling,
};

/// The pseudo-queue of RabbitMQ's direct reply-to.
const REPLY_TO: &str = "amq.rabbitmq.reply-to";
/// Basic class id (content frames).
const BASIC_CLASS: u16 = 60;

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Connection<S> {
    fn session(&self) -> Result<Session, AmqpError> {
        self.session.clone().ok_or_else(not_open)
    }

    fn channel(&mut self, ch: u16) -> Result<&mut Channel, AmqpError> {
        self.channels
            .get_mut(&ch)
            .ok_or_else(|| channel_not_open(ch))
    }

    fn reply(&mut self, ch: u16, no_wait: bool, method: Method) {
        if !no_wait {
            self.send_method(ch, &method);
        }
    }

    /// exchange.bind / queue.bind and their unbinds: one core call, then the reply.
    fn bind(
        &mut self,
        ch: u16,
        op: BindOp,
        binding: &BindingSpec,
        no_wait: bool,
        ok: Method,
    ) -> Result<(), AmqpError> {
        self.session()?.bind(binding, op)?;
        self.reply(ch, no_wait, ok);
        Ok(())
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
        if !self.admit(ch, &method)? {
            return Ok(());
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
            m @ (Method::ExchangeDeclare(_)
            | Method::ExchangeDelete(_)
            | Method::ExchangeBind(_)
            | Method::ExchangeUnbind(_)) => self.exchange_method(ch, m),
            m @ (Method::QueueDeclare(_)
            | Method::QueueBind(_)
            | Method::QueueUnbind(_)
            | Method::QueuePurge(_)
            | Method::QueueDelete(_)) => self.queue_method(ch, m).await,
            m @ (Method::ConfirmSelect(_)
            | Method::TxSelect
            | Method::TxCommit
            | Method::TxRollback) => self.confirm_tx_method(ch, m).await,
            m => self.basic_method(ch, m).await,
        }
    }

    /// The checks every method on an open channel goes through: the channel exists (else 504), is not in the
    /// middle of content (505), and is not waiting for the client's close-ok (then the method is handled as
    /// the close rule says and `false` comes back).
    fn admit(&mut self, ch: u16, method: &Method) -> Result<bool, AmqpError> {
        let channel = self.channel(ch)?;
        if channel.state == ChannelState::Closing {
            self.on_closing_channel(ch, method);
            return Ok(false);
        }
        if channel.assembly.is_some() {
            return Err(AmqpError::connection(
                code::UNEXPECTED_FRAME,
                format!(
                    "expected content header for class 60, got non content header frame instead ({})",
                    method_name(method)
                ),
            ));
        }
        Ok(true)
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
        // The user's channel limit ([limits]): RabbitMQ closes the connection with 530 when it is reached.
        let tenant = self
            .admission
            .tenants()
            .open_channel(&self.user)
            .map_err(|refusal| AmqpError::connection(code::NOT_ALLOWED, refusal.to_string()))?;
        let held = self.memory.charge(ChargeKind::Content);
        let mut channel = Channel::new(held);
        channel.tenant = Some(tenant);
        self.channels.insert(ch, channel);
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
        channel.drop_content();
        channel.confirms = None;
        for c in consumers {
            self.consumers.remove(&c.key);
            c.queue.cancel_detached(c.key);
        }
        settle_grouped(unacked, Settle::Requeue);
    }

    // ---- content ----

    // ---- consuming ----
}

fn not_open() -> AmqpError {
    AmqpError::connection(code::COMMAND_INVALID, "connection not open")
}

fn channel_not_open(ch: u16) -> AmqpError {
    AmqpError::connection(
        code::CHANNEL_ERROR,
        format!("expected 'channel.open' on channel {ch}"),
    )
}

fn not_transactional() -> AmqpError {
    AmqpError::channel(code::PRECONDITION_FAILED, "channel is not transactional")
}

/// A binding from an AMQP bind or unbind method.
fn binding(
    source: String,
    destination: String,
    destination_kind: DestinationKind,
    routing_key: String,
    arguments: codec::FieldTable,
) -> BindingSpec {
    BindingSpec {
        source,
        destination,
        destination_kind,
        routing_key,
        arguments: convert::table_in(arguments),
    }
}
