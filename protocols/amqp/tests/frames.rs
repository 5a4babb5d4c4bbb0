//! Framing (spec §4.2.3, §4.2.6, §4.2.7): streaming decode split at every byte, frame-size and frame-end
//! checks, zero-copy bodies, content splitting under frame_max, and the protocol header (§4.2.2).
#![allow(clippy::unwrap_used)]

mod common;

use bytes::{BufMut, Bytes, BytesMut};
use common::{all_methods, hex};
use ferrymq_amqp_codec::*;

const FRAME_MAX: u32 = 4096;

fn body_of(len: usize) -> Bytes {
    (0..len)
        .map(|i| (i * 7 % 251) as u8)
        .collect::<Vec<u8>>()
        .into()
}

fn properties() -> BasicProperties {
    BasicProperties {
        content_type: Some("application/octet-stream".into()),
        headers: Some(common::table()),
        delivery_mode: Some(2),
        message_id: Some("m-1".into()),
        ..Default::default()
    }
}

/// A session's worth of traffic: handshake methods, a multi-frame publish, an empty-body publish,
/// heartbeats, acks; returned as the wire bytes and the frames they must decode to.
fn conversation() -> (Vec<u8>, Vec<Frame>) {
    let mut wire = BytesMut::new();
    let mut frames = Vec::new();
    let method = |wire: &mut BytesMut, frames: &mut Vec<Frame>, channel: u16, m: Method| {
        encode_method(channel, &m, wire);
        frames.push(Frame::Method(channel, m));
    };
    for m in all_methods().into_iter().take(8) {
        method(&mut wire, &mut frames, 0, m);
    }
    method(&mut wire, &mut frames, 1, Method::ChannelOpen);

    // 10_000-byte body under frame_max 4096: 4088 + 4088 + 1824.
    let publish = Method::BasicPublish(BasicPublish {
        exchange: "amq.direct".into(),
        routing_key: "rk".into(),
        mandatory: true,
        immediate: false,
    });
    let body = body_of(10_000);
    encode_content(1, &publish, 60, &properties(), &body, FRAME_MAX, &mut wire);
    frames.push(Frame::Method(1, publish.clone()));
    frames.push(Frame::Header(
        1,
        Box::new(ContentHeader {
            class_id: 60,
            body_size: 10_000,
            properties: properties(),
            ..Default::default()
        }),
    ));
    frames.push(Frame::Body(1, body.slice(..4088)));
    frames.push(Frame::Body(1, body.slice(4088..8176)));
    frames.push(Frame::Body(1, body.slice(8176..)));

    encode_heartbeat(&mut wire);
    frames.push(Frame::Heartbeat(0));

    // An empty body has a header and no body frames.
    encode_content(
        2,
        &publish,
        60,
        &BasicProperties::default(),
        &Bytes::new(),
        FRAME_MAX,
        &mut wire,
    );
    frames.push(Frame::Method(2, publish));
    frames.push(Frame::Header(
        2,
        Box::new(ContentHeader {
            class_id: 60,
            body_size: 0,
            ..Default::default()
        }),
    ));

    method(
        &mut wire,
        &mut frames,
        1,
        Method::BasicAck(BasicAck {
            delivery_tag: 1,
            multiple: true,
        }),
    );
    encode_frame(&Frame::Body(3, Bytes::from_static(b"tail")), &mut wire);
    frames.push(Frame::Body(3, Bytes::from_static(b"tail")));
    (wire.to_vec(), frames)
}

fn drain(buf: &mut BytesMut, into: &mut Vec<Frame>) {
    while let Some(frame) = decode_frame(buf, FRAME_MAX).unwrap() {
        into.push(frame);
    }
}

#[test]
fn whole_buffer_decodes_to_the_frames_that_were_encoded() {
    let (wire, expected) = conversation();
    let mut buf = BytesMut::from(&wire[..]);
    let mut got = Vec::new();
    drain(&mut buf, &mut got);
    assert_eq!(got, expected);
    assert!(buf.is_empty());
}

#[test]
fn feeding_one_byte_at_a_time_yields_the_same_frames() {
    let (wire, expected) = conversation();
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    for &b in &wire {
        buf.put_u8(b);
        drain(&mut buf, &mut got);
    }
    assert_eq!(got, expected);
    assert!(buf.is_empty());
}

#[test]
fn splitting_the_stream_at_every_offset_yields_the_same_frames() {
    let (wire, expected) = conversation();
    for split in 0..=wire.len() {
        let mut buf = BytesMut::from(&wire[..split]);
        let mut got = Vec::new();
        drain(&mut buf, &mut got);
        buf.extend_from_slice(&wire[split..]);
        drain(&mut buf, &mut got);
        assert_eq!(got, expected, "split at {split}");
        assert!(buf.is_empty(), "split at {split}");
    }
}

#[test]
fn an_incomplete_frame_is_none_and_consumes_nothing() {
    let mut full = BytesMut::new();
    encode_method(1, &all_methods()[1], &mut full);
    for len in 0..full.len() {
        let mut buf = BytesMut::from(&full[..len]);
        assert_eq!(
            decode_frame(&mut buf, FRAME_MAX).unwrap(),
            None,
            "prefix of {len}"
        );
        assert_eq!(&buf[..], &full[..len], "prefix of {len} was modified");
    }
}

#[test]
fn oversize_frame_is_rejected_from_the_7_byte_header_alone() {
    // A body frame announcing 4089 payload bytes: 4097 in all, one over frame_max.
    let mut buf = BytesMut::from(&hex("03 0001 00000ff9")[..]);
    let err = decode_frame(&mut buf, FRAME_MAX).unwrap_err();
    assert!(
        matches!(
            err,
            CodecError::FrameTooLarge {
                size: 4097,
                max: 4096
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.reply_code(), 501);

    // A hostile 4 GiB announcement is refused just the same, before anything is buffered or reserved.
    let mut buf = BytesMut::from(&hex("01 0000 ffffffff")[..]);
    let err = decode_frame(&mut buf, 131_072).unwrap_err();
    assert!(matches!(
        err,
        CodecError::FrameTooLarge {
            size: 0x1_0000_0007,
            max: 131_072
        }
    ));
}

#[test]
fn a_frame_of_exactly_frame_max_is_accepted() {
    let body = body_of(FRAME_MAX as usize - FRAME_OVERHEAD);
    let mut buf = BytesMut::new();
    encode_frame(&Frame::Body(5, body.clone()), &mut buf);
    assert_eq!(buf.len(), FRAME_MAX as usize);
    assert_eq!(
        decode_frame(&mut buf, FRAME_MAX).unwrap(),
        Some(Frame::Body(5, body))
    );
}

#[test]
fn frame_max_zero_means_no_limit() {
    let body = body_of(100_000);
    let mut buf = BytesMut::new();
    encode_frame(&Frame::Body(1, body.clone()), &mut buf);
    assert_eq!(
        decode_frame(&mut buf, 0).unwrap(),
        Some(Frame::Body(1, body))
    );
}

#[test]
fn bad_frame_end_is_a_frame_error() {
    let mut buf = BytesMut::from(&hex("08 0000 00000000 00")[..]);
    let err = decode_frame(&mut buf, FRAME_MAX).unwrap_err();
    assert!(matches!(err, CodecError::BadFrameEnd(0)), "{err:?}");
    assert_eq!(err.reply_code(), 501);

    let mut wire = BytesMut::new();
    encode_method(1, &all_methods()[0], &mut wire);
    let last = wire.len() - 1;
    wire[last] = 0xcd;
    assert!(matches!(
        decode_frame(&mut wire, FRAME_MAX),
        Err(CodecError::BadFrameEnd(0xcd))
    ));
}

#[test]
fn unknown_frame_type_is_rejected_from_the_header_alone() {
    for kind in [0u8, 4, 7, 9, b'A', 0xff] {
        let mut buf = BytesMut::from(&[kind, 0, 0, 0, 0, 0, 4][..]);
        let err = decode_frame(&mut buf, FRAME_MAX).unwrap_err();
        assert!(
            matches!(err, CodecError::UnknownFrameType(k) if k == kind),
            "{err:?}"
        );
        assert_eq!(err.reply_code(), 501);
    }
}

#[test]
fn heartbeat_with_a_payload_is_malformed() {
    let mut buf = BytesMut::from(&hex("08 0000 00000001 00 ce")[..]);
    assert!(matches!(
        decode_frame(&mut buf, FRAME_MAX),
        Err(CodecError::Malformed(_))
    ));
}

#[test]
fn content_header_with_trailing_bytes_is_malformed() {
    let mut buf =
        BytesMut::from(&hex("02 0001 0000000f 003c 0000 0000000000000000 0000 ff ce")[..]);
    assert!(matches!(
        decode_frame(&mut buf, FRAME_MAX),
        Err(CodecError::Malformed(_))
    ));
}

#[test]
fn body_frames_are_split_off_the_read_buffer_without_copying() {
    let body = body_of(3000);
    let mut buf = BytesMut::new();
    encode_frame(&Frame::Body(1, body.clone()), &mut buf);
    encode_heartbeat(&mut buf);
    let region = buf.as_ptr() as usize..buf.as_ptr() as usize + buf.len();
    let Some(Frame::Body(1, got)) = decode_frame(&mut buf, FRAME_MAX).unwrap() else {
        panic!("expected a body frame");
    };
    assert_eq!(got, body);
    assert!(
        region.contains(&(got.as_ptr() as usize)),
        "body was copied out of the read buffer"
    );
    assert_eq!(
        decode_frame(&mut buf, FRAME_MAX).unwrap(),
        Some(Frame::Heartbeat(0))
    );
}

/// Splits encoded content back into frames and checks each against frame_max.
fn content_frames(body_len: usize, frame_max: u32) -> Vec<Frame> {
    let deliver = Method::BasicDeliver(BasicDeliver {
        consumer_tag: "c".into(),
        delivery_tag: 9,
        ..Default::default()
    });
    let body = body_of(body_len);
    let mut out = BytesMut::new();
    encode_content(7, &deliver, 60, &properties(), &body, frame_max, &mut out);
    let mut frames = Vec::new();
    while !out.is_empty() {
        let size = u32::from_be_bytes([out[3], out[4], out[5], out[6]]) as usize + FRAME_OVERHEAD;
        if frame_max != 0 {
            assert!(
                size <= frame_max.max(FRAME_MIN_SIZE) as usize,
                "frame of {size} bytes"
            );
        }
        frames.push(decode_frame(&mut out, 0).unwrap().unwrap());
    }
    assert_eq!(frames[0], Frame::Method(7, deliver));
    assert_eq!(
        frames[1],
        Frame::Header(
            7,
            Box::new(ContentHeader {
                class_id: 60,
                body_size: body_len as u64,
                properties: properties(),
                ..Default::default()
            })
        )
    );
    let reassembled: Vec<u8> = frames[2..]
        .iter()
        .flat_map(|f| match f {
            Frame::Body(7, b) => b.to_vec(),
            other => panic!("expected a body frame, got {other:?}"),
        })
        .collect();
    assert_eq!(reassembled, body);
    frames
}

#[test]
fn content_body_is_split_so_no_frame_exceeds_frame_max() {
    let chunk = FRAME_MAX as usize - FRAME_OVERHEAD;
    for (len, body_frames) in [
        (0, 0),
        (1, 1),
        (chunk - 1, 1),
        (chunk, 1),
        (chunk + 1, 2),
        (3 * chunk, 3),
        (3 * chunk + 5, 4),
    ] {
        assert_eq!(
            content_frames(len, FRAME_MAX).len(),
            2 + body_frames,
            "body of {len}"
        );
    }
}

#[test]
fn content_frame_max_zero_sends_the_body_in_one_frame() {
    assert_eq!(content_frames(1_000_000, 0).len(), 3);
}

#[test]
fn content_frame_max_below_the_minimum_is_treated_as_the_minimum() {
    let frames = content_frames(10_000, 100);
    assert_eq!(frames.len(), 2 + 3);
}

#[test]
fn protocol_header_match_is_ok_and_consumes_exactly_8_bytes() {
    let mut buf = BytesMut::from(&b"AMQP\x00\x00\x09\x01\x01\x00"[..]);
    assert_eq!(decode_protocol_header(&mut buf), Some(ProtocolHeader::Ok));
    assert_eq!(&buf[..], b"\x01\x00");
}

#[test]
fn protocol_header_waits_for_8_bytes_while_the_prefix_matches() {
    for len in 0..8 {
        let mut buf = BytesMut::from(&PROTOCOL_HEADER[..len]);
        assert_eq!(decode_protocol_header(&mut buf), None, "prefix of {len}");
        assert_eq!(buf.len(), len);
    }
}

#[test]
fn other_protocol_versions_are_a_mismatch() {
    for other in [
        &b"AMQP\x01\x01\x00\x09"[..],
        b"AMQP\x00\x00\x09\x00",
        b"AMQP\x00\x01\x00\x00",
    ] {
        let mut buf = BytesMut::from(other);
        assert_eq!(
            decode_protocol_header(&mut buf),
            Some(ProtocolHeader::Mismatch)
        );
    }
}

#[test]
fn a_non_amqp_client_is_a_mismatch_before_8_bytes_arrive() {
    let mut buf = BytesMut::from(&b"GET"[..]);
    assert_eq!(
        decode_protocol_header(&mut buf),
        Some(ProtocolHeader::Mismatch)
    );
}

#[test]
fn a_copied_body_has_an_allocation_of_its_own_and_a_split_one_shares_the_buffer() {
    let mut wire = BytesMut::new();
    encode_frame(&Frame::Body(3, Bytes::from_static(b"body")), &mut wire);
    encode_frame(&Frame::Body(3, Bytes::from_static(b"next")), &mut wire);
    let copied = decode_frame_with(&mut wire, FRAME_MIN_SIZE, BodyPayload::Copied);
    let Ok(Some(Frame::Body(3, copied))) = copied else {
        panic!("a body frame: {copied:?}");
    };
    assert_eq!(&copied[..], b"body");
    assert!(copied.is_unique(), "not a slice of the read buffer");
    let split = decode_frame_with(&mut wire, FRAME_MIN_SIZE, BodyPayload::Split);
    let Ok(Some(Frame::Body(3, split))) = split else {
        panic!("a body frame: {split:?}");
    };
    assert_eq!(&split[..], b"next");
    assert!(!split.is_unique(), "a slice of the read buffer");
    assert!(wire.is_empty());
}
