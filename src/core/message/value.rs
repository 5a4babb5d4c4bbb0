//! Header values every protocol maps into: an ordered multimap of names to typed values ([`Headers`]), with an
//! optional type label per entry. This is the core's only representation of application headers, queue and
//! exchange arguments and binding arguments; the AMQP field table, MQTT 5 user properties, STOMP headers and
//! SQS message attributes are each converted to and from it by their own adapter.
//!
//! The integer widths, decimals and the byte-string form of text are kept as they arrived, so a value read from
//! one protocol is written back by the same protocol byte for byte. Repeated names keep their order (MQTT user
//! properties may repeat a key; AMQP tables normally do not).

use bytes::Bytes;

/// One typed value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// No value (AMQP `V`, JSON null).
    Null,
    Bool(bool),
    I8(i8),
    U8(u8),
    I16(i16),
    U16(u16),
    I32(i32),
    U32(u32),
    I64(i64),
    U64(u64),
    F32(f32),
    F64(f64),
    /// `value / 10^scale`.
    Decimal {
        scale: u8,
        value: u32,
    },
    /// Text: normally UTF-8, kept as the bytes that arrived (an AMQP long string may carry any bytes).
    Text(Bytes),
    /// Opaque bytes.
    Binary(Bytes),
    /// Seconds since the Unix epoch.
    Timestamp(u64),
    Array(Vec<Value>),
    Map(Headers),
}

impl Value {
    /// A text value from a string.
    pub fn text(s: &str) -> Value {
        Value::Text(Bytes::copy_from_slice(s.as_bytes()))
    }

    /// The text of a `Text` value that is UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// Any integer value that fits an `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        Some(match *self {
            Value::I8(v) => v.into(),
            Value::U8(v) => v.into(),
            Value::I16(v) => v.into(),
            Value::U16(v) => v.into(),
            Value::I32(v) => v.into(),
            Value::U32(v) => v.into(),
            Value::I64(v) => v,
            Value::U64(v) => i64::try_from(v).ok()?,
            _ => return None,
        })
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&Headers> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// Equal as values: integers of different widths compare by number (argument equivalence checks).
    pub fn same_as(&self, other: &Value) -> bool {
        self == other || (self.as_i64().is_some() && self.as_i64() == other.as_i64())
    }
}

/// One named value, with the type label a protocol gave it (SQS `Number.float`, `Binary.gif`), if any.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub name: String,
    pub value: Value,
    pub label: Option<Box<str>>,
}

/// An ordered multimap of names to values (see the module docs).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Headers(Vec<Header>);

impl Headers {
    pub fn new() -> Self {
        Self(Vec::new())
    }

    pub fn with_capacity(n: usize) -> Self {
        Self(Vec::with_capacity(n))
    }

    /// The first value named `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.iter().find(|h| h.name == name).map(|h| &h.value)
    }

    /// Every value named `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.0
            .iter()
            .filter(move |h| h.name == name)
            .map(|h| &h.value)
    }

    /// Appends an entry (a repeated name is kept as a further entry).
    pub fn push(&mut self, name: impl Into<String>, value: Value) {
        self.push_labeled(name, value, None);
    }

    /// Appends an entry with a type label.
    pub fn push_labeled(&mut self, name: impl Into<String>, value: Value, label: Option<Box<str>>) {
        self.0.push(Header {
            name: name.into(),
            value,
            label,
        });
    }

    /// Replaces every entry named `name` with one `value` at the place of the first (or at the end).
    pub fn set(&mut self, name: &str, value: Value) {
        match self.0.iter().position(|h| h.name == name) {
            Some(i) => {
                self.0[i].value = value;
                self.0[i].label = None;
                let mut seen = 0;
                self.0.retain(|h| {
                    if h.name != name {
                        return true;
                    }
                    seen += 1;
                    seen == 1
                });
            }
            None => self.push(name, value),
        }
    }

    /// Removes every entry named `name`; returns the first one's value.
    pub fn remove(&mut self, name: &str) -> Option<Value> {
        let i = self.0.iter().position(|h| h.name == name)?;
        let first = self.0.remove(i).value;
        self.0.retain(|h| h.name != name);
        Some(first)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Header> {
        self.0.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl FromIterator<Header> for Headers {
    fn from_iter<I: IntoIterator<Item = Header>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

impl IntoIterator for Headers {
    type Item = Header;
    type IntoIter = std::vec::IntoIter<Header>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_names_keep_their_order() {
        let mut h = Headers::new();
        h.push("k", Value::text("1"));
        h.push("other", Value::Bool(true));
        h.push("k", Value::text("2"));
        let all: Vec<_> = h.get_all("k").filter_map(Value::as_str).collect();
        assert_eq!(all, ["1", "2"]);
        assert_eq!(h.get("k").and_then(Value::as_str), Some("1"));
        h.set("k", Value::text("3"));
        assert_eq!(h.len(), 2);
        assert_eq!(h.get_all("k").count(), 1);
        assert_eq!(
            h.remove("k")
                .and_then(|v| v.as_str().map(str::to_owned))
                .as_deref(),
            Some("3")
        );
        assert!(h.get("k").is_none());
    }

    #[test]
    fn integers_of_different_widths_are_the_same_argument() {
        assert!(Value::I16(5).same_as(&Value::I64(5)));
        assert!(!Value::I16(5).same_as(&Value::I64(6)));
        assert!(!Value::text("5").same_as(&Value::I64(5)));
    }
}
