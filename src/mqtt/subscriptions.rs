//! Subscriptions (§3.8, §3.10, §4.7, §4.8) as bindings on `amq.topic`. A session has one queue,
//! `mqtt-session-<client id>`: durable with `x-expires` set to the session expiry interval when the session
//! outlives its connection (so it survives restarts and goes when the session expires), exclusive to the
//! connection otherwise. Each subscription is a binding from `amq.topic` to it with the filter as pattern
//! (`convert::filter_to_pattern`) and the subscription's options in the binding's arguments
//! (`x-mqtt-filter`, `x-mqtt-options`, `x-mqtt-subscription-id`), which is how a persistent session's
//! subscriptions come back after a reconnect or a restart. A shared subscription `$share/<group>/<filter>`
//! is a binding to a queue of its own per group and filter, consumed by every session in the group, so each
//! message goes to one of them [MQTT-4.8.2]. The session's queue holds at most `mqtt.max_queued` messages
//! (`x-max-length`, oldest dropped).
//!
//! A message routed to the session is matched against its subscriptions again on delivery: for the QoS to
//! grant, the subscription identifiers to send, retain-as-published, and the rule that a filter starting with
//! a wildcard does not match a topic starting with `$` [MQTT-4.7.2-1], which AMQP patterns do not know.

use std::collections::HashMap;

use ferrymq_mqtt_codec::{
    Packet, QoS, ReasonCode, RetainHandling, SubAck, Subscribe, SubscriptionOptions, Unsubscribe,
    topic,
};
use tokio::io::{AsyncRead, AsyncWrite};

use super::connect::{Established, NEVER_EXPIRES};
use super::connection::Conn;
use super::convert::{self, EXCHANGE};
use super::error::{MqttError, reason_for};
use crate::config::MqttConfig;
use crate::core::message::{Headers, Value};
use crate::core::{
    AutoDelete, BindOp, BindingSpec, ConsumerKey, ConsumerSpec, CoreError, DestinationKind,
    Durability, ErrorClass, Ownership, QueueHandle, QueueOptions,
};

const ARG_FILTER: &str = "x-mqtt-filter";
const ARG_OPTIONS: &str = "x-mqtt-options";
const ARG_ID: &str = "x-mqtt-subscription-id";

/// One subscription of the session.
#[derive(Debug, Clone)]
struct Subscription {
    /// The filter without a `$share/<group>/` prefix.
    filter: String,
    options: SubscriptionOptions,
    id: Option<u32>,
    /// The queue of its share group, for a shared subscription.
    share: Option<String>,
}

/// What the session's subscriptions say about one message (see the module docs).
#[derive(Debug)]
pub struct Route {
    pub qos: QoS,
    pub ids: Vec<u32>,
    pub retain_as_published: bool,
}

/// See the module docs.
#[derive(Debug)]
pub struct Subscriptions {
    queue_name: String,
    session_expiry: u32,
    max_queued: u64,
    max_subscriptions: usize,
    max_topic_length: usize,
    prefetch: u32,
    /// By the filter as the client sent it (`$share/...` included).
    by_filter: HashMap<String, Subscription>,
    /// The session's consumers: its own queue's (share `None`) and one per shared subscription.
    consumers: HashMap<ConsumerKey, (QueueHandle, Option<String>)>,
    /// Why the core refused a filter of the SUBSCRIBE being handled (its SUBACK's v5 reason string).
    refusal: Option<String>,
}

impl Subscriptions {
    pub fn new(config: &MqttConfig, est: &Established, prefetch: u32) -> Self {
        Self {
            queue_name: format!("mqtt-session-{}", est.client_id),
            session_expiry: est.session_expiry,
            max_queued: config.max_queued,
            max_subscriptions: config.max_subscriptions,
            max_topic_length: config.max_topic_length,
            prefetch,
            by_filter: HashMap::new(),
            consumers: HashMap::new(),
            refusal: None,
        }
    }

    /// The shared subscription's queue `consumer` consumes (`None` for the session's own queue).
    pub fn share_of(&self, consumer: ConsumerKey) -> Option<String> {
        self.consumers
            .get(&consumer)
            .and_then(|(_, share)| share.clone())
    }

    /// The queue deleted the consumer (an operator deleted the queue).
    pub fn cancelled(&mut self, consumer: ConsumerKey) {
        self.consumers.remove(&consumer);
    }

    /// What the subscriptions of `share` (or the session's own, for `None`) say about a message to `name`;
    /// `None` when none matches. No-local subscriptions skip the session's own messages (`own`).
    pub fn route(&self, name: &str, share: Option<&str>, own: bool) -> Option<Route> {
        let mut route: Option<Route> = None;
        for sub in self.by_filter.values() {
            let skip = sub.share.as_deref() != share || (own && sub.options.no_local);
            if skip || !topic::matches(&sub.filter, name) {
                continue;
            }
            let r = route.get_or_insert(Route {
                qos: QoS::AtMostOnce,
                ids: Vec::new(),
                retain_as_published: false,
            });
            r.qos = r.qos.max(sub.options.qos);
            r.ids.extend(sub.id);
            r.retain_as_published |= sub.options.retain_as_published;
        }
        route
    }

    /// Cancels every consumer of the session; unacknowledged messages go back to their queues.
    pub async fn detach(&mut self) {
        for (key, (queue, _)) in self.consumers.drain() {
            queue.cancel(key).await;
        }
    }

    fn own_consumer(&self) -> Option<ConsumerKey> {
        self.consumers
            .iter()
            .find(|(_, (_, share))| share.is_none())
            .map(|(key, _)| *key)
    }

    fn queue_options(&self) -> QueueOptions {
        let mut options = QueueOptions::default()
            .with_argument("x-max-length", Value::I64(self.max_queued as i64));
        if self.session_expiry == 0 {
            options.ownership = Ownership::Exclusive;
            return options;
        }
        options.durability = Durability::Durable;
        if self.session_expiry != NEVER_EXPIRES {
            options = options.expires(std::time::Duration::from_secs(u64::from(
                self.session_expiry,
            )));
        }
        options
    }
}

/// The subscription a binding of a persistent session's queue stands for.
fn from_binding(binding: &BindingSpec) -> Option<(String, Subscription)> {
    let filter = binding.arguments.get(ARG_FILTER)?.as_str()?.to_owned();
    let byte = binding
        .arguments
        .get(ARG_OPTIONS)
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let options = options_from_byte(u8::try_from(byte).unwrap_or(0));
    let id = binding
        .arguments
        .get(ARG_ID)
        .and_then(Value::as_i64)
        .and_then(|i| u32::try_from(i).ok());
    Some((
        filter.clone(),
        Subscription {
            filter,
            options,
            id,
            share: None,
        },
    ))
}

fn options_byte(o: &SubscriptionOptions) -> u8 {
    o.qos as u8
        | u8::from(o.no_local) << 2
        | u8::from(o.retain_as_published) << 3
        | (o.retain_handling as u8) << 4
}

fn options_from_byte(byte: u8) -> SubscriptionOptions {
    SubscriptionOptions {
        qos: QoS::from_bits(byte & 0x03).unwrap_or(QoS::AtLeastOnce),
        no_local: byte & 0x04 != 0,
        retain_as_published: byte & 0x08 != 0,
        retain_handling: match (byte >> 4) & 0x03 {
            1 => RetainHandling::SendIfNew,
            2 => RetainHandling::DoNotSend,
            _ => RetainHandling::SendAtSubscribe,
        },
    }
}

fn binding(queue: &str, sub: &Subscription) -> BindingSpec {
    let mut arguments = Headers::new();
    if sub.share.is_none() {
        arguments.push(ARG_FILTER, Value::text(&sub.filter));
        arguments.push(
            ARG_OPTIONS,
            Value::I64(i64::from(options_byte(&sub.options))),
        );
        if let Some(id) = sub.id {
            arguments.push(ARG_ID, Value::I64(i64::from(id)));
        }
    }
    BindingSpec {
        source: EXCHANGE.to_owned(),
        destination: queue.to_owned(),
        destination_kind: DestinationKind::Queue,
        routing_key: convert::filter_to_pattern(&sub.filter),
        arguments,
    }
}

fn share_queue_name(group: &str, filter: &str) -> String {
    format!("mqtt-share-{group}-{filter}")
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Conn<S> {
    /// Clean start deletes what the client id had [MQTT-3.1.2-4]; otherwise an existing session queue is
    /// consumed again and its subscriptions come back from its bindings. Returns "session present".
    pub async fn restore_session(&mut self) -> Result<bool, MqttError> {
        let name = self.subs.queue_name.clone();
        let core = self.est.core.clone();
        if self.est.connect.clean_start {
            core.delete_queue(&name, false, false).await?;
            return Ok(false);
        }
        match core.queue_exists(&name).await {
            Ok(_) => {}
            Err(e) if e.class() == ErrorClass::NotFound => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        for b in core.queue_bindings(&name)? {
            if let Some((filter, sub)) = from_binding(&b) {
                self.subs.by_filter.insert(filter, sub);
            }
        }
        self.consume(&name, None).await?;
        self.set_session_expiry()?;
        Ok(true)
    }

    /// The session queue expires after the session's current expiry interval (a resumed session takes the
    /// new CONNECT's, a v5 DISCONNECT may change it [MQTT-3.14.2-2]); an interval of 0 ends the session with
    /// the connection (`end_session`).
    pub fn set_session_expiry(&mut self) -> Result<(), CoreError> {
        let secs = self.est.session_expiry;
        self.subs.session_expiry = secs;
        if secs == 0 || self.subs.own_consumer().is_none() {
            return Ok(());
        }
        let expires =
            (secs != NEVER_EXPIRES).then(|| std::time::Duration::from_secs(u64::from(secs)));
        self.est
            .core
            .set_queue_expires(&self.subs.queue_name, expires)
    }

    /// Deletes the session queue: the session ends with its connection.
    pub async fn end_session(&mut self) {
        if let Err(e) = self
            .est
            .core
            .delete_queue(&self.subs.queue_name, false, false)
            .await
        {
            tracing::warn!(queue = %self.subs.queue_name, error = %e, "MQTT session queue not deleted");
        }
    }

    async fn consume(&mut self, queue: &str, share: Option<String>) -> Result<(), CoreError> {
        let key = self.ctx.broker.next_consumer_key();
        let sink = self.sink();
        let spec = ConsumerSpec {
            key,
            tag: format!("mqtt-{key}").into(),
            no_ack: false,
            exclusive: false,
            priority: 0,
            prefetch: self.subs.prefetch,
            channel_limit: None,
            sink,
        };
        let handle = self.est.core.consume(queue, spec).await?;
        self.subs.consumers.insert(key, (handle, share));
        Ok(())
    }

    /// Declares and consumes the session's queue if it is not yet.
    /// Declares the session's queue unless it is consumed already; whether it still has to be consumed.
    async fn declare_session_queue(&mut self) -> Result<bool, CoreError> {
        if self.subs.own_consumer().is_some() {
            return Ok(false);
        }
        let name = self.subs.queue_name.clone();
        self.est
            .core
            .declare_queue(&name, self.subs.queue_options())
            .await?;
        Ok(true)
    }

    pub async fn on_subscribe(&mut self, subscribe: Subscribe) -> Result<(), MqttError> {
        self.publisher.flush().await;
        let id = subscribe
            .properties
            .subscription_identifiers
            .first()
            .copied();
        let mut reasons = Vec::with_capacity(subscribe.filters.len());
        let mut retained = Vec::new();
        for (filter, options) in subscribe.filters {
            let (reason, new) = self.subscribe_one(&filter, options, id).await?;
            reasons.push(reason);
            if !reason.is_error() && wants_retained(&filter, options.retain_handling, new) {
                retained.push((filter, options));
            }
        }
        let mut suback = SubAck {
            packet_id: subscribe.packet_id,
            reasons,
            ..SubAck::default()
        };
        let problem_info = self.est.connect.properties.request_problem_information != Some(0);
        suback.properties.reason_string = self.subs.refusal.take().filter(|_| problem_info); // [MQTT-3.1.2-29]
        self.wire.send(&Packet::SubAck(suback));
        for (filter, options) in retained {
            self.send_retained(&filter, options, id)?;
        }
        Ok(())
    }

    /// One filter: the reason code for SUBACK (the granted QoS on success) and whether it is new.
    async fn subscribe_one(
        &mut self,
        filter: &str,
        options: SubscriptionOptions,
        id: Option<u32>,
    ) -> Result<(ReasonCode, bool), MqttError> {
        let (inner, share) = match topic::shared(filter) {
            None => (filter, None),
            Some(Ok((group, inner))) => (inner, Some(share_queue_name(group, inner))),
            Some(Err(())) => return Ok((ReasonCode::TOPIC_FILTER_INVALID, false)),
        };
        if share.is_some() && options.no_local {
            return Err(MqttError::protocol(
                ReasonCode::PROTOCOL_ERROR,
                "no local on a shared subscription",
            )); // [MQTT-3.8.3-4]
        }
        if filter.len() > self.subs.max_topic_length || !topic::valid_filter(inner) {
            return Ok((ReasonCode::TOPIC_FILTER_INVALID, false));
        }
        let old = self.subs.by_filter.get(filter).cloned();
        if old.is_none() && self.subs.by_filter.len() >= self.subs.max_subscriptions {
            return Ok((ReasonCode::QUOTA_EXCEEDED, false));
        }
        let sub = Subscription {
            filter: inner.to_owned(),
            options,
            id,
            share,
        };
        match self.bind(&sub, old.as_ref()).await {
            Ok(()) => {
                self.subs.by_filter.insert(filter.to_owned(), sub);
                Ok((ReasonCode(options.qos as u8), old.is_none()))
            }
            Err(e) => {
                self.subs.refusal = Some(e.to_string());
                Ok((suback_reason(&e), false))
            }
        }
    }

    /// Binds the subscription's queue (replacing `old`'s binding) and consumes it. The binding is made before
    /// the consumer is attached (a round trip to the queue), so that a publish another client sends right
    /// after this SUBSCRIBE is routed to the queue and delivered once the consumer is there.
    async fn bind(
        &mut self,
        sub: &Subscription,
        old: Option<&Subscription>,
    ) -> Result<(), CoreError> {
        let queue = match &sub.share {
            None => {
                let consume = self.declare_session_queue().await?;
                let queue = self.subs.queue_name.clone();
                if let Some(old) = old {
                    self.est.core.bind(&binding(&queue, old), BindOp::Unbind)?;
                }
                self.est.core.bind(&binding(&queue, sub), BindOp::Bind)?;
                if consume && let Err(e) = self.consume(&queue, None).await {
                    let _ = self.est.core.bind(&binding(&queue, sub), BindOp::Unbind);
                    return Err(e);
                }
                return Ok(());
            }
            Some(queue) => queue.clone(),
        };
        if let Some(old) = old {
            self.est.core.bind(&binding(&queue, old), BindOp::Unbind)?;
        }
        if let (Some(share), None) = (&sub.share, old) {
            let options = QueueOptions {
                auto_delete: AutoDelete::WhenUnused,
                ..QueueOptions::default()
            };
            self.est.core.declare_queue(&queue, options).await?;
            self.est.core.bind(&binding(&queue, sub), BindOp::Bind)?;
            return self.consume(&queue, Some(share.clone())).await;
        }
        self.est.core.bind(&binding(&queue, sub), BindOp::Bind)
    }

    /// Retained messages matching a new subscription, flagged retain [MQTT-3.3.1-8].
    fn send_retained(
        &mut self,
        filter: &str,
        options: SubscriptionOptions,
        id: Option<u32>,
    ) -> Result<(), MqttError> {
        let pattern = convert::filter_to_pattern(filter);
        let messages = self.est.core.retained(EXCHANGE, &pattern)?;
        for message in messages {
            let name = convert::key_to_topic(&message.routing_key);
            if !topic::matches(filter, &name) {
                continue;
            }
            let qos = options.qos.min(convert::published_qos(&message));
            self.send_message(&message, qos, true, false, id.into_iter().collect(), None);
        }
        Ok(())
    }

    pub fn on_unsubscribe(&mut self, unsubscribe: Unsubscribe) -> Result<(), MqttError> {
        let mut reasons = Vec::with_capacity(unsubscribe.filters.len());
        for filter in &unsubscribe.filters {
            reasons.push(self.unsubscribe_one(filter)?);
        }
        let unsuback = SubAck {
            packet_id: unsubscribe.packet_id,
            reasons,
            ..SubAck::default()
        };
        self.wire.send(&Packet::UnsubAck(unsuback));
        Ok(())
    }

    fn unsubscribe_one(&mut self, filter: &str) -> Result<ReasonCode, MqttError> {
        let Some(sub) = self.subs.by_filter.remove(filter) else {
            return Ok(ReasonCode::NO_SUBSCRIPTION_EXISTED);
        };
        let Some(share) = &sub.share else {
            self.est
                .core
                .bind(&binding(&self.subs.queue_name, &sub), BindOp::Unbind)?;
            return Ok(ReasonCode::SUCCESS);
        };
        let consumers = &mut self.subs.consumers;
        let key = consumers
            .iter()
            .find(|(_, (_, s))| s.as_ref() == Some(share))
            .map(|(k, _)| *k);
        if let Some((key, (queue, _))) = key.and_then(|k| Some((k, consumers.remove(&k)?))) {
            queue.cancel_detached(key); // the group's queue deletes itself when its last consumer goes
        }
        Ok(ReasonCode::SUCCESS)
    }
}

/// A SUBACK's code for a core refusal: 0x80 Unspecified error for a permission, which the Paho interop suite
/// expects (test_subscribe_failure) and 3.1.1 can say too, with the reason in the reason string; otherwise
/// what `error::reason_for` says.
fn suback_reason(error: &CoreError) -> ReasonCode {
    match reason_for(error) {
        ReasonCode::NOT_AUTHORIZED => ReasonCode::UNSPECIFIED_ERROR,
        reason => reason,
    }
}

/// Whether a subscription gets the retained messages now (§3.8.3.1 Retain Handling); never a shared one.
fn wants_retained(filter: &str, handling: RetainHandling, new: bool) -> bool {
    if topic::shared(filter).is_some() {
        return false;
    }
    match handling {
        RetainHandling::SendAtSubscribe => true,
        RetainHandling::SendIfNew => new,
        RetainHandling::DoNotSend => false,
    }
}
