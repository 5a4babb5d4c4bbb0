//! Golden frames: byte-exact frames as real clients and RabbitMQ put them on the wire, built by hand from
//! the spec (§4.2.3 frame layout, §4.2.5 field encodings). Each must decode to the expected frame and
//! encode back to the same bytes.
#![allow(clippy::unwrap_used)]

mod common;

use bytes::{Bytes, BytesMut};
use common::hex;
use ferrymq_amqp_codec::*;

/// Decodes `wire` as exactly one frame and re-encodes it, expecting the same bytes.
fn assert_golden(wire: &[u8], expected: Frame) {
    let mut buf = BytesMut::from(wire);
    let frame = decode_frame(&mut buf, FRAME_MIN_SIZE).unwrap().unwrap();
    assert!(buf.is_empty(), "frame did not consume all of its bytes");
    assert_eq!(frame, expected);
    let mut out = BytesMut::new();
    encode_frame(&expected, &mut out);
    assert_eq!(out.to_vec(), wire, "re-encoding differs");
}

#[test]
fn basic_publish_to_default_exchange() {
    // The brief's example says size 0000000f, but the payload below is 14 bytes: 2+2+2+1+(1+5)+1.
    let wire = hex("01 0001 0000000e
         003c 0028          -- basic.publish
         0000               -- reserved-1 (ticket)
         00                 -- exchange ''
         05 68656c6c6f      -- routing-key 'hello'
         00                 -- mandatory=0 immediate=0
         ce");
    let m = BasicPublish {
        exchange: "".into(),
        routing_key: "hello".into(),
        ..Default::default()
    };
    assert_golden(&wire, Frame::Method(1, Method::BasicPublish(m)));
}

#[test]
fn connection_start_ok_as_pika_sends_it() {
    // pika 1.3.2: strings as 'S' longstr, booleans as 't'; PLAIN guest/guest; locale en_US.
    let wire = hex("01 0000 00000122
         000a 000b                                         -- connection.start-ok
         000000fe                                          -- client-properties: 254 bytes
           07 70726f64756374 53 0000001a                   -- 'product' S
              50696b6120507974686f6e20436c69656e74204c696272617279   -- 'Pika Python Client Library'
           08 706c6174666f726d 53 0000000d                 -- 'platform' S
              507974686f6e20332e31312e37                   -- 'Python 3.11.7'
           0c 6361706162696c6974696573 46 0000006f         -- 'capabilities' F (111 bytes)
              1c 61757468656e7469636174696f6e5f6661696c7572655f636c6f7365 74 01
              0a 62617369632e6e61636b 74 01
              12 636f6e6e656374696f6e2e626c6f636b6564 74 01
              16 636f6e73756d65725f63616e63656c5f6e6f74696679 74 01
              12 7075626c69736865725f636f6e6669726d73 74 01
           0b 696e666f726d6174696f6e 53 00000018           -- 'information' S
              53656520687474703a2f2f70696b612e727466642e6f7267       -- 'See http://pika.rtfd.org'
           07 76657273696f6e 53 00000005 312e332e32         -- 'version' S '1.3.2'
         05 504c41494e                                     -- mechanism 'PLAIN'
         0000000c 006775657374006775657374                 -- response '\\0guest\\0guest'
         05 656e5f5553                                     -- locale 'en_US'
         ce");
    let caps: FieldTable = [
        "authentication_failure_close",
        "basic.nack",
        "connection.blocked",
        "consumer_cancel_notify",
        "publisher_confirms",
    ]
    .into_iter()
    .map(|k| (k, FieldValue::Bool(true)))
    .collect();
    let props = FieldTable(vec![
        (
            "product".into(),
            FieldValue::from("Pika Python Client Library"),
        ),
        ("platform".into(), FieldValue::from("Python 3.11.7")),
        ("capabilities".into(), FieldValue::Table(caps)),
        (
            "information".into(),
            FieldValue::from("See http://pika.rtfd.org"),
        ),
        ("version".into(), FieldValue::from("1.3.2")),
    ]);
    let m = ConnectionStartOk {
        client_properties: props,
        mechanism: "PLAIN".into(),
        response: Bytes::from_static(b"\0guest\0guest"),
        locale: "en_US".into(),
    };
    assert_golden(
        &wire,
        Frame::Method(0, Method::ConnectionStartOk(m.clone())),
    );
    let capabilities = m
        .client_properties
        .get("capabilities")
        .and_then(FieldValue::as_table);
    assert_eq!(
        capabilities
            .and_then(|c| c.get("basic.nack"))
            .and_then(FieldValue::as_bool),
        Some(true)
    );
}

#[test]
fn connection_tune_and_tune_ok() {
    // RabbitMQ's defaults: channel-max 2047, frame-max 131072, heartbeat 60.
    let tune = hex("01 0000 0000000c 000a 001e 07ff 00020000 003c ce");
    assert_golden(
        &tune,
        Frame::Method(
            0,
            Method::ConnectionTune(ConnectionTune {
                channel_max: 2047,
                frame_max: 131_072,
                heartbeat: 60,
            }),
        ),
    );
    let tune_ok = hex("01 0000 0000000c 000a 001f 07ff 00020000 003c ce");
    assert_golden(
        &tune_ok,
        Frame::Method(
            0,
            Method::ConnectionTuneOk(ConnectionTuneOk {
                channel_max: 2047,
                frame_max: 131_072,
                heartbeat: 60,
            }),
        ),
    );
}

#[test]
fn connection_open_and_channel_open_with_reserved_fields() {
    let open = hex("01 0000 00000008 000a 0028 01 2f 00 00 ce");
    assert_golden(
        &open,
        Frame::Method(
            0,
            Method::ConnectionOpen(ConnectionOpen {
                virtual_host: "/".into(),
            }),
        ),
    );
    assert_golden(
        &hex("01 0000 00000005 000a 0029 00 ce"),
        Frame::Method(0, Method::ConnectionOpenOk),
    );
    assert_golden(
        &hex("01 0001 00000005 0014 000a 00 ce"),
        Frame::Method(1, Method::ChannelOpen),
    );
    assert_golden(
        &hex("01 0001 00000008 0014 000b 00000000 ce"),
        Frame::Method(1, Method::ChannelOpenOk),
    );
}

#[test]
fn queue_declare_durable_as_pika_sends_it() {
    let wire = hex("01 0001 00000011
         0032 000a          -- queue.declare
         0000               -- ticket
         05 68656c6c6f      -- queue 'hello'
         02                 -- passive=0 durable=1 exclusive=0 auto-delete=0 nowait=0
         00000000           -- arguments {}
         ce");
    let m = QueueDeclare {
        queue: "hello".into(),
        durable: true,
        ..Default::default()
    };
    assert_golden(&wire, Frame::Method(1, Method::QueueDeclare(m)));
}

#[test]
fn connection_close_with_a_reason() {
    let wire = hex("01 0000 00000023
         000a 0032
         0194                                               -- 404
         18 4e4f545f464f554e44202d206e6f20717565756520277127     -- 'NOT_FOUND - no queue 'q''
         0032 000a                                          -- caused by queue.declare
         ce");
    let m = ConnectionClose {
        reply_code: 404,
        reply_text: "NOT_FOUND - no queue 'q'".into(),
        class_id: 50,
        method_id: 10,
    };
    assert_golden(&wire, Frame::Method(0, Method::ConnectionClose(m)));
}

#[test]
fn basic_ack_and_heartbeat() {
    let ack = hex("01 0001 0000000d 003c 0050 0000000000000001 00 ce");
    assert_golden(
        &ack,
        Frame::Method(
            1,
            Method::BasicAck(BasicAck {
                delivery_tag: 1,
                multiple: false,
            }),
        ),
    );
    let heartbeat = hex("08 0000 00000000 ce");
    assert_golden(&heartbeat, Frame::Heartbeat(0));
    let mut out = BytesMut::new();
    encode_heartbeat(&mut out);
    assert_eq!(out.to_vec(), heartbeat);
}

#[test]
fn basic_deliver_with_content_as_rabbitmq_sends_it() {
    let deliver = hex("01 0001 0000001b
         003c 003c              -- basic.deliver
         06 637461672d31        -- consumer-tag 'ctag-1'
         0000000000000001       -- delivery-tag 1
         00                     -- redelivered=0
         00                     -- exchange ''
         05 68656c6c6f          -- routing-key 'hello'
         ce");
    let header = hex("02 0001 0000001a
         003c 0000              -- class basic, weight 0
         000000000000000b       -- body-size 11
         9000                   -- flags: content-type, delivery-mode
         0a 746578742f706c61696e  -- 'text/plain'
         02                     -- delivery-mode 2 (persistent)
         ce");
    let body = hex("03 0001 0000000b 68656c6c6f20776f726c64 ce");

    let method = Method::BasicDeliver(BasicDeliver {
        consumer_tag: "ctag-1".into(),
        delivery_tag: 1,
        redelivered: false,
        exchange: "".into(),
        routing_key: "hello".into(),
    });
    let properties = BasicProperties {
        content_type: Some("text/plain".into()),
        delivery_mode: Some(2),
        ..Default::default()
    };
    assert_golden(&deliver, Frame::Method(1, method.clone()));
    assert_golden(
        &header,
        Frame::Header(
            1,
            Box::new(ContentHeader {
                class_id: 60,
                body_size: 11,
                properties: properties.clone(),
                ..Default::default()
            }),
        ),
    );
    assert_golden(&body, Frame::Body(1, Bytes::from_static(b"hello world")));

    let mut out = BytesMut::new();
    encode_content(
        1,
        &method,
        60,
        &properties,
        &Bytes::from_static(b"hello world"),
        131_072,
        &mut out,
    );
    assert_eq!(out.to_vec(), [deliver, header, body].concat());
}

#[test]
fn encode_deliver_matches_encode_content_byte_for_byte() {
    use bytes::{Bytes, BytesMut};
    use ferrymq_amqp_codec::{
        BasicDeliver, BasicProperties, Method, encode_content, encode_deliver,
    };
    let props = BasicProperties {
        content_type: Some("text/plain".into()),
        delivery_mode: Some(2),
        ..Default::default()
    };
    let body = Bytes::from(vec![7u8; 10_000]);
    let method = Method::BasicDeliver(BasicDeliver {
        consumer_tag: "ctag".into(),
        delivery_tag: 42,
        redelivered: true,
        exchange: "amq.topic".into(),
        routing_key: "a.b".into(),
    });
    let (mut a, mut b) = (BytesMut::new(), BytesMut::new());
    encode_content(3, &method, 60, &props, &body, 4096, &mut a);
    encode_deliver(
        3,
        "ctag",
        42,
        true,
        "amq.topic",
        "a.b",
        &props,
        &body,
        4096,
        &mut b,
    );
    assert_eq!(a, b);
}
