//! SQS messages to and from the core's message model. Message attributes become application headers with
//! their data type kept as the header's type label (`String` and `Binary` need none: the value's kind tells;
//! `Number` and custom types such as `Number.float` keep theirs), so MD5OfMessageAttributes comes out exactly
//! as the sender computed it. Headers of a message from another protocol become attributes by value kind
//! (text: `String`, integers and floats: `Number`, bytes: `Binary`). SQS's own fields (message group,
//! deduplication id, sequence number, sender, trace header) travel as `x-sqs-*` headers, so they survive an
//! AMQP hop, and are never shown as message attributes. MD5 digests follow the SQS developer guide
//! ("Calculating the MD5 message digest for message attributes").

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use md5::{Digest, Md5};
use serde_json::{Map, Value as Json, json};

use crate::aws::error::AwsError;
use crate::core::message::{Headers, Value};

/// Prefix of the headers that carry SQS's own fields.
pub const INTERNAL_PREFIX: &str = "x-sqs-";
pub const GROUP_ID: &str = "x-sqs-message-group-id";
pub const DEDUP_ID: &str = "x-sqs-message-deduplication-id";
pub const SEQUENCE: &str = "x-sqs-sequence-number";
pub const SENDER: &str = "x-sqs-sender-id";
pub const TRACE: &str = "x-sqs-aws-trace-header";
/// At most this many message attributes per message.
const MAX_ATTRIBUTES: usize = 10;

/// One message attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub data_type: String,
    pub value: AttrValue,
}

/// A string (`String`, `Number` and their custom types) or binary value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttrValue {
    Text(String),
    Binary(Vec<u8>),
}

impl Attribute {
    /// Its JSON form (`DataType` with `StringValue` or base64 `BinaryValue`).
    pub fn to_json(&self) -> Json {
        match &self.value {
            AttrValue::Text(s) => json!({"DataType": self.data_type, "StringValue": s}),
            AttrValue::Binary(b) => {
                json!({"DataType": self.data_type, "BinaryValue": BASE64.encode(b)})
            }
        }
    }

    /// Bytes it counts for against MaximumMessageSize (name, type and value).
    pub fn size(&self, name: &str) -> usize {
        let value = match &self.value {
            AttrValue::Text(s) => s.len(),
            AttrValue::Binary(b) => b.len(),
        };
        name.len() + self.data_type.len() + value
    }
}

/// Message attributes from a request (`MessageAttributes`), checked.
pub fn parse_attributes(
    given: Option<&Map<String, Json>>,
) -> Result<Vec<(String, Attribute)>, AwsError> {
    let Some(given) = given else {
        return Ok(Vec::new());
    };
    if given.len() > MAX_ATTRIBUTES {
        return Err(AwsError::invalid_parameter(&format!(
            "Number of message attributes [{}] exceeds the allowed maximum [{MAX_ATTRIBUTES}].",
            given.len()
        )));
    }
    let mut out = Vec::with_capacity(given.len());
    for (name, value) in given {
        check_name(name)?;
        out.push((name.clone(), parse_attribute(name, value)?));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn check_name(name: &str) -> Result<(), AwsError> {
    let valid_chars = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    let reserved = name.starts_with("AWS.") || name.starts_with("Amazon.");
    if name.is_empty() || name.len() > 256 || !valid_chars || reserved || name.contains("..") {
        return Err(AwsError::invalid_parameter(&format!(
            "The message attribute name '{name}' is invalid. Attribute name can contain A-Z, a-z, 0-9, underscore (_), hyphen (-), and period (.) characters."
        )));
    }
    Ok(())
}

fn parse_attribute(name: &str, value: &Json) -> Result<Attribute, AwsError> {
    let data_type = value
        .get("DataType")
        .and_then(Json::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            AwsError::invalid_parameter(&format!(
                "The message attribute '{name}' must contain a non-empty message attribute type."
            ))
        })?;
    let base = data_type.split('.').next().unwrap_or("");
    let missing = || {
        AwsError::invalid_parameter(&format!(
            "The message attribute '{name}' must contain a non-empty message attribute value for message attribute type '{data_type}'."
        ))
    };
    let value = match base {
        "String" | "Number" => {
            let s = value
                .get("StringValue")
                .and_then(Json::as_str)
                .ok_or_else(missing)?;
            if s.is_empty() {
                return Err(missing());
            }
            if base == "Number" && s.trim().parse::<f64>().is_err() {
                return Err(AwsError::invalid_parameter(&format!(
                    "Can't cast message attribute '{name}' value to number."
                )));
            }
            AttrValue::Text(s.to_owned())
        }
        "Binary" => {
            let b64 = value
                .get("BinaryValue")
                .and_then(Json::as_str)
                .ok_or_else(missing)?;
            let bytes = BASE64.decode(b64).map_err(|_| {
                AwsError::invalid_parameter(&format!(
                    "The message attribute '{name}' has an invalid binary value."
                ))
            })?;
            AttrValue::Binary(bytes)
        }
        _ => {
            return Err(AwsError::invalid_parameter(&format!(
                "The message attribute '{name}' has an invalid message attribute type, the set of supported type prefixes is Binary, Number, and String."
            )));
        }
    };
    Ok(Attribute {
        data_type: data_type.to_owned(),
        value,
    })
}

/// MD5OfMessageAttributes (and MD5OfMessageSystemAttributes) of attributes, sorted by name here.
pub fn md5_of_attributes(attributes: &[(String, Attribute)]) -> String {
    let mut md5 = Md5::new();
    let mut sorted: Vec<&(String, Attribute)> = attributes.iter().collect();
    sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    for (name, attr) in sorted {
        put(&mut md5, name.as_bytes());
        put(&mut md5, attr.data_type.as_bytes());
        match &attr.value {
            AttrValue::Text(s) => {
                md5.update([1u8]);
                put(&mut md5, s.as_bytes());
            }
            AttrValue::Binary(b) => {
                md5.update([2u8]);
                put(&mut md5, b);
            }
        }
    }
    hex::encode(md5.finalize())
}

/// A length-prefixed field of the attribute digest.
fn put(md5: &mut Md5, bytes: &[u8]) {
    md5.update(u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_be_bytes());
    md5.update(bytes);
}

/// MD5OfMessageBody.
pub fn md5_hex(bytes: &[u8]) -> String {
    hex::encode(Md5::digest(bytes))
}

/// Message attributes as headers (type labels where the value's kind does not tell the data type).
pub fn to_headers(attributes: &[(String, Attribute)], headers: &mut Headers) {
    for (name, attr) in attributes {
        let (value, plain) = match &attr.value {
            AttrValue::Text(s) => (Value::text(s), "String"),
            AttrValue::Binary(b) => (Value::Binary(Bytes::copy_from_slice(b)), "Binary"),
        };
        let label = (attr.data_type != plain).then(|| attr.data_type.clone().into_boxed_str());
        headers.push_labeled(name.clone(), value, label);
    }
}

/// A message's headers as message attributes (SQS's own `x-sqs-*` fields left out).
pub fn from_headers(headers: &Headers) -> Vec<(String, Attribute)> {
    let mut out = Vec::new();
    for h in headers.iter() {
        if h.name.starts_with(INTERNAL_PREFIX) {
            continue;
        }
        let Some((kind, value)) = attr_value(&h.value) else {
            continue;
        };
        let data_type = h.label.as_deref().map_or(kind, |l| l).to_owned();
        out.push((h.name.clone(), Attribute { data_type, value }));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The plain data type and value of a header value (`None`: no SQS form).
fn attr_value(v: &Value) -> Option<(&'static str, AttrValue)> {
    let number = |s: String| Some(("Number", AttrValue::Text(s)));
    match v {
        Value::Text(b) => Some((
            "String",
            AttrValue::Text(String::from_utf8_lossy(b).into_owned()),
        )),
        Value::Binary(b) => Some(("Binary", AttrValue::Binary(b.to_vec()))),
        Value::Bool(b) => Some(("String", AttrValue::Text(b.to_string()))),
        Value::F32(f) => number(f.to_string()),
        Value::F64(f) => number(f.to_string()),
        Value::Decimal { scale, value } => number(format!(
            "{}",
            f64::from(*value) / 10f64.powi(i32::from(*scale))
        )),
        Value::Timestamp(t) => number(t.to_string()),
        Value::U64(n) => number(n.to_string()),
        other => other.as_i64().and_then(|n| number(n.to_string())),
    }
}

/// A text header's value.
pub fn header_text<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(Value::as_str)
}

/// Whether a message body has only the characters SQS allows (#x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to
/// #xFFFD | #x10000 to #x10FFFF).
pub fn valid_body(body: &str) -> bool {
    body.chars().all(|c| {
        matches!(c, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(v: Json) -> Vec<(String, Attribute)> {
        parse_attributes(v.as_object()).expect("valid attributes")
    }

    /// Digests computed by the AWS SDKs' own checks (botocore's and the Java SDK's algorithm) for these inputs.
    #[test]
    fn attribute_digest_matches_the_sdks() {
        let a = attrs(json!({"a": {"DataType": "String", "StringValue": "b"}}));
        // 00000001 'a' 00000006 'String' 01 00000001 'b'
        let mut expected = Md5::new();
        expected.update([0, 0, 0, 1, b'a', 0, 0, 0, 6]);
        expected.update(b"String");
        expected.update([1, 0, 0, 0, 1, b'b']);
        assert_eq!(md5_of_attributes(&a), hex::encode(expected.finalize()));
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
    }

    #[test]
    fn data_types_survive_the_core_headers() {
        let a = attrs(json!({
            "n": {"DataType": "Number.float", "StringValue": "1.5"},
            "s": {"DataType": "String", "StringValue": "x"},
            "b": {"DataType": "Binary", "BinaryValue": "AAE="},
        }));
        let mut h = Headers::new();
        to_headers(&a, &mut h);
        h.push(GROUP_ID, Value::text("g"));
        assert_eq!(from_headers(&h), a);
    }

    #[test]
    fn bad_attributes_are_refused() {
        for bad in [
            json!({"a": {"DataType": "Colour", "StringValue": "red"}}),
            json!({"a": {"DataType": "String"}}),
            json!({"a": {"DataType": "Number", "StringValue": "x"}}),
            json!({"AWS.x": {"DataType": "String", "StringValue": "v"}}),
        ] {
            assert!(parse_attributes(bad.as_object()).is_err(), "{bad}");
        }
    }

    #[test]
    fn control_characters_are_not_valid_in_a_body() {
        assert!(valid_body("hello\tworld\n"));
        assert!(!valid_body("a\u{1}b"));
    }
}
