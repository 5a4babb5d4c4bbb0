//! Messages to the client: deliveries from the session's queues (and retained messages on subscribe) become
//! PUBLISH packets at the lower of the message's QoS and the subscription's [MQTT-3.8.4-8], with the matching
//! subscriptions' identifiers (v5). QoS 0 deliveries are settled once written into the write buffer; QoS 1
//! and 2 ones get a packet id and stay in flight until PUBACK, or PUBREC (then the message is settled and the
//! id waits for PUBCOMP). The queue consumer's prefetch is the client's receive maximum (capped by
//! `mqtt.max_inflight`), so in-flight messages are bounded [MQTT-3.3.4-9]. A message the client saw before
//! (redelivered after a reconnect) carries DUP [MQTT-3.3.1-1] and, when the session resumed, the packet id it
//! had [MQTT-4.4.0-1]: the ids in flight when a connection ends are kept with the session, keyed by queue and
//! delivery tag (a queue keeps a message's tag when it is requeued), and reserved until it comes back.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use ferrymq_mqtt_codec::{Ack, Packet, QoS, ReasonCode};
use tokio::io::{AsyncRead, AsyncWrite};

use super::connection::Conn;
use super::convert;
use crate::core::{ConsumerKey, Deliveries, Message, QueueHandle, Settle, SinkEvent};

/// Deliveries awaiting the client's acknowledgement, by packet id.
#[derive(Debug, Default)]
pub struct Inflight {
    by_id: HashMap<u16, InflightEntry>,
    next_id: u16,
    /// Deliveries of an earlier connection of the session, by queue name and tag, with the packet id they
    /// were sent with: reserved until the message is sent again (see the module docs).
    resend: HashMap<(String, u64), u16>,
    reserved: HashSet<u16>,
}

/// A delivery in flight when the connection ended, and its packet id: (queue name, tag) -> id.
pub type ResendIds = HashMap<(String, u64), u16>;

/// A queue delivery to settle: the queue, its tag and the consumer holding it.
pub type Delivered = (QueueHandle, u64, ConsumerKey);

#[derive(Debug)]
struct InflightEntry {
    /// The queue delivery to settle; `None` for a retained message or once settled (QoS 2 after PUBREC).
    settle: Option<Delivered>,
    /// PUBREL sent: waiting for PUBCOMP.
    released: bool,
}

impl Inflight {
    /// A packet id not in use [MQTT-2.2.1-3]; `None` when all 65,535 are.
    fn allocate(&mut self) -> Option<u16> {
        for _ in 0..u16::MAX {
            self.next_id = self.next_id.checked_add(1).unwrap_or(1);
            if !self.by_id.contains_key(&self.next_id) && !self.reserved.contains(&self.next_id) {
                return Some(self.next_id);
            }
        }
        None
    }

    /// The id a redelivered message had on an earlier connection, if it is free for it.
    fn original_id(&mut self, queue: &QueueHandle, tag: u64) -> Option<u16> {
        if self.resend.is_empty() {
            return None;
        }
        let id = self.resend.remove(&(queue.name.clone(), tag))?;
        self.reserved.remove(&id);
        (!self.by_id.contains_key(&id)).then_some(id)
    }

    /// Takes the ids of a resumed session's earlier deliveries (see [`Inflight::take_resend`]).
    pub fn resume(&mut self, resend: ResendIds) {
        self.reserved = resend.values().copied().collect();
        self.resend = resend;
    }

    /// The ids to keep with the session: the deliveries in flight at the end (see
    /// [`Conn::requeue_unacknowledged`]) and those of earlier connections not sent again yet.
    pub fn take_resend(&mut self) -> ResendIds {
        self.reserved.clear();
        std::mem::take(&mut self.resend)
    }

    fn take(&mut self, id: u16) -> Option<Delivered> {
        self.by_id.remove(&id).and_then(|e| e.settle)
    }

    /// The packet ids released (PUBREL sent) and not completed.
    pub fn released(&self) -> HashSet<u16> {
        self.by_id
            .iter()
            .filter(|(_, e)| e.released)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Every unsettled delivery with its packet id, taken out (released ids stay: they are the session's to
    /// resume).
    fn drain(&mut self) -> Vec<(u16, Delivered)> {
        let unsettled: Vec<u16> = self
            .by_id
            .iter()
            .filter(|(_, e)| e.settle.is_some())
            .map(|(id, _)| *id)
            .collect();
        unsettled
            .into_iter()
            .filter_map(|id| Some((id, self.take(id)?)))
            .collect()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Conn<S> {
    pub fn on_sink_event(&mut self, event: SinkEvent) {
        match event {
            SinkEvent::Deliver(deliveries) => self.deliver(deliveries),
            SinkEvent::Cancelled { consumer } => self.subs.cancelled(consumer),
        }
    }

    fn deliver(&mut self, deliveries: Deliveries) {
        let Deliveries {
            consumer,
            queue,
            items,
        } = deliveries;
        let share = self.subs.share_of(consumer);
        let (mut count, mut bytes) = (0u32, 0u64);
        let mut settled_now = Vec::new();
        for item in items {
            count += 1;
            bytes += item.message.body.len() as u64;
            let topic = convert::key_to_topic(&item.message.routing_key);
            let own = item.message.properties.publisher == self.publisher_id();
            let Some(route) = self.subs.route(&topic, share.as_deref(), own) else {
                settled_now.push(item.tag); // no subscription of this session wants it ($-topic, unsubscribed)
                continue;
            };
            let qos = route.qos.min(convert::published_qos(&item.message));
            let retain = route.retain_as_published && item.message.annotations.retain;
            let settle = (qos != QoS::AtMostOnce).then(|| (queue.clone(), item.tag, consumer));
            if !self.send_message(
                &item.message,
                qos,
                retain,
                item.redelivered,
                route.ids,
                settle,
            ) {
                settled_now.push(item.tag);
            }
        }
        queue.settle(settled_now, Settle::Ack, Some(consumer));
        self.written.push((queue, consumer, count, bytes));
    }

    /// Encodes one PUBLISH; false when it was not sent in flight (QoS 0, or dropped as too large for the
    /// client), so the caller settles it now.
    pub fn send_message(
        &mut self,
        message: &Arc<Message>,
        qos: QoS,
        retain: bool,
        dup: bool,
        ids: Vec<u32>,
        settle: Option<Delivered>,
    ) -> bool {
        let mut publish = convert::outgoing(message, qos, retain);
        publish.properties.subscription_identifiers = ids;
        let new_alias = self.alias_topic(&mut publish);
        let original = match (&settle, dup) {
            (Some((queue, tag, _)), true) => self.inflight.original_id(queue, *tag),
            _ => None,
        };
        let packet_id = match qos {
            QoS::AtMostOnce => None,
            _ => match original.or_else(|| self.inflight.allocate()) {
                Some(id) => Some(id),
                None => return false,
            },
        };
        publish.packet_id = packet_id;
        publish.dup = dup && packet_id.is_some();
        let sent_topic = new_alias.map(|_| publish.topic.clone());
        if !self.wire.send(&Packet::Publish(publish)) {
            return false;
        }
        if let (Some(alias), Some(topic)) = (new_alias, sent_topic) {
            self.aliases_out.insert(topic, alias);
        }
        let Some(id) = packet_id else { return false };
        self.inflight.by_id.insert(
            id,
            InflightEntry {
                settle,
                released: false,
            },
        );
        true
    }

    /// Uses a topic alias towards a v5 client that accepts them: an alias already set replaces the topic; a
    /// new one is set while there are free ones (returned, to be remembered once the packet is written).
    fn alias_topic(&mut self, publish: &mut ferrymq_mqtt_codec::Publish) -> Option<u16> {
        let max = self.est.connect.properties.topic_alias_maximum.unwrap_or(0);
        if !self.wire.version.is_v5() || max == 0 {
            return None;
        }
        if let Some(&alias) = self.aliases_out.get(&publish.topic) {
            publish.properties.topic_alias = Some(alias);
            publish.topic.clear();
            return None;
        }
        let next = u16::try_from(self.aliases_out.len() + 1)
            .ok()
            .filter(|n| *n <= max)?;
        publish.properties.topic_alias = Some(next);
        Some(next)
    }

    /// The connection is ending: what is in flight, and what queues handed over but was not written, goes back
    /// to its queue marked redelivered, to be sent again with DUP when the session resumes [MQTT-4.4.0-1].
    pub fn requeue_unacknowledged(&mut self) {
        for (id, (queue, tag, consumer)) in self.inflight.drain() {
            self.inflight.resend.insert((queue.name.clone(), tag), id);
            queue.settle(vec![tag], Settle::Requeue, Some(consumer));
        }
        while let Some(Ok(event)) = self.sink_rx.as_mut().map(|rx| rx.try_recv()) {
            if let SinkEvent::Deliver(d) = event {
                let tags = d.items.iter().map(|i| i.tag).collect();
                d.queue.settle(tags, Settle::Requeue, Some(d.consumer));
            }
        }
    }

    /// PUBACK: a QoS 1 delivery is done.
    pub fn on_puback(&mut self, packet_id: u16) {
        if let Some((queue, tag, consumer)) = self.inflight.take(packet_id) {
            queue.settle(vec![tag], Settle::Ack, Some(consumer));
        }
    }

    /// PUBREC: the client has a QoS 2 delivery; settle it and release the id with PUBREL [MQTT-4.3.3-4].
    pub fn on_pubrec(&mut self, ack: Ack) {
        let known = self.inflight.by_id.contains_key(&ack.packet_id);
        if let Some((queue, tag, consumer)) = self.inflight.take(ack.packet_id) {
            queue.settle(vec![tag], Settle::Ack, Some(consumer));
        }
        if ack.reason.is_error() {
            return; // the exchange ends here [MQTT-4.3.3-4]: no PUBREL
        }
        let reason = if known || !self.wire.version.is_v5() {
            self.inflight.by_id.insert(
                ack.packet_id,
                InflightEntry {
                    settle: None,
                    released: true,
                },
            );
            ReasonCode::SUCCESS
        } else {
            ReasonCode::PACKET_IDENTIFIER_NOT_FOUND
        };
        self.wire.send(&Packet::PubRel(Ack {
            packet_id: ack.packet_id,
            reason,
            ..Ack::default()
        }));
    }

    /// A resumed session sends PUBREL again for the QoS 2 deliveries released and not completed before
    /// [MQTT-4.4.0-1].
    pub fn release_again(&mut self, released: HashSet<u16>) {
        for packet_id in released {
            self.inflight.by_id.insert(
                packet_id,
                InflightEntry {
                    settle: None,
                    released: true,
                },
            );
            self.wire.send(&Packet::PubRel(Ack {
                packet_id,
                ..Ack::default()
            }));
        }
    }

    /// PUBCOMP: a QoS 2 delivery is done.
    pub fn on_pubcomp(&mut self, packet_id: u16) {
        self.inflight.take(packet_id);
    }
}
