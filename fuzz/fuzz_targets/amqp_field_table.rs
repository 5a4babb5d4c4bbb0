//! A field table (AMQP 0-9-1 §4.2.5.5, with RabbitMQ's value types) from arbitrary bytes. Nothing may
//! panic or recurse without bound, and a table that decodes must re-encode canonically (compared as bytes).
#![no_main]

use bytes::{Bytes, BytesMut};
use ferrymq_amqp_codec as codec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut bytes = Bytes::copy_from_slice(data);
    let Ok(table) = codec::decode_field_table(&mut bytes) else {
        return;
    };
    let mut first = BytesMut::new();
    codec::encode_field_table(&table, &mut first);
    let mut reread = first.clone().freeze();
    let again = codec::decode_field_table(&mut reread).expect("an encoded table decodes");
    assert!(reread.is_empty(), "the whole encoding is one table");
    let mut second = BytesMut::new();
    codec::encode_field_table(&again, &mut second);
    assert_eq!(first, second, "re-encoding is stable for {table:?}");
});
