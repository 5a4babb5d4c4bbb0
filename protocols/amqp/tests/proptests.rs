//! Property tests: arbitrary field tables, basic properties and frame streams round-trip, and arbitrary
//! input never panics the decoder.
#![allow(clippy::unwrap_used)]

use bytes::{Bytes, BytesMut};
use ferrymq_amqp_codec::*;
use proptest::collection::vec;
use proptest::prelude::*;

fn shortstr() -> impl Strategy<Value = String> {
    // Up to 60 chars of any Unicode: at most 240 bytes, within a shortstr's 255.
    proptest::string::string_regex("(?s).{0,60}").unwrap()
}

fn bytes() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..64).prop_map(Bytes::from)
}

fn field_value() -> impl Strategy<Value = FieldValue> {
    let leaf = prop_oneof![
        any::<bool>().prop_map(FieldValue::Bool),
        any::<i8>().prop_map(FieldValue::I8),
        any::<u8>().prop_map(FieldValue::U8),
        any::<i16>().prop_map(FieldValue::I16),
        any::<u16>().prop_map(FieldValue::U16),
        any::<i32>().prop_map(FieldValue::I32),
        any::<u32>().prop_map(FieldValue::U32),
        any::<i64>().prop_map(FieldValue::I64),
        // NaN != NaN would fail equality without being a codec bug; every other float must survive.
        any::<f32>()
            .prop_filter("not NaN", |f| !f.is_nan())
            .prop_map(FieldValue::F32),
        any::<f64>()
            .prop_filter("not NaN", |f| !f.is_nan())
            .prop_map(FieldValue::F64),
        (any::<u8>(), any::<u32>()).prop_map(|(scale, value)| FieldValue::Decimal { scale, value }),
        bytes().prop_map(FieldValue::LongStr),
        any::<u64>().prop_map(FieldValue::Timestamp),
        Just(FieldValue::Void),
        bytes().prop_map(FieldValue::Bytes),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..8).prop_map(FieldValue::Array),
            vec((shortstr(), inner), 0..8).prop_map(|e| FieldValue::Table(FieldTable(e))),
        ]
    })
}

fn field_table() -> impl Strategy<Value = FieldTable> {
    // Keys from a small alphabet so duplicates occur.
    vec((prop_oneof![shortstr(), "[ab]"], field_value()), 0..12).prop_map(FieldTable)
}

fn basic_properties() -> impl Strategy<Value = BasicProperties> {
    let s = || proptest::option::of(shortstr());
    (
        (
            s(),
            s(),
            proptest::option::of(field_table()),
            any::<Option<u8>>(),
            any::<Option<u8>>(),
        ),
        (s(), s(), s(), s(), any::<Option<u64>>()),
        (s(), s(), s(), s()),
    )
        .prop_map(|(a, b, c)| BasicProperties {
            content_type: a.0,
            content_encoding: a.1,
            headers: a.2,
            delivery_mode: a.3,
            priority: a.4,
            correlation_id: b.0,
            reply_to: b.1,
            expiration: b.2,
            message_id: b.3,
            timestamp: b.4,
            kind: c.0,
            user_id: c.1,
            app_id: c.2,
            cluster_id: c.3,
        })
}

proptest! {
    #[test]
    fn field_tables_round_trip_byte_for_byte(t in field_table()) {
        let mut out = BytesMut::new();
        encode_field_table(&t, &mut out);
        let wire = out.clone().freeze();
        let mut buf = out.freeze();
        let back = decode_field_table(&mut buf).unwrap();
        prop_assert!(buf.is_empty());
        prop_assert_eq!(&back, &t);
        let mut again = BytesMut::new();
        encode_field_table(&back, &mut again);
        prop_assert_eq!(again.freeze(), wire);
    }

    #[test]
    fn basic_properties_round_trip(p in basic_properties()) {
        let mut out = BytesMut::new();
        p.encode(&mut out);
        let mut buf = out.freeze();
        prop_assert_eq!(BasicProperties::decode(&mut buf).unwrap(), p);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn content_round_trips_through_frames_at_any_frame_max(
        p in basic_properties(),
        body in vec(any::<u8>(), 0..20_000),
        frame_max in prop_oneof![Just(0u32), 4096u32..20_000],
        cut in any::<prop::sample::Index>(),
    ) {
        // Only body frames are split (spec §4.2.6.1): the header frame must fit in frame_max on its own, which
        // a generated headers table of several KiB may not; such cases are not valid input for this test.
        let mut props_wire = BytesMut::new();
        p.encode(&mut props_wire);
        prop_assume!(frame_max == 0 || props_wire.len() + 8 + 14 <= frame_max as usize);
        let body = Bytes::from(body);
        let publish = Method::BasicPublish(BasicPublish { routing_key: "k".into(), ..Default::default() });
        let mut wire = BytesMut::new();
        encode_content(1, &publish, 60, &p, &body, frame_max, &mut wire);
        let wire = wire.freeze();

        // Deliver the stream in two pieces cut at an arbitrary point.
        let cut = cut.index(wire.len() + 1);
        let mut buf = BytesMut::from(&wire[..cut]);
        let mut frames = Vec::new();
        while let Some(f) = decode_frame(&mut buf, frame_max).unwrap() { frames.push(f); }
        buf.extend_from_slice(&wire[cut..]);
        while let Some(f) = decode_frame(&mut buf, frame_max).unwrap() { frames.push(f); }
        prop_assert!(buf.is_empty());

        prop_assert_eq!(&frames[0], &Frame::Method(1, publish));
        prop_assert_eq!(
            &frames[1],
            &Frame::Header(1, Box::new(ContentHeader { class_id: 60, body_size: body.len() as u64, properties: p, ..Default::default() }))
        );
        let mut got = Vec::new();
        for f in &frames[2..] {
            let Frame::Body(1, b) = f else { panic!("expected body, got {f:?}") };
            got.extend_from_slice(b);
        }
        prop_assert_eq!(Bytes::from(got), body);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(input in vec(any::<u8>(), 0..512)) {
        let mut buf = BytesMut::from(&input[..]);
        while let Ok(Some(_)) = decode_frame(&mut buf, FRAME_MIN_SIZE) {}
        let mut buf = Bytes::from(input.clone());
        let _ = decode_field_table(&mut buf);
        let mut buf = Bytes::from(input.clone());
        let _ = BasicProperties::decode(&mut buf);
        let mut buf = Bytes::from(input);
        let _ = Method::decode(&mut buf);
    }

    #[test]
    fn plausible_method_frames_never_panic_the_decoder(
        class_id in prop::sample::select(vec![10u16, 20, 40, 50, 60, 85, 90]),
        method_id in 0u16..130,
        args in vec(any::<u8>(), 0..64),
    ) {
        // Valid ids with random arguments reach deep into argument parsing.
        let mut payload = BytesMut::new();
        payload.extend_from_slice(&class_id.to_be_bytes());
        payload.extend_from_slice(&method_id.to_be_bytes());
        payload.extend_from_slice(&args);
        let _ = Method::decode(&mut payload.freeze());
    }
}
