//! A byte stream as a client would send it (optionally starting with the protocol header), decoded frame by
//! frame until the codec needs more bytes or reports an error. Nothing may panic, and every frame that
//! decodes must re-encode canonically: encode(decode(encode(f))) == encode(f) (compared as bytes, so NaN
//! floats in tables do not count as differences).
#![no_main]

use bytes::BytesMut;
use ferrymq_amqp_codec::{self as codec, Frame};
use libfuzzer_sys::fuzz_target;

/// The frame_max FerryMQ negotiates by default.
const FRAME_MAX: u32 = 131_072;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    if buf.starts_with(b"AMQP") && codec::decode_protocol_header(&mut buf).is_none() {
        return;
    }
    while let Ok(Some(frame)) = codec::decode_frame(&mut buf, FRAME_MAX) {
        re_encodes_canonically(&frame);
    }
});

fn re_encodes_canonically(frame: &Frame) {
    let mut first = BytesMut::new();
    codec::encode_frame(frame, &mut first);
    let mut reread = first.clone();
    let again = codec::decode_frame(&mut reread, 0)
        .expect("an encoded frame decodes")
        .expect("an encoded frame is whole");
    assert!(reread.is_empty(), "one frame, no bytes left over");
    let mut second = BytesMut::new();
    codec::encode_frame(&again, &mut second);
    assert_eq!(first, second, "re-encoding is stable for {frame:?}");
}
