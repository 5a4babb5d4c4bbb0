//! A byte stream as a client would send it, decoded packet by packet with the MQTT codec until it needs more
//! bytes or reports an error; the first byte picks the protocol version (3.1, 3.1.1 or 5.0) as CONNECT would
//! have negotiated it. Nothing may panic, a decode error must name a reason code, and every packet that decodes
//! must survive a round trip: decode(encode(p)) == p, with no bytes left over.
#![no_main]

use bytes::BytesMut;
use ferrymq_mqtt_codec::{self as codec, Packet, ProtocolVersion};
use libfuzzer_sys::fuzz_target;

/// A small maximum packet size, so the limit check is reached too.
const MAX_PACKET: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, stream)) = data.split_first() else {
        return;
    };
    let version = match selector % 3 {
        0 => ProtocolVersion::V3_1,
        1 => ProtocolVersion::V3_1_1,
        _ => ProtocolVersion::V5,
    };
    let mut buf = BytesMut::from(stream);
    loop {
        match codec::decode_packet(&mut buf, version, MAX_PACKET) {
            Ok(Some(packet)) => round_trips(&packet, version),
            Ok(None) => return,
            Err(e) => {
                let _ = e.reason_code();
                return;
            }
        }
    }
});

fn round_trips(packet: &Packet, version: ProtocolVersion) {
    let mut encoded = BytesMut::new();
    let len = codec::encode_packet(packet, version, &mut encoded);
    assert_eq!(len, encoded.len(), "encode_packet returns the bytes it wrote");
    assert_eq!(codec::encoded_len(packet, version), len, "encoded_len agrees");
    let again = codec::decode_packet(&mut encoded, version, usize::MAX)
        .unwrap_or_else(|e| panic!("re-encoded {packet:?} does not decode: {e}"))
        .expect("an encoded packet is whole");
    assert!(encoded.is_empty(), "one packet, no bytes left over");
    assert_eq!(&again, packet, "round trip as {version:?}");
}
