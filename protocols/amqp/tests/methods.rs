//! Method argument encoding: every variant round-trips, bits pack per spec §4.2.5.2, reserved fields are
//! zero on the wire, and bad payloads are the right errors.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;

use bytes::{BufMut, Bytes, BytesMut};
use common::{VARIANTS, all_methods, hex, variant_index};
use ferrymq_amqp_codec::*;

fn payload(m: &Method) -> Vec<u8> {
    let mut out = BytesMut::new();
    m.encode(&mut out);
    out.to_vec()
}

fn decode_payload(bytes: &[u8]) -> Result<Method, CodecError> {
    Method::decode(&mut Bytes::copy_from_slice(bytes))
}

#[test]
fn the_fixtures_cover_every_method_variant() {
    let seen: HashSet<usize> = all_methods().iter().map(variant_index).collect();
    assert_eq!(seen.len(), VARIANTS);
    assert_eq!(all_methods().len(), VARIANTS);
}

#[test]
fn every_method_round_trips_through_a_method_frame() {
    for (i, m) in all_methods().into_iter().enumerate() {
        let channel = i as u16;
        let mut out = BytesMut::new();
        encode_method(channel, &m, &mut out);
        let frame = decode_frame(&mut out, 0).unwrap().unwrap();
        assert_eq!(frame, Frame::Method(channel, m.clone()), "{}", m.name());
        assert!(out.is_empty(), "{} left bytes behind", m.name());

        let mut framed = BytesMut::new();
        encode_frame(&Frame::Method(channel, m.clone()), &mut framed);
        let mut direct = BytesMut::new();
        encode_method(channel, &m, &mut direct);
        assert_eq!(framed, direct);
    }
}

#[test]
fn every_method_has_distinct_ids_and_a_name_matching_its_class() {
    let mut ids = HashSet::new();
    let mut names = HashSet::new();
    for m in all_methods() {
        assert!(ids.insert(m.ids()), "duplicate ids for {}", m.name());
        assert!(names.insert(m.name()));
        let class = match m.name().split('.').next().unwrap() {
            "connection" => class::CONNECTION,
            "channel" => class::CHANNEL,
            "exchange" => class::EXCHANGE,
            "queue" => class::QUEUE,
            "basic" => class::BASIC,
            "confirm" => class::CONFIRM,
            "tx" => class::TX,
            other => panic!("unknown class {other}"),
        };
        assert_eq!(m.class_id(), class, "{}", m.name());
        assert_eq!(
            payload(&m)[..4],
            [(class >> 8) as u8, class as u8, 0, m.method_id() as u8][..]
        );
    }
}

#[test]
fn ids_of_the_methods_that_are_easy_to_get_wrong() {
    assert_eq!(Method::ExchangeUnbindOk.ids(), (40, 51));
    assert_eq!(Method::ExchangeBindOk.ids(), (40, 31));
    assert_eq!(Method::QueueUnbindOk.ids(), (50, 51));
    assert_eq!(Method::from(QueueUnbind::default()).ids(), (50, 50));
    assert_eq!(Method::from(BasicRecoverAsync::default()).ids(), (60, 100));
    assert_eq!(Method::BasicRecoverOk.ids(), (60, 111));
    assert_eq!(Method::from(BasicNack::default()).ids(), (60, 120));
    assert_eq!(Method::from(ConfirmSelect::default()).ids(), (85, 10));
    assert_eq!(Method::from(ConnectionBlocked::default()).ids(), (10, 60));
    assert_eq!(
        Method::from(ConnectionUpdateSecret::default()).ids(),
        (10, 70)
    );
    assert_eq!(Method::TxRollbackOk.ids(), (90, 31));
}

#[test]
fn only_publish_return_deliver_and_get_ok_carry_content() {
    let with_content: Vec<&str> = all_methods()
        .iter()
        .filter(|m| m.has_content())
        .map(|m| m.name())
        .collect();
    assert_eq!(
        with_content,
        [
            "basic.publish",
            "basic.return",
            "basic.deliver",
            "basic.get-ok"
        ]
    );
}

#[test]
fn exchange_declare_bits_pack_into_one_octet_low_bit_first() {
    for bits in 0u8..32 {
        let m = Method::ExchangeDeclare(ExchangeDeclare {
            exchange: "e".into(),
            kind: "direct".into(),
            passive: bits & 1 != 0,
            durable: bits & 2 != 0,
            auto_delete: bits & 4 != 0,
            internal: bits & 8 != 0,
            no_wait: bits & 16 != 0,
            arguments: FieldTable::new(),
        });
        let mut expected = hex("0028 000a 0000 01 65 06 646972656374");
        expected.push(bits);
        expected.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(payload(&m), expected, "bits {bits:05b}");
        assert_eq!(decode_payload(&expected).unwrap(), m);
    }
}

#[test]
fn every_bit_combination_round_trips_for_the_bit_heavy_methods() {
    for bits in 0u8..32 {
        let b = |i: u8| bits & (1 << i) != 0;
        let methods = [
            Method::QueueDeclare(QueueDeclare {
                queue: "q".into(),
                passive: b(0),
                durable: b(1),
                exclusive: b(2),
                auto_delete: b(3),
                no_wait: b(4),
                arguments: common::table(),
            }),
            Method::BasicConsume(BasicConsume {
                queue: "q".into(),
                consumer_tag: "t".into(),
                no_local: b(0),
                no_ack: b(1),
                exclusive: b(2),
                no_wait: b(3),
                arguments: FieldTable::new(),
            }),
            Method::QueueDelete(QueueDelete {
                queue: "q".into(),
                if_unused: b(0),
                if_empty: b(1),
                no_wait: b(2),
            }),
            Method::BasicNack(BasicNack {
                delivery_tag: 5,
                multiple: b(0),
                requeue: b(1),
            }),
            Method::BasicPublish(BasicPublish {
                exchange: "x".into(),
                routing_key: "k".into(),
                mandatory: b(0),
                immediate: b(1),
            }),
        ];
        for m in methods {
            assert_eq!(decode_payload(&payload(&m)).unwrap(), m, "bits {bits:05b}");
        }
    }
}

#[test]
fn reserved_fields_are_written_as_zero_and_empty() {
    // connection.open: virtual-host "/", reserved-1 (capabilities) "", reserved-2 (insist) false.
    let open = Method::ConnectionOpen(ConnectionOpen {
        virtual_host: "/".into(),
    });
    assert_eq!(payload(&open), hex("000a 0028 01 2f 00 00"));
    // connection.open-ok: reserved-1 (known-hosts) "".
    assert_eq!(payload(&Method::ConnectionOpenOk), hex("000a 0029 00"));
    // channel.open: reserved-1 (out-of-band) "".
    assert_eq!(payload(&Method::ChannelOpen), hex("0014 000a 00"));
    // channel.open-ok: reserved-1 (channel-id) longstr "".
    assert_eq!(payload(&Method::ChannelOpenOk), hex("0014 000b 00000000"));
    // basic.get-empty: reserved-1 (cluster-id) "".
    assert_eq!(payload(&Method::BasicGetEmpty), hex("003c 0048 00"));
    // basic.get: reserved-1 (ticket) 0, queue "q", no-ack.
    let get = Method::BasicGet(BasicGet {
        queue: "q".into(),
        no_ack: true,
    });
    assert_eq!(payload(&get), hex("003c 0046 0000 01 71 01"));
    // Field-less methods have no arguments at all.
    assert_eq!(payload(&Method::TxSelect), hex("005a 000a"));
}

#[test]
fn reserved_fields_sent_non_empty_are_read_and_ignored() {
    // Old clients send capabilities and insist on connection.open; the reserved octets are skipped.
    let m = decode_payload(&hex("000a 0028 01 2f 03 616263 01")).unwrap();
    assert_eq!(
        m,
        Method::ConnectionOpen(ConnectionOpen {
            virtual_host: "/".into()
        })
    );
    let m = decode_payload(&hex("0014 000b 00000002 3132")).unwrap();
    assert_eq!(m, Method::ChannelOpenOk);
    let m = decode_payload(&hex("003c 0028 0001 00 01 6b 00")).unwrap();
    assert_eq!(
        m,
        Method::BasicPublish(BasicPublish {
            routing_key: "k".into(),
            ..Default::default()
        })
    );
}

#[test]
fn truncated_arguments_are_malformed_at_every_cut() {
    for m in all_methods() {
        let full = payload(&m);
        for cut in 0..full.len() {
            match decode_payload(&full[..cut]) {
                Err(e @ CodecError::Malformed(_)) => assert_eq!(e.reply_code(), 502),
                other => panic!("{} cut at {cut}/{}: {other:?}", m.name(), full.len()),
            }
        }
    }
}

#[test]
fn bytes_after_the_arguments_are_malformed() {
    for m in all_methods() {
        let mut bytes = payload(&m);
        bytes.push(0);
        assert!(
            matches!(decode_payload(&bytes), Err(CodecError::Malformed(_))),
            "{} accepted a trailing byte",
            m.name()
        );
    }
}

#[test]
fn unknown_class_or_method_is_not_implemented() {
    for (class_id, method_id) in [(60, 999), (99, 10), (10, 12), (40, 41), (0, 0)] {
        let mut out = BytesMut::new();
        out.put_u8(FRAME_METHOD);
        out.put_u16(1);
        out.put_u32(4);
        out.put_u16(class_id);
        out.put_u16(method_id);
        out.put_u8(FRAME_END);
        let err = decode_frame(&mut out, FRAME_MIN_SIZE).unwrap_err();
        assert!(
            matches!(err, CodecError::UnknownMethod { class_id: c, method_id: m } if c == class_id && m == method_id),
            "{err:?}"
        );
        assert_eq!(err.reply_code(), 540);
    }
}

#[test]
fn invalid_utf8_in_a_shortstr_argument_is_malformed() {
    // basic.publish with routing key bytes ff fe.
    let err = decode_payload(&hex("003c 0028 0000 00 02 fffe 00")).unwrap_err();
    assert!(matches!(err, CodecError::Malformed(_)), "{err:?}");
}

#[test]
fn method_payload_shorter_than_its_ids_is_malformed() {
    let mut out = BytesMut::from(&hex("01 0001 00000002 003c ce")[..]);
    assert!(matches!(
        decode_frame(&mut out, 0),
        Err(CodecError::Malformed(_))
    ));
}
