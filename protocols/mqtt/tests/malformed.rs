//! Malformed input: each case is the exact bytes a broken client might send and the typed error (with the
//! MQTT 5.0 reason code) the codec gives for it, never a panic and never a silently accepted packet.

#![allow(clippy::unwrap_used)]

use bytes::BytesMut;
use ferrymq_mqtt_codec::*;

const V5: ProtocolVersion = ProtocolVersion::V5;
const V311: ProtocolVersion = ProtocolVersion::V3_1_1;

fn decode(bytes: &[u8], v: ProtocolVersion) -> Result<Option<Packet>, DecodeError> {
    decode_packet(&mut BytesMut::from(bytes), v, 1024)
}

fn assert_error(bytes: &[u8], v: ProtocolVersion, error: DecodeError, reason: ReasonCode) {
    let got = decode(bytes, v);
    assert_eq!(got, Err(error), "bytes {bytes:02x?}");
    assert_eq!(got.unwrap_err().reason_code(), reason);
}

#[test]
fn remaining_length_over_four_bytes_is_malformed() {
    assert_error(
        &[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
        V5,
        DecodeError::BadRemainingLength,
        ReasonCode::MALFORMED_PACKET,
    );
}

#[test]
fn non_minimal_remaining_length_is_malformed() {
    assert_error(
        &[0xC0, 0x80, 0x00],
        V5,
        DecodeError::BadRemainingLength,
        ReasonCode::MALFORMED_PACKET,
    );
}

#[test]
fn packet_over_the_maximum_is_refused_from_its_fixed_header_alone() {
    // Only three bytes buffered: the size is known from the remaining length before any body arrives.
    let got = decode_packet(&mut BytesMut::from(&[0x30u8, 0xFF, 0x7F][..]), V5, 100);
    assert_eq!(
        got,
        Err(DecodeError::PacketTooLarge {
            size: 16_386,
            max: 100
        })
    );
    assert_eq!(got.unwrap_err().reason_code(), ReasonCode::PACKET_TOO_LARGE);
}

#[test]
fn incomplete_fixed_header_and_body_are_not_errors() {
    assert_eq!(decode(&[0x30], V5), Ok(None));
    assert_eq!(decode(&[0x30, 0x80], V5), Ok(None));
    assert_eq!(decode(&[0x30, 0x05, 0x00], V5), Ok(None));
}

#[test]
fn reserved_fixed_header_flags_are_malformed() {
    let subscribe_without_0010 = [0x80, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x00];
    assert_error(
        &subscribe_without_0010,
        V311,
        DecodeError::ReservedFlags { kind: 8, flags: 0 },
        ReasonCode::MALFORMED_PACKET,
    );
    assert_error(
        &[0xC1, 0x00],
        V311,
        DecodeError::ReservedFlags { kind: 12, flags: 1 },
        ReasonCode::MALFORMED_PACKET,
    );
    assert_error(
        &[0x00, 0x00],
        V311,
        DecodeError::ReservedPacketType(0),
        ReasonCode::MALFORMED_PACKET,
    );
}

#[test]
fn publish_with_qos_3_or_dup_at_qos_0_is_malformed() {
    assert_error(
        &[0x36, 0x05, 0x00, 0x01, b'a', 0x00, 0x01],
        V311,
        DecodeError::Malformed("QoS 3"),
        ReasonCode::MALFORMED_PACKET,
    );
    assert_error(
        &[0x38, 0x03, 0x00, 0x01, b'a'],
        V311,
        DecodeError::Malformed("DUP on a QoS 0 publish"),
        ReasonCode::MALFORMED_PACKET,
    );
}

#[test]
fn invalid_utf8_and_nul_in_a_topic_are_malformed() {
    assert_error(
        &[0x30, 0x04, 0x00, 0x02, 0xC3, 0x28],
        V311,
        DecodeError::InvalidUtf8,
        ReasonCode::MALFORMED_PACKET,
    );
    assert_error(
        &[0x30, 0x04, 0x00, 0x02, b'a', 0x00],
        V311,
        DecodeError::InvalidUtf8,
        ReasonCode::MALFORMED_PACKET,
    );
}

#[test]
fn wildcard_in_a_publish_topic_is_topic_name_invalid() {
    assert_error(
        &[0x30, 0x06, 0x00, 0x03, b'a', b'/', b'+', 0x00],
        V5,
        DecodeError::TopicNameInvalid,
        ReasonCode::TOPIC_NAME_INVALID,
    );
}

#[test]
fn property_not_allowed_in_a_packet_is_a_protocol_error() {
    // PUBACK id 1, reason 0, properties: Topic Alias 1 (PUBLISH only).
    let puback = [0x40, 0x07, 0x00, 0x01, 0x00, 0x03, 0x23, 0x00, 0x01];
    assert_error(
        &puback,
        V5,
        DecodeError::PropertyNotAllowed { id: 0x23, kind: 4 },
        ReasonCode::PROTOCOL_ERROR,
    );
}

#[test]
fn single_valued_property_twice_is_a_protocol_error() {
    // PUBLISH QoS 0 to "a", properties: Payload Format Indicator 1, twice.
    let publish = [0x30, 0x08, 0x00, 0x01, b'a', 0x04, 0x01, 0x01, 0x01, 0x01];
    assert_error(
        &publish,
        V5,
        DecodeError::DuplicateProperty(0x01),
        ReasonCode::PROTOCOL_ERROR,
    );
}

#[test]
fn unknown_property_is_malformed() {
    let publish = [0x30, 0x06, 0x00, 0x01, b'a', 0x02, 0x7F, 0x00];
    assert_error(
        &publish,
        V5,
        DecodeError::UnknownProperty(0x7F),
        ReasonCode::MALFORMED_PACKET,
    );
}

#[test]
fn auth_before_mqtt_5_is_a_reserved_packet_type() {
    assert_error(
        &[0xF0, 0x00],
        V311,
        DecodeError::ReservedPacketType(15),
        ReasonCode::MALFORMED_PACKET,
    );
    assert_eq!(
        decode(&[0xF0, 0x00], V5),
        Ok(Some(Packet::Auth(Disconnect::default())))
    );
}

#[test]
fn unknown_protocol_level_is_unsupported_protocol_version() {
    let connect = [
        0x10, 0x0C, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x06, 0x02, 0x00, 0x3C, 0x00, 0x00,
    ];
    let error = DecodeError::UnsupportedProtocol {
        name: "MQTT".into(),
        level: 6,
    };
    assert_error(
        &connect,
        V311,
        error,
        ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
    );
}

#[test]
fn reserved_connect_flag_is_malformed() {
    let connect = [
        0x10, 0x0C, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x03, 0x00, 0x3C, 0x00, 0x00,
    ];
    assert_error(
        &connect,
        V311,
        DecodeError::Malformed("reserved connect flag"),
        ReasonCode::MALFORMED_PACKET,
    );
}

#[test]
fn packet_id_zero_and_empty_subscribe_are_protocol_errors() {
    assert_error(
        &[0x40, 0x02, 0x00, 0x00],
        V311,
        DecodeError::ZeroPacketId,
        ReasonCode::PROTOCOL_ERROR,
    );
    assert_error(
        &[0x82, 0x02, 0x00, 0x01],
        V311,
        DecodeError::NoTopicFilter,
        ReasonCode::PROTOCOL_ERROR,
    );
}

#[test]
fn bytes_after_the_last_field_are_malformed() {
    assert_error(
        &[0xC0, 0x01, 0x00],
        V311,
        DecodeError::Length("bytes after the last field"),
        ReasonCode::MALFORMED_PACKET,
    );
}

#[test]
fn v3_connect_with_user_and_password_decodes() {
    // What `mosquitto_pub -V mqttv311 -i c1 -k 60 -u u -P p` sends, assembled by hand from §3.1.
    let bytes = [
        0x10, 0x14, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0xC2, 0x00, 0x3C, 0x00, 0x02, b'c',
        b'1', 0x00, 0x01, b'u', 0x00, 0x01, b'p',
    ];
    let Ok(Some(Packet::Connect(c))) = decode(&bytes, V311) else {
        panic!("not a connect")
    };
    assert_eq!(
        (c.version, c.clean_start, c.keep_alive),
        (ProtocolVersion::V3_1_1, true, 60)
    );
    assert_eq!(
        (
            c.client_id.as_str(),
            c.username.as_deref(),
            c.password.as_deref()
        ),
        ("c1", Some("u"), Some(&b"p"[..]))
    );
}

#[test]
fn topic_filters_follow_the_wildcard_rules() {
    for good in ["a/b", "a/+/c", "#", "+", "a/#", "/", "+/+"] {
        assert!(topic::valid_filter(good), "{good}");
    }
    for bad in ["", "a/#/c", "a#", "a/b+", "#/a"] {
        assert!(!topic::valid_filter(bad), "{bad}");
    }
    assert!(topic::matches("a/+/c", "a/b/c"));
    assert!(topic::matches("a/#", "a"));
    assert!(!topic::matches("#", "$SYS/x"), "[MQTT-4.7.2-1]");
    assert!(topic::matches("$SYS/#", "$SYS/x"));
    assert_eq!(topic::shared("$share/g/a/+"), Some(Ok(("g", "a/+"))));
    assert_eq!(topic::shared("$share/g"), Some(Err(())));
    assert_eq!(topic::shared("a/b"), None);
}

/// Found by the mqtt_packets fuzz target: a 3.1.1 SUBACK with reserved return codes decoded, and re-encoded
/// as 0x80, so it did not round-trip.
#[test]
fn v3_suback_with_a_reserved_return_code_is_malformed() {
    assert_error(
        &[0x90, 0x04, 0x00, 0x0A, 0x00, 0xFF],
        V311,
        DecodeError::Malformed("reserved SUBACK return code"),
        ReasonCode::MALFORMED_PACKET,
    );
    let ok = decode(&[0x90, 0x06, 0x00, 0x0A, 0x00, 0x01, 0x02, 0x80], V311).unwrap();
    assert!(matches!(ok, Some(Packet::SubAck(s)) if s.reasons.len() == 4));
    // In 5.0 any reason code byte decodes (unknown ones are the caller's to refuse).
    assert!(decode(&[0x90, 0x04, 0x00, 0x0A, 0x00, 0xEA], V5).is_ok());
}

/// Found by the mqtt_packets fuzz target: a 3.1.1 UNSUBACK with bytes after its packet id decoded, and
/// re-encoded without them.
#[test]
fn v3_unsuback_with_a_payload_is_malformed() {
    assert_error(
        &[0xB0, 0x03, 0xCB, 0xCB, 0xCB],
        V311,
        DecodeError::Length("bytes after the last field"),
        ReasonCode::MALFORMED_PACKET,
    );
    assert!(matches!(
        decode(&[0xB0, 0x02, 0xCB, 0xCB], V311).unwrap(),
        Some(Packet::UnsubAck(_))
    ));
}
