//! Captured frames: byte streams recorded from real clients (pika, lapin) in a session with FerryMQ,
//! through a recording TCP relay. `tests/fixtures/README.md` says how they were captured.
//!
//! Each client stream (client -> broker, after the 8-byte protocol header) must decode completely into
//! the methods the client's script ran, with the published properties and headers decoding to exactly the
//! values set (field tables in the client's key order), and every decoded frame must re-encode to the
//! captured bytes. Each server stream (what FerryMQ sent back) must decode completely too.
#![allow(clippy::unwrap_used)]

use bytes::{Bytes, BytesMut};
use ferrymq_amqp_codec::*;

const PIKA_CLIENT: &[u8] = include_bytes!("fixtures/pika_client.bin");
const PIKA_SERVER: &[u8] = include_bytes!("fixtures/pika_server.bin");
const LAPIN_CLIENT: &[u8] = include_bytes!("fixtures/lapin_client.bin");
const LAPIN_SERVER: &[u8] = include_bytes!("fixtures/lapin_server.bin");

/// One decoded frame and the exact bytes it was decoded from.
struct Captured {
    frame: Frame,
    raw: &'static [u8],
}

/// Decodes a whole captured stream. A client stream starts with the protocol header. Frames are checked
/// against frame_max as the session had it: [`FRAME_MIN_SIZE`] until connection.tune (server stream) or
/// connection.tune-ok (client stream) is seen, the negotiated value after it. Every byte must belong to a
/// frame: a capture that ends inside a frame fails.
fn decode_stream(wire: &'static [u8]) -> Vec<Captured> {
    let mut buf = BytesMut::from(wire);
    if wire.starts_with(b"AMQP") {
        assert_eq!(decode_protocol_header(&mut buf), Some(ProtocolHeader::Ok));
    }
    let mut frame_max = FRAME_MIN_SIZE;
    let mut frames = Vec::new();
    while !buf.is_empty() {
        let start = wire.len() - buf.len();
        let frame = match decode_frame(&mut buf, frame_max) {
            Ok(Some(frame)) => frame,
            Ok(None) => panic!(
                "stream ends inside a frame at offset {start}: {} bytes left",
                buf.len()
            ),
            Err(e) => panic!(
                "frame {} at offset {start} does not decode: {e}: {:02x?}",
                frames.len(),
                &wire[start..]
            ),
        };
        let raw = &wire[start..wire.len() - buf.len()];
        match &frame {
            Frame::Method(0, Method::ConnectionTune(t)) => frame_max = t.frame_max,
            Frame::Method(0, Method::ConnectionTuneOk(t)) => frame_max = t.frame_max,
            _ => {}
        }
        frames.push(Captured { frame, raw });
    }
    frames
}

/// The shape of a stream: method names, `header` and `body`, with the channel.
fn shape(frames: &[Captured]) -> Vec<String> {
    frames
        .iter()
        .map(|c| match &c.frame {
            Frame::Method(ch, m) => format!("{ch}:{}", m.name()),
            Frame::Header(ch, _) => format!("{ch}:header"),
            Frame::Body(ch, _) => format!("{ch}:body"),
            Frame::Heartbeat(ch) => format!("{ch}:heartbeat"),
        })
        .collect()
}

fn reencode(frame: &Frame) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode_frame(frame, &mut out);
    out.to_vec()
}

/// Re-encodes every frame and expects the captured bytes, except for the frames `differs` accepts (it
/// gets the frame, the captured bytes and the re-encoded bytes, and asserts why they may differ).
/// Returns how many frames were allowed to differ.
fn assert_round_trip(frames: &[Captured], differs: impl Fn(&Frame, &[u8], &[u8]) -> bool) -> usize {
    let mut allowed = 0;
    for (i, c) in frames.iter().enumerate() {
        let out = reencode(&c.frame);
        if out != c.raw {
            assert!(
                differs(&c.frame, c.raw, &out),
                "frame {i} ({:?}) re-encodes differently:\n captured {:02x?}\n encoded  {:02x?}",
                c.frame,
                c.raw,
                out
            );
            allowed += 1;
        }
        // Whatever the bytes, the re-encoded frame must decode to the same value.
        let mut buf = BytesMut::from(&out[..]);
        assert_eq!(
            decode_frame(&mut buf, 0).unwrap().as_ref(),
            Some(&c.frame),
            "frame {i}"
        );
    }
    allowed
}

/// Feeding a stream one byte at a time yields the same frames as feeding it whole: the decoder never
/// consumes a partial frame.
fn assert_incremental(wire: &[u8], whole: &[Captured]) {
    let mut buf = BytesMut::new();
    let mut rest = wire;
    if wire.starts_with(b"AMQP") {
        buf.extend_from_slice(&wire[..8]);
        assert_eq!(decode_protocol_header(&mut buf), Some(ProtocolHeader::Ok));
        rest = &wire[8..];
    }
    let mut frames = Vec::new();
    for b in rest {
        buf.extend_from_slice(&[*b]);
        if let Some(frame) = decode_frame(&mut buf, 0).unwrap() {
            frames.push(frame);
        }
    }
    assert!(buf.is_empty());
    let whole: Vec<&Frame> = whole.iter().map(|c| &c.frame).collect();
    assert_eq!(frames.iter().collect::<Vec<_>>(), whole);
}

fn method(frames: &[Captured], i: usize) -> &Method {
    match &frames[i].frame {
        Frame::Method(_, m) => m,
        other => panic!("frame {i} is not a method: {other:?}"),
    }
}

fn header(frames: &[Captured], i: usize) -> &ContentHeader {
    match &frames[i].frame {
        Frame::Header(_, h) => h,
        other => panic!("frame {i} is not a content header: {other:?}"),
    }
}

fn body(frames: &[Captured], i: usize) -> &Bytes {
    match &frames[i].frame {
        Frame::Body(_, b) => b,
        other => panic!("frame {i} is not a body: {other:?}"),
    }
}

/// The property-flags word of a captured content header frame: after the 7-byte frame header, class id,
/// weight and body size (spec §4.2.6.1).
fn flags_word(raw: &[u8]) -> u16 {
    u16::from_be_bytes([raw[7 + 12], raw[7 + 13]])
}

fn s(v: &str) -> FieldValue {
    FieldValue::from(v)
}

fn table(entries: Vec<(&str, FieldValue)>) -> FieldTable {
    entries.into_iter().collect()
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

fn guest_start_ok(m: &Method) -> &FieldTable {
    let Method::ConnectionStartOk(ok) = m else {
        panic!("expected connection.start-ok, got {m:?}")
    };
    assert_eq!(ok.mechanism, "PLAIN");
    assert_eq!(ok.response, Bytes::from_static(b"\0guest\0guest"));
    assert_eq!(ok.locale, "en_US");
    &ok.client_properties
}

fn keys(t: &FieldTable) -> Vec<&str> {
    t.iter().map(|(k, _)| k).collect()
}

// ---------------------------------------------------------------------------------------------------
// pika

/// The headers table pika published, in the dict's insertion order (pika encodes dicts in iteration
/// order): Python str -> `S`, int -> `I` (or `l` beyond 32 bits), bool -> `t`, Decimal -> `D`,
/// datetime -> `T`, bytes -> `x`, None -> `V`, dict -> `F`, list -> `A`.
fn pika_headers() -> FieldTable {
    table(vec![
        ("zeta", s("last-letter")),
        ("alpha", FieldValue::I32(1)),
        ("flag", FieldValue::Bool(true)),
        (
            "nested",
            FieldValue::Table(table(vec![
                ("inner", s("yes")),
                ("n", FieldValue::I32(7)),
                ("off", FieldValue::Bool(false)),
            ])),
        ),
        (
            "list",
            FieldValue::Array(vec![
                FieldValue::I32(1),
                s("two"),
                FieldValue::Bool(true),
                FieldValue::Table(table(vec![("k", s("v"))])),
                FieldValue::Array(vec![FieldValue::I32(3)]),
            ]),
        ),
        ("big", FieldValue::I64(1 << 40)),
        ("neg", FieldValue::I32(-5)),
        (
            "price",
            FieldValue::Decimal {
                scale: 2,
                value: 314,
            },
        ),
        ("when", FieldValue::Timestamp(1_700_000_000)),
        (
            "raw",
            FieldValue::Bytes(Bytes::from_static(b"\x00\x01\xff")),
        ),
        ("nothing", FieldValue::Void),
    ])
}

fn pika_properties() -> BasicProperties {
    BasicProperties {
        content_type: Some("application/json".into()),
        content_encoding: Some("utf-8".into()),
        headers: Some(pika_headers()),
        delivery_mode: Some(2),
        priority: Some(5),
        correlation_id: Some("corr-1".into()),
        reply_to: Some("reply-q".into()),
        expiration: Some("60000".into()),
        message_id: Some("msg-1".into()),
        timestamp: Some(1_700_000_000),
        kind: Some("golden.type".into()),
        user_id: Some("guest".into()),
        app_id: Some("golden-app".into()),
        cluster_id: None,
    }
}

#[test]
fn pika_client_stream_decodes_to_the_session_pika_ran() {
    let f = decode_stream(PIKA_CLIENT);
    assert_eq!(
        shape(&f),
        strs(&[
            "0:connection.start-ok",
            "0:connection.tune-ok",
            "0:connection.open",
            "1:channel.open",
            "1:queue.declare",
            "1:basic.publish",
            "1:header",
            "1:body",
            "1:confirm.select",
            "1:basic.publish",
            "1:header",
            "1:body",
            "1:basic.get",
            "1:basic.ack",
            "1:basic.consume",
            "1:basic.ack",
            "1:basic.cancel",
            "1:channel.close",
            "0:connection.close",
        ])
    );

    let props = guest_start_ok(method(&f, 0));
    assert_eq!(
        keys(props),
        [
            "product",
            "platform",
            "capabilities",
            "information",
            "version"
        ]
    );
    assert_eq!(
        props.get("product").and_then(FieldValue::as_str),
        Some("Pika Python Client Library")
    );
    assert_eq!(
        props.get("version").and_then(FieldValue::as_str),
        Some("1.4.4")
    );
    let caps = props.get("capabilities").and_then(FieldValue::as_table);
    assert_eq!(
        caps.map(keys).unwrap(),
        [
            "authentication_failure_close",
            "basic.nack",
            "connection.blocked",
            "consumer_cancel_notify",
            "exchange_exchange_bindings",
            "publisher_confirms",
        ]
    );
    assert!(caps.unwrap().iter().all(|(_, v)| v.as_bool() == Some(true)));

    assert_eq!(
        method(&f, 1),
        &Method::ConnectionTuneOk(ConnectionTuneOk {
            channel_max: 2047,
            frame_max: 131_072,
            heartbeat: 60,
        })
    );
    assert_eq!(
        method(&f, 2),
        &Method::ConnectionOpen(ConnectionOpen {
            virtual_host: "/".into()
        })
    );
    assert_eq!(
        method(&f, 4),
        &Method::QueueDeclare(QueueDeclare {
            queue: "golden-pika".into(),
            durable: true,
            arguments: table(vec![
                ("x-message-ttl", FieldValue::I32(60_000)),
                ("x-dead-letter-exchange", s("dlx")),
            ]),
            ..Default::default()
        })
    );
    let publish = Method::BasicPublish(BasicPublish {
        exchange: String::new(),
        routing_key: "golden-pika".into(),
        mandatory: false,
        immediate: false,
    });
    assert_eq!(method(&f, 5), &publish);
    let rich = header(&f, 6);
    assert_eq!(rich.class_id, 60);
    assert_eq!(rich.body_size, 10);
    assert_eq!(rich.properties, pika_properties());
    // Table equality is order-sensitive (a Vec of entries), but say it outright: the client's order.
    assert_eq!(
        keys(rich.properties.headers.as_ref().unwrap()),
        [
            "zeta", "alpha", "flag", "nested", "list", "big", "neg", "price", "when", "raw",
            "nothing"
        ]
    );
    // Every property but cluster-id: flag bits 15..3.
    assert_eq!(flags_word(f[6].raw), 0xfff8);
    assert_eq!(body(&f, 7), &Bytes::from_static(b"{\"rich\":1}"));

    assert_eq!(
        method(&f, 8),
        &Method::ConfirmSelect(ConfirmSelect { no_wait: false })
    );
    assert_eq!(method(&f, 9), &publish);
    assert_eq!(header(&f, 10).properties, BasicProperties::default());
    assert_eq!(flags_word(f[10].raw), 0);
    assert_eq!(body(&f, 11), &Bytes::from_static(b"confirmed"));
    assert_eq!(
        method(&f, 12),
        &Method::BasicGet(BasicGet {
            queue: "golden-pika".into(),
            no_ack: false
        })
    );
    assert_eq!(
        method(&f, 13),
        &Method::BasicAck(BasicAck {
            delivery_tag: 1,
            multiple: false
        })
    );
    let Method::BasicConsume(consume) = method(&f, 14) else {
        unreachable!()
    };
    // pika generates "ctag<channel>.<uuid4 hex>".
    assert!(consume.consumer_tag.starts_with("ctag1."), "{consume:?}");
    assert_eq!(consume.consumer_tag.len(), "ctag1.".len() + 32);
    assert_eq!(
        *consume,
        BasicConsume {
            queue: "golden-pika".into(),
            consumer_tag: consume.consumer_tag.clone(),
            ..Default::default()
        }
    );
    assert_eq!(
        method(&f, 15),
        &Method::BasicAck(BasicAck {
            delivery_tag: 2,
            multiple: false
        })
    );
    assert_eq!(
        method(&f, 16),
        &Method::BasicCancel(BasicCancel {
            consumer_tag: consume.consumer_tag.clone(),
            no_wait: false
        })
    );
    // pika closes its channel with reply code 0.
    assert_eq!(
        method(&f, 17),
        &Method::ChannelClose(ChannelClose {
            reply_code: 0,
            reply_text: "Normal shutdown".into(),
            class_id: 0,
            method_id: 0,
        })
    );
    assert_eq!(
        method(&f, 18),
        &Method::ConnectionClose(ConnectionClose {
            reply_code: 200,
            reply_text: "Normal shutdown".into(),
            class_id: 0,
            method_id: 0,
        })
    );
}

#[test]
fn pika_client_frames_reencode_byte_for_byte() {
    let f = decode_stream(PIKA_CLIENT);
    let differing = assert_round_trip(&f, |frame, raw, out| {
        // pika sends connection.open with its reserved `insist` bit set (pika's connection.py builds
        // `Connection.Open(virtual_host, insist=True)`). The codec drops both reserved fields of
        // connection.open (spec: reserved-1 shortstr, reserved-2 bit; "insist" in 0-8) and writes them as
        // empty/0, so the re-encoded frame differs in exactly that octet. Semantically the same frame: the
        // decoded value was compared above, and a server must ignore the reserved bit.
        let Frame::Method(0, Method::ConnectionOpen(_)) = frame else {
            return false;
        };
        let bit = raw.len() - 2;
        raw.len() == out.len()
            && raw[bit] == 0x01
            && out[bit] == 0x00
            && raw[..bit] == out[..bit]
            && raw[bit + 1..] == out[bit + 1..]
    });
    assert_eq!(
        differing, 1,
        "only pika's connection.open (insist bit) may differ"
    );
}

/// The server frames of a captured session every client sees: the handshake, a confirmed publish, a get, one
/// delivery; `cancel` whether the client cancelled its consumer before closing (pika does, lapin does not).
fn server_shape(cancel: bool) -> Vec<String> {
    let mut v = strs(&[
        "0:connection.start",
        "0:connection.tune",
        "0:connection.open-ok",
        "1:channel.open-ok",
        "1:queue.declare-ok",
        "1:confirm.select-ok",
        "1:basic.ack",
        "1:basic.get-ok",
        "1:header",
        "1:body",
        "1:basic.consume-ok",
        "1:basic.deliver",
        "1:header",
        "1:body",
    ]);
    if cancel {
        v.push("1:basic.cancel-ok".into());
    }
    v.extend(strs(&["1:channel.close-ok", "0:connection.close-ok"]));
    v
}

/// Decodes a captured server stream and checks it against the client stream of the same session.
fn check_server_stream(
    server: &'static [u8],
    client: &'static [u8],
    cancel: bool,
    queue: &str,
    rich: BasicProperties,
) {
    let f = decode_stream(server);
    assert_eq!(shape(&f), server_shape(cancel));
    let client = decode_stream(client);
    assert_server_session(&f, &client, queue, rich);
    assert_eq!(assert_round_trip(&f, |_, _, _| false), 0);
    assert_incremental(server, &f);
}

#[test]
fn pika_server_stream_decodes() {
    check_server_stream(
        PIKA_SERVER,
        PIKA_CLIENT,
        true,
        "golden-pika",
        pika_properties(),
    );
}

// ---------------------------------------------------------------------------------------------------
// lapin

/// The headers table lapin published. lapin's `FieldTable` is a `BTreeMap`, so it puts keys on the wire
/// in sorted order whatever order the program inserted them in ("s", "i", "b", "nested", "arr", "types");
/// the codec must keep that wire order. "types" holds one of each other scalar lapin can send, with
/// amq-protocol's (RabbitMQ's) tags: `ShortShortInt` `b`, `ShortShortUInt` `B`, `ShortInt` `s`,
/// `ShortUInt` `u`, `LongUInt` `i`, `LongLongInt` `l`, `Float` `f`, `Double` `d`, `DecimalValue` `D`,
/// `Timestamp` `T`, `ByteArray` `x`, `Void` `V` (plus `LongInt` `I`, `LongString` `S`, `Boolean` `t`,
/// `FieldTable` `F`, `FieldArray` `A` above). Not sent: `AMQPValue::ShortString`, which amq-protocol
/// tags `_` (its own "internal only" marker, unknown to RabbitMQ and to this codec), and
/// `LongLongUInt`, which it writes as `l` (signed) like RabbitMQ.
fn lapin_headers() -> FieldTable {
    table(vec![
        (
            "arr",
            FieldValue::Array(vec![FieldValue::I32(1), s("two"), FieldValue::Bool(true)]),
        ),
        ("b", FieldValue::Bool(true)),
        ("i", FieldValue::I32(42)),
        (
            "nested",
            FieldValue::Table(table(vec![("inner", s("yes")), ("n", FieldValue::I32(7))])),
        ),
        ("s", s("hello")),
        (
            "types",
            FieldValue::Table(table(vec![
                (
                    "bytes",
                    FieldValue::Bytes(Bytes::from_static(b"\x00\x01\xff")),
                ),
                (
                    "dec",
                    FieldValue::Decimal {
                        scale: 2,
                        value: 314,
                    },
                ),
                ("f32", FieldValue::F32(1.5)),
                ("f64", FieldValue::F64(-2.25)),
                ("i16", FieldValue::I16(-300)),
                ("i64", FieldValue::I64(-5_000_000_000)),
                ("i8", FieldValue::I8(-8)),
                ("ts", FieldValue::Timestamp(1_700_000_000)),
                ("u16", FieldValue::U16(60_000)),
                ("u32", FieldValue::U32(4_000_000_000)),
                ("u8", FieldValue::U8(200)),
                ("void", FieldValue::Void),
            ])),
        ),
    ])
}

fn lapin_properties() -> BasicProperties {
    BasicProperties {
        content_type: Some("application/json".into()),
        headers: Some(lapin_headers()),
        delivery_mode: Some(2),
        priority: Some(5),
        correlation_id: Some("corr-1".into()),
        reply_to: Some("reply-q".into()),
        expiration: Some("60000".into()),
        message_id: Some("msg-1".into()),
        timestamp: Some(1_700_000_000),
        kind: Some("golden.type".into()),
        app_id: Some("golden-app".into()),
        ..Default::default()
    }
}

#[test]
fn lapin_client_stream_decodes_to_the_session_lapin_ran() {
    let f = decode_stream(LAPIN_CLIENT);
    assert_eq!(
        shape(&f),
        strs(&[
            "0:connection.start-ok",
            "0:connection.tune-ok",
            "0:connection.open",
            "1:channel.open",
            "1:queue.declare",
            "1:basic.publish",
            "1:header",
            "1:body",
            "1:confirm.select",
            "1:basic.publish",
            "1:header",
            "1:body",
            "1:basic.get",
            "1:basic.ack",
            "1:basic.consume",
            "1:basic.ack",
            "1:channel.close",
            "0:connection.close",
        ])
    );

    let props = guest_start_ok(method(&f, 0));
    assert_eq!(
        keys(props),
        ["capabilities", "platform", "product", "version"]
    );
    assert_eq!(
        props.get("product").and_then(FieldValue::as_str),
        Some("lapin")
    );
    assert_eq!(
        props.get("version").and_then(FieldValue::as_str),
        Some("4.12.3")
    );
    let caps = props.get("capabilities").and_then(FieldValue::as_table);
    assert_eq!(
        caps.map(keys).unwrap(),
        [
            "authentication_failure_close",
            "basic.nack",
            "connection.blocked",
            "consumer_cancel_notify",
            "consumer_priorities",
            "direct_reply_to",
            "exchange_exchange_bindings",
            "per_consumer_qos",
            "publisher_confirms",
        ]
    );
    assert!(caps.unwrap().iter().all(|(_, v)| v.as_bool() == Some(true)));

    assert_eq!(
        method(&f, 1),
        &Method::ConnectionTuneOk(ConnectionTuneOk {
            channel_max: 2047,
            frame_max: 131_072,
            heartbeat: 60,
        })
    );
    assert_eq!(
        method(&f, 2),
        &Method::ConnectionOpen(ConnectionOpen {
            virtual_host: "/".into()
        })
    );
    assert_eq!(
        method(&f, 4),
        &Method::QueueDeclare(QueueDeclare {
            queue: "golden-lapin".into(),
            // Sorted by lapin's BTreeMap, not in the program's insertion order.
            arguments: table(vec![
                ("x-dead-letter-exchange", s("dlx")),
                ("x-message-ttl", FieldValue::I32(60_000)),
            ]),
            ..Default::default()
        })
    );
    let publish = Method::BasicPublish(BasicPublish {
        exchange: String::new(),
        routing_key: "golden-lapin".into(),
        mandatory: false,
        immediate: false,
    });
    assert_eq!(method(&f, 5), &publish);
    let rich = header(&f, 6);
    assert_eq!(rich.class_id, 60);
    assert_eq!(rich.body_size, 10);
    assert_eq!(rich.properties, lapin_properties());
    assert_eq!(
        keys(rich.properties.headers.as_ref().unwrap()),
        ["arr", "b", "i", "nested", "s", "types"]
    );
    // No content-encoding (bit 14), user-id (bit 4) or cluster-id (bit 2).
    assert_eq!(flags_word(f[6].raw), 0xbfe8);
    assert_eq!(body(&f, 7), &Bytes::from_static(b"{\"rich\":1}"));

    assert_eq!(
        method(&f, 8),
        &Method::ConfirmSelect(ConfirmSelect { no_wait: false })
    );
    assert_eq!(method(&f, 9), &publish);
    assert_eq!(header(&f, 10).properties, BasicProperties::default());
    assert_eq!(body(&f, 11), &Bytes::from_static(b"confirmed"));
    assert_eq!(
        method(&f, 12),
        &Method::BasicGet(BasicGet {
            queue: "golden-lapin".into(),
            no_ack: false
        })
    );
    assert_eq!(
        method(&f, 13),
        &Method::BasicAck(BasicAck {
            delivery_tag: 1,
            multiple: false
        })
    );
    assert_eq!(
        method(&f, 14),
        &Method::BasicConsume(BasicConsume {
            queue: "golden-lapin".into(),
            consumer_tag: "golden-consumer".into(),
            ..Default::default()
        })
    );
    assert_eq!(
        method(&f, 15),
        &Method::BasicAck(BasicAck {
            delivery_tag: 2,
            multiple: false
        })
    );
    assert_eq!(
        method(&f, 16),
        &Method::ChannelClose(ChannelClose {
            reply_code: 200,
            reply_text: "bye".into(),
            class_id: 0,
            method_id: 0,
        })
    );
    assert_eq!(
        method(&f, 17),
        &Method::ConnectionClose(ConnectionClose {
            reply_code: 200,
            reply_text: "bye".into(),
            class_id: 0,
            method_id: 0,
        })
    );
}

#[test]
fn lapin_client_frames_reencode_byte_for_byte() {
    let f = decode_stream(LAPIN_CLIENT);
    assert_eq!(assert_round_trip(&f, |_, _, _| false), 0);
    assert_incremental(LAPIN_CLIENT, &f);
}

#[test]
fn lapin_server_stream_decodes() {
    check_server_stream(
        LAPIN_SERVER,
        LAPIN_CLIENT,
        false,
        "golden-lapin",
        lapin_properties(),
    );
}

#[test]
fn pika_client_stream_decodes_fed_one_byte_at_a_time() {
    assert_incremental(PIKA_CLIENT, &decode_stream(PIKA_CLIENT));
}

// ---------------------------------------------------------------------------------------------------
// What FerryMQ sent, common to both sessions.

/// Checks the server stream of a session against its client stream: the same queue, the confirm for the
/// one confirmed publish, basic.get-ok carrying the rich message with the client's properties (the header
/// frame byte for byte as the client sent it), and the deliver of the confirmed message to the client's
/// consumer tag.
fn assert_server_session(f: &[Captured], client: &[Captured], queue: &str, rich: BasicProperties) {
    let Method::ConnectionStart(start) = method(f, 0) else {
        unreachable!()
    };
    assert_eq!((start.version_major, start.version_minor), (0, 9));
    assert_eq!(&start.mechanisms[..], b"PLAIN AMQPLAIN");
    assert_eq!(&start.locales[..], b"en_US");
    assert_eq!(
        start
            .server_properties
            .get("product")
            .and_then(FieldValue::as_str),
        Some("FerryMQ")
    );
    let caps = start
        .server_properties
        .get("capabilities")
        .and_then(FieldValue::as_table)
        .unwrap();
    assert_eq!(
        caps.get("publisher_confirms").and_then(FieldValue::as_bool),
        Some(true)
    );
    assert_eq!(
        method(f, 1),
        &Method::ConnectionTune(ConnectionTune {
            channel_max: 2047,
            frame_max: 131_072,
            heartbeat: 60,
        })
    );
    assert_eq!(
        method(f, 4),
        &Method::QueueDeclareOk(QueueDeclareOk {
            queue: queue.into(),
            message_count: 0,
            consumer_count: 0,
        })
    );
    // The second publish is the first (and only) one after confirm.select: sequence number 1.
    assert_eq!(
        method(f, 6),
        &Method::BasicAck(BasicAck {
            delivery_tag: 1,
            multiple: false
        })
    );
    assert_eq!(
        method(f, 7),
        &Method::BasicGetOk(BasicGetOk {
            delivery_tag: 1,
            redelivered: false,
            exchange: String::new(),
            routing_key: queue.into(),
            message_count: 1,
        })
    );
    assert_eq!(header(f, 8).properties, rich);
    assert_eq!(
        f[8].raw, client[6].raw,
        "get-ok's content header is the publisher's, byte for byte"
    );
    assert_eq!(body(f, 9), body(client, 7));

    let Method::BasicConsume(consume) = method(client, 14) else {
        unreachable!()
    };
    assert_eq!(
        method(f, 10),
        &Method::BasicConsumeOk(BasicConsumeOk {
            consumer_tag: consume.consumer_tag.clone()
        })
    );
    assert_eq!(
        method(f, 11),
        &Method::BasicDeliver(BasicDeliver {
            consumer_tag: consume.consumer_tag.clone(),
            delivery_tag: 2,
            redelivered: false,
            exchange: String::new(),
            routing_key: queue.into(),
        })
    );
    assert_eq!(header(f, 12).properties, BasicProperties::default());
    assert_eq!(f[12].raw, client[10].raw);
    assert_eq!(body(f, 13), &Bytes::from_static(b"confirmed"));
    assert_eq!(
        f.last().map(|c| &c.frame),
        Some(&Frame::Method(0, Method::ConnectionCloseOk))
    );
}
