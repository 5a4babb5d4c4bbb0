//! Property tests: every packet of every version survives encode then decode unchanged, and decodes the same
//! when its bytes arrive split at every position (the broker's read buffer sees packets in arbitrary pieces).

#![allow(clippy::unwrap_used)]

use bytes::{Bytes, BytesMut};
use ferrymq_mqtt_codec::*;
use proptest::prelude::*;

const MAX: usize = 1 << 20;

fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 é/_-]{0,12}"
}

fn topic() -> impl Strategy<Value = String> {
    "[a-z0-9/$]{1,16}"
}

fn bin() -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..16).prop_map(Bytes::from)
}

fn flag() -> impl Strategy<Value = Option<u8>> {
    prop::option::of(0u8..=1)
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

fn version() -> impl Strategy<Value = ProtocolVersion> {
    prop_oneof![
        Just(ProtocolVersion::V3_1),
        Just(ProtocolVersion::V3_1_1),
        Just(ProtocolVersion::V5)
    ]
}

prop_compose! {
    fn message_props_raw()(
        payload_format_indicator in flag(), message_expiry_interval in any::<Option<u32>>(),
        content_type in prop::option::of(text()), response_topic in prop::option::of(topic()),
        correlation_data in prop::option::of(bin()),
        subscription_identifiers in prop::collection::vec(1u32..=VARINT_MAX, 0..3),
        topic_alias in any::<Option<u16>>(), will_delay_interval in any::<Option<u32>>(),
        user_properties in prop::collection::vec((text(), text()), 0..3),
    ) -> Properties {
        Properties { payload_format_indicator, message_expiry_interval, content_type, response_topic,
            correlation_data, subscription_identifiers, topic_alias, will_delay_interval, user_properties,
            ..Properties::default() }
    }
}

fn session_props() -> BoxedStrategy<Properties> {
    let a = (
        any::<Option<u32>>(),
        prop::option::of(text()),
        any::<Option<u16>>(),
        prop::option::of(text()),
        prop::option::of(bin()),
        flag(),
        flag(),
        prop::option::of(text()),
        prop::option::of(text()),
    )
        .prop_map(|(sei, aci, ska, am, ad, rpi, rri, ri, sr)| Properties {
            session_expiry_interval: sei,
            assigned_client_identifier: aci,
            server_keep_alive: ska,
            authentication_method: am,
            authentication_data: ad,
            request_problem_information: rpi,
            request_response_information: rri,
            response_information: ri,
            server_reference: sr,
            ..Properties::default()
        })
        .boxed();
    let b = (
        prop::option::of(text()),
        prop::option::of(1u16..),
        any::<Option<u16>>(),
        flag(),
        flag(),
        prop::option::of(1u32..),
        flag(),
        flag(),
        flag(),
    )
        .prop_map(|(rs, rm, tam, mq, ra, mps, wsa, sia, ssa)| Properties {
            reason_string: rs,
            receive_maximum: rm,
            topic_alias_maximum: tam,
            maximum_qos: mq,
            retain_available: ra,
            maximum_packet_size: mps,
            wildcard_subscription_available: wsa,
            subscription_identifier_available: sia,
            shared_subscription_available: ssa,
            ..Properties::default()
        })
        .boxed();
    (a, b)
        .prop_map(|(a, b)| Properties {
            session_expiry_interval: a.session_expiry_interval,
            assigned_client_identifier: a.assigned_client_identifier,
            server_keep_alive: a.server_keep_alive,
            authentication_method: a.authentication_method,
            authentication_data: a.authentication_data,
            request_problem_information: a.request_problem_information,
            request_response_information: a.request_response_information,
            response_information: a.response_information,
            server_reference: a.server_reference,
            ..b
        })
        .boxed()
}

fn message_props() -> BoxedStrategy<Properties> {
    message_props_raw().boxed()
}

fn props_for(ctx: PropertyContext) -> BoxedStrategy<Properties> {
    (message_props(), session_props())
        .prop_map(move |(m, s)| {
            let mut p = Properties {
                user_properties: m.user_properties.clone(),
                ..if matches!(
                    ctx,
                    PropertyContext::Publish | PropertyContext::Will | PropertyContext::Subscribe
                ) {
                    m
                } else {
                    s
                }
            };
            p.keep_allowed(ctx);
            p
        })
        .boxed()
}

fn strip_for(v: ProtocolVersion, p: Properties) -> Properties {
    if v.is_v5() { p } else { Properties::default() }
}

fn reason(v: ProtocolVersion, code: u8) -> ReasonCode {
    if v.is_v5() {
        ReasonCode(code)
    } else {
        ReasonCode::SUCCESS
    }
}

prop_compose! {
    fn will(v: ProtocolVersion)(topic in topic(), payload in bin(), qos in qos(), retain in any::<bool>(),
        props in props_for(PropertyContext::Will)) -> Will {
        Will { topic, payload, qos, retain, properties: strip_for(v, props) }
    }
}

fn connect(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        any::<bool>(),
        any::<u16>(),
        text(),
        prop::option::of(will(v)),
        prop::option::of(text()),
        prop::option::of(bin()),
        props_for(PropertyContext::Connect),
    )
        .prop_map(
            move |(clean_start, keep_alive, client_id, will, username, password, props)| {
                let password = if v.is_v5() || username.is_some() {
                    password
                } else {
                    None
                };
                Packet::Connect(Box::new(Connect {
                    version: v,
                    clean_start,
                    keep_alive,
                    client_id,
                    will,
                    username,
                    password,
                    properties: strip_for(v, props),
                }))
            },
        )
}

fn v3_connack_reason(v: ProtocolVersion, code: u8) -> ReasonCode {
    if v.is_v5() {
        ReasonCode(code)
    } else {
        ReasonCode::from_v3_connack(code % 6)
    }
}

fn publish(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        qos(),
        any::<bool>(),
        any::<bool>(),
        topic(),
        1u16..,
        props_for(PropertyContext::Publish),
        bin(),
    )
        .prop_map(move |(qos, dup, retain, topic, id, props, payload)| {
            let at_least_once = qos != QoS::AtMostOnce;
            Packet::Publish(Publish {
                dup: dup && at_least_once,
                qos,
                retain,
                topic,
                packet_id: at_least_once.then_some(id),
                properties: strip_for(v, props),
                payload,
            })
        })
}

fn ack(v: ProtocolVersion) -> impl Strategy<Value = Ack> {
    (1u16.., any::<u8>(), props_for(PropertyContext::Ack)).prop_map(
        move |(packet_id, code, props)| Ack {
            packet_id,
            reason: reason(v, code),
            properties: strip_for(v, props),
        },
    )
}

fn options(v: ProtocolVersion) -> impl Strategy<Value = SubscriptionOptions> {
    (qos(), any::<bool>(), any::<bool>(), 0u8..3).prop_map(move |(qos, nl, rap, rh)| {
        if !v.is_v5() {
            return SubscriptionOptions {
                qos,
                ..SubscriptionOptions::default()
            };
        }
        let retain_handling = [
            RetainHandling::SendAtSubscribe,
            RetainHandling::SendIfNew,
            RetainHandling::DoNotSend,
        ][usize::from(rh)];
        SubscriptionOptions {
            qos,
            no_local: nl,
            retain_as_published: rap,
            retain_handling,
        }
    })
}

fn any_packet(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    let subscribe = (
        1u16..,
        prop::collection::vec((topic(), options(v)), 1..4),
        props_for(PropertyContext::Subscribe),
    )
        .prop_map(move |(packet_id, filters, p)| {
            Packet::Subscribe(Subscribe {
                packet_id,
                filters,
                properties: strip_for(v, p),
            })
        });
    let suback = (
        1u16..,
        prop::collection::vec(prop_oneof![0u8..3, Just(0x80u8)], 1..4),
        props_for(PropertyContext::SubAck),
    )
        .prop_map(move |(packet_id, codes, p)| {
            Packet::SubAck(SubAck {
                packet_id,
                reasons: codes.into_iter().map(ReasonCode).collect(),
                properties: strip_for(v, p),
            })
        });
    let unsubscribe = (
        1u16..,
        prop::collection::vec(topic(), 1..4),
        props_for(PropertyContext::Unsubscribe),
    )
        .prop_map(move |(packet_id, filters, p)| {
            Packet::Unsubscribe(Unsubscribe {
                packet_id,
                filters,
                properties: strip_for(v, p),
            })
        });
    let unsuback = (
        1u16..,
        prop::collection::vec(any::<u8>(), 1..4),
        props_for(PropertyContext::UnsubAck),
    )
        .prop_map(move |(packet_id, codes, p)| {
            Packet::UnsubAck(SubAck {
                packet_id,
                reasons: if v.is_v5() {
                    codes.into_iter().map(ReasonCode).collect()
                } else {
                    Vec::new()
                },
                properties: strip_for(v, p),
            })
        });
    let connack = (
        any::<bool>(),
        any::<u8>(),
        props_for(PropertyContext::ConnAck),
    )
        .prop_map(move |(sp, code, p)| {
            Packet::ConnAck(ConnAck {
                session_present: sp,
                reason: v3_connack_reason(v, code),
                properties: strip_for(v, p),
            })
        });
    let disconnect =
        (any::<u8>(), props_for(PropertyContext::Disconnect)).prop_map(move |(code, p)| {
            Packet::Disconnect(Disconnect {
                reason: reason(v, code),
                properties: strip_for(v, p),
            })
        });
    let mut all = vec![
        connect(v).boxed(),
        connack.boxed(),
        publish(v).boxed(),
        ack(v).prop_map(Packet::PubAck).boxed(),
        ack(v).prop_map(Packet::PubRec).boxed(),
        ack(v).prop_map(Packet::PubRel).boxed(),
        ack(v).prop_map(Packet::PubComp).boxed(),
        subscribe.boxed(),
        suback.boxed(),
        unsubscribe.boxed(),
        unsuback.boxed(),
        Just(Packet::PingReq).boxed(),
        Just(Packet::PingResp).boxed(),
        disconnect.boxed(),
    ];
    if v.is_v5() {
        let auth =
            (any::<u8>(), props_for(PropertyContext::Auth)).prop_map(|(code, properties)| {
                Packet::Auth(Disconnect {
                    reason: ReasonCode(code),
                    properties,
                })
            });
        all.push(auth.boxed());
    }
    prop::strategy::Union::new(all).boxed()
}

fn versioned_packet() -> impl Strategy<Value = (ProtocolVersion, Packet)> {
    version().prop_flat_map(|v| any_packet(v).prop_map(move |p| (v, p)))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_packet_round_trips((v, packet) in versioned_packet()) {
        let mut buf = BytesMut::new();
        let written = encode_packet(&packet, v, &mut buf);
        prop_assert_eq!(written, buf.len());
        prop_assert_eq!(encoded_len(&packet, v), written);
        let decoded = decode_packet(&mut buf, v, MAX);
        prop_assert_eq!(decoded, Ok(Some(packet)));
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn decoding_is_the_same_split_at_every_byte((v, packet) in versioned_packet()) {
        let mut encoded = BytesMut::new();
        encode_packet(&packet, v, &mut encoded);
        encode_packet(&Packet::PingReq, v, &mut encoded);
        for split in 0..encoded.len() {
            let mut buf = BytesMut::from(&encoded[..split]);
            let mut got = Vec::new();
            while let Some(p) = decode_packet(&mut buf, v, MAX).unwrap() {
                got.push(p);
            }
            buf.extend_from_slice(&encoded[split..]);
            while let Some(p) = decode_packet(&mut buf, v, MAX).unwrap() {
                got.push(p);
            }
            prop_assert_eq!(&got, &vec![packet.clone(), Packet::PingReq]);
            prop_assert!(buf.is_empty());
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64), v in version()) {
        let mut buf = BytesMut::from(&bytes[..]);
        let _ = decode_packet(&mut buf, v, 64);
    }
}
