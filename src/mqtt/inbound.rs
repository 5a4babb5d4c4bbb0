//! Messages from the client: PUBLISH (topic aliases resolved, converted, retained when asked, published
//! through the connection's `Publisher`), and the answers it is owed. A QoS 1 publish is answered with PUBACK
//! and a QoS 2 publish with PUBREC only once `Settling` says the core took it, which for a persistent message
//! reaching a durable queue is after the store synced it (docs/ARCHITECTURE.md §5); answers go out in publish
//! order. QoS 2 is delivered on receipt ("method A", §4.3.3): the packet id is remembered until PUBREL, and a
//! retransmission with the same id is answered without being published again [MQTT-4.3.3-9].

use std::sync::Arc;

use ferrymq_mqtt_codec::{Ack, Packet, Publish, QoS, ReasonCode};
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::debug;

use super::connection::Conn;
use super::convert;
use super::error::{MqttError, reason_for};
use crate::core::{Outcome, Receipt, Settling};

/// The answer owed to one QoS 1/2 publish.
#[derive(Debug)]
pub struct PendingAck {
    packet_id: u16,
    qos: QoS,
    state: AckState,
}

#[derive(Debug)]
enum AckState {
    /// Known now.
    Ready(ReasonCode),
    /// Known when the store has synced the message (`None`: it reached no queue) and its retained copy, if
    /// any.
    Settling(Option<Settling>, Option<Settling>),
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Conn<S> {
    pub async fn on_publish(&mut self, mut publish: Publish) -> Result<(), MqttError> {
        let topic = self.resolve_alias(&mut publish)?;
        if topic.len() > self.ctx.config.max_topic_length {
            return Err(MqttError::protocol(
                ReasonCode::TOPIC_NAME_INVALID,
                "topic name too long",
            ));
        }
        let Some(packet_id) = publish.packet_id else {
            return self.publish_at_most_once(&publish, &topic);
        };
        if self.pending_acks.len() + self.incoming_qos2.len()
            >= usize::from(self.ctx.config.max_inflight)
        {
            return Err(MqttError::protocol(
                ReasonCode::RECEIVE_MAXIMUM_EXCEEDED,
                "receive maximum exceeded",
            )); // [MQTT-3.3.4-9]
        }
        if publish.qos == QoS::ExactlyOnce && self.incoming_qos2.contains(&packet_id) {
            self.owe(packet_id, publish.qos, AckState::Ready(ReasonCode::SUCCESS));
            return Ok(());
        }
        let state = match self.publish_core(&publish, &topic).await {
            Ok(state) => state,
            Err(e) if self.wire.version.is_v5() => AckState::Ready(reason_for(&e)),
            Err(e) => return Err(e.into()),
        };
        let accepted = !matches!(state, AckState::Ready(r) if r.is_error());
        if publish.qos == QoS::ExactlyOnce && accepted {
            self.incoming_qos2.insert(packet_id);
        }
        self.owe(packet_id, publish.qos, state);
        Ok(())
    }

    fn publish_at_most_once(&mut self, publish: &Publish, topic: &str) -> Result<(), MqttError> {
        let message = convert::incoming(publish, topic, self.publisher_id());
        if publish.retain {
            self.est.core.retain(Arc::new(message.clone()))?;
        }
        self.has_published = true;
        match self.publisher.publish_buffered(message, false) {
            Ok(_) => Ok(()),
            Err(e) if self.wire.version.is_v5() => {
                debug!(error = %e, "QoS 0 publish refused");
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Publishes a QoS 1/2 message: what its answer waits for.
    async fn publish_core(
        &mut self,
        publish: &Publish,
        topic: &str,
    ) -> Result<AckState, crate::core::CoreError> {
        let message = convert::incoming(publish, topic, self.publisher_id());
        let retained = match publish.retain {
            true => Some(self.est.core.retain(Arc::new(message.clone()))?),
            false => None,
        };
        self.has_published = true;
        let confirmation = match self.publisher.publish_buffered(message, true)? {
            Receipt::Unroutable(_) => return Ok(AckState::Settling(None, retained)),
            Receipt::Routed(confirmation) => confirmation,
        };
        let settling = match confirmation.try_settling() {
            Ok(settling) => settling,
            Err(confirmation) => {
                self.publisher.flush().await;
                confirmation.queues_answered().await
            }
        };
        if self.publisher.is_full() {
            self.publisher.flush().await;
        }
        Ok(AckState::Settling(Some(settling), retained))
    }

    /// The topic a PUBLISH is for: its own, or the one its v5 topic alias stands for [MQTT-3.3.2-12].
    fn resolve_alias(&mut self, publish: &mut Publish) -> Result<String, MqttError> {
        let Some(alias) = publish.properties.topic_alias.take() else {
            if publish.topic.is_empty() {
                return Err(MqttError::protocol(
                    ReasonCode::PROTOCOL_ERROR,
                    "empty topic without an alias",
                ));
            }
            return Ok(std::mem::take(&mut publish.topic));
        };
        if alias == 0 || alias > self.ctx.config.topic_alias_maximum {
            return Err(MqttError::protocol(
                ReasonCode::TOPIC_ALIAS_INVALID,
                "topic alias out of range",
            )); // [MQTT-3.3.2-9]
        }
        if publish.topic.is_empty() {
            return self
                .aliases_in
                .get(&alias)
                .cloned()
                .ok_or(MqttError::protocol(
                    ReasonCode::PROTOCOL_ERROR,
                    "unknown topic alias",
                ));
        }
        let topic = std::mem::take(&mut publish.topic);
        self.aliases_in.insert(alias, topic.clone());
        Ok(topic)
    }

    fn owe(&mut self, packet_id: u16, qos: QoS, state: AckState) {
        self.pending_acks.push_back(PendingAck {
            packet_id,
            qos,
            state,
        });
    }

    /// Sends the answers whose outcome is known, in publish order.
    pub fn answer_settled(&mut self) {
        while let Some(front) = self.pending_acks.front() {
            let reason = match &front.state {
                AckState::Ready(reason) => *reason,
                AckState::Settling(publish, retained) => {
                    let Some(reason) = self.settled_reason(publish.as_ref(), retained.as_ref())
                    else {
                        return;
                    };
                    reason
                }
            };
            let PendingAck { packet_id, qos, .. } = *front;
            self.pending_acks.pop_front();
            if qos == QoS::ExactlyOnce && reason.is_error() {
                self.incoming_qos2.remove(&packet_id);
            }
            let ack = Ack {
                packet_id,
                reason,
                ..Ack::default()
            };
            let packet = if qos == QoS::ExactlyOnce {
                Packet::PubRec(ack)
            } else {
                Packet::PubAck(ack)
            };
            self.wire.send(&packet);
        }
    }

    /// The answer once both the message (`None`: it reached no queue) and its retained copy are settled;
    /// `None` while either waits. A message nobody is subscribed to is v5's 0x10 No matching subscribers.
    fn settled_reason(
        &self,
        publish: Option<&Settling>,
        retained: Option<&Settling>,
    ) -> Option<ReasonCode> {
        if let Some(Outcome::Failed | Outcome::Refused) = self.outcome(retained)? {
            return Some(ReasonCode::UNSPECIFIED_ERROR);
        }
        let reason = match self.outcome(publish)? {
            None if self.wire.version.is_v5() => ReasonCode::NO_MATCHING_SUBSCRIBERS,
            None | Some(Outcome::Accepted) => ReasonCode::SUCCESS,
            Some(Outcome::Refused) => ReasonCode::QUOTA_EXCEEDED,
            Some(Outcome::Failed) => ReasonCode::UNSPECIFIED_ERROR,
        };
        Some(reason)
    }

    /// `None` while `settling` waits; then its outcome (`None` for no settling at all).
    fn outcome(&self, settling: Option<&Settling>) -> Option<Option<Outcome>> {
        match settling {
            None => Some(None),
            Some(s) => s.check(&self.sync).map(Some),
        }
    }

    /// PUBREL: the QoS 2 exchange for `packet_id` is over; PUBCOMP [MQTT-4.3.3-11].
    pub fn on_pubrel(&mut self, packet_id: u16) {
        let reason = if self.incoming_qos2.remove(&packet_id) || !self.wire.version.is_v5() {
            ReasonCode::SUCCESS
        } else {
            ReasonCode::PACKET_IDENTIFIER_NOT_FOUND
        };
        self.wire.send(&Packet::PubComp(Ack {
            packet_id,
            reason,
            ..Ack::default()
        }));
    }
}
