//! Queue arguments (`x-*` at declare time): parsed once, validated with RabbitMQ's error texts, and kept in a
//! typed form the queue actor reads. Unknown arguments are kept but ignored, as RabbitMQ does.

use std::time::Duration;

use crate::core::message::{Headers, Value};

use crate::core::CoreError;
use crate::core::error::Entity;

/// What a queue does when a publish would exceed `x-max-length` / `x-max-length-bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    #[default]
    DropHead,
    RejectPublish,
    RejectPublishDlx,
}

/// Typed queue arguments.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueArgs {
    pub message_ttl: Option<Duration>,
    pub expires: Option<Duration>,
    pub max_length: Option<u64>,
    pub max_length_bytes: Option<u64>,
    pub overflow: Overflow,
    pub dead_letter_exchange: Option<String>,
    pub dead_letter_routing_key: Option<String>,
    pub max_priority: Option<u8>,
    pub single_active_consumer: bool,
    /// Consumers the queue may have at once (the broker's `[limits]`, not a declare argument).
    pub max_consumers: Option<usize>,
}

impl QueueArgs {
    /// Parse and validate declare arguments for queue `queue` in `vhost`.
    pub fn parse(args: &Headers, queue: &str, vhost: &str) -> Result<Self, CoreError> {
        let invalid = |key: &str, why: &str| CoreError::InvalidArgument {
            kind: Entity::Queue,
            vhost: vhost.to_owned(),
            name: queue.to_owned(),
            key: key.to_owned(),
            why: why.to_owned(),
        };
        let non_neg = |key: &str, v: &Value| -> Result<u64, CoreError> {
            match v.as_i64() {
                Some(n) if n >= 0 => Ok(n as u64),
                Some(n) => Err(invalid(key, &format!("{{value_negative,{n}}}"))),
                None => Err(invalid(key, &format!("{{unacceptable_type,{v:?}}}"))),
            }
        };
        let string = |key: &str, v: &Value| -> Result<String, CoreError> {
            v.as_str()
                .map(str::to_owned)
                .ok_or_else(|| invalid(key, &format!("{{unacceptable_type,{v:?}}}")))
        };
        let mut out = QueueArgs::default();
        for h in args.iter() {
            let (key, value) = (h.name.as_str(), &h.value);
            match key {
                "x-message-ttl" => {
                    out.message_ttl = Some(Duration::from_millis(non_neg(key, value)?))
                }
                "x-expires" => {
                    let ms = non_neg(key, value)?;
                    if ms == 0 {
                        return Err(invalid(key, "{value_zero,0}"));
                    }
                    out.expires = Some(Duration::from_millis(ms));
                }
                "x-max-length" => out.max_length = Some(non_neg(key, value)?),
                "x-max-length-bytes" => out.max_length_bytes = Some(non_neg(key, value)?),
                "x-overflow" => {
                    out.overflow = match string(key, value)?.as_str() {
                        "drop-head" => Overflow::DropHead,
                        "reject-publish" => Overflow::RejectPublish,
                        "reject-publish-dlx" => Overflow::RejectPublishDlx,
                        other => {
                            return Err(invalid(
                                key,
                                &format!("{{unacceptable_value,<<\"{other}\">>}}"),
                            ));
                        }
                    }
                }
                "x-dead-letter-exchange" => out.dead_letter_exchange = Some(string(key, value)?),
                "x-dead-letter-routing-key" => {
                    out.dead_letter_routing_key = Some(string(key, value)?)
                }
                "x-max-priority" => {
                    let p = non_neg(key, value)?;
                    out.max_priority = Some(p.min(255) as u8);
                }
                "x-single-active-consumer" => {
                    out.single_active_consumer = value
                        .as_bool()
                        .ok_or_else(|| invalid(key, &format!("{{unacceptable_type,{value:?}}}")))?;
                }
                "x-queue-type" => match string(key, value)?.as_str() {
                    "classic" => {}
                    kind @ ("quorum" | "stream") => {
                        return Err(invalid(
                            key,
                            &format!("queue type '{kind}' is not supported by FerryMQ yet"),
                        ));
                    }
                    other => {
                        return Err(invalid(
                            key,
                            &format!("{{unacceptable_value,<<\"{other}\">>}}"),
                        ));
                    }
                },
                "x-queue-mode" => match string(key, value)?.as_str() {
                    "default" | "lazy" => {}
                    other => {
                        return Err(invalid(
                            key,
                            &format!("{{unacceptable_value,<<\"{other}\">>}}"),
                        ));
                    }
                },
                _ => {}
            }
        }
        if out.dead_letter_routing_key.is_some() && out.dead_letter_exchange.is_none() {
            return Err(invalid(
                "x-dead-letter-routing-key",
                "Key x-dead-letter-exchange should be present",
            ));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn t(pairs: Vec<(&str, Value)>) -> Headers {
        let mut t = Headers::new();
        pairs.into_iter().for_each(|(k, v)| t.push(k, v));
        t
    }

    #[test]
    fn parses_known_arguments() {
        let args = t(vec![
            ("x-message-ttl", Value::I32(1000)),
            ("x-max-length", Value::I64(5)),
            (
                "x-overflow",
                Value::Text(Bytes::from_static(b"reject-publish")),
            ),
            ("x-max-priority", Value::U8(10)),
            (
                "x-dead-letter-exchange",
                Value::Text(Bytes::from_static(b"dlx")),
            ),
        ]);
        let a = QueueArgs::parse(&args, "q", "/").unwrap();
        assert_eq!(a.message_ttl, Some(Duration::from_secs(1)));
        assert_eq!(a.max_length, Some(5));
        assert_eq!(a.overflow, Overflow::RejectPublish);
        assert_eq!(a.max_priority, Some(10));
        assert_eq!(a.dead_letter_exchange.as_deref(), Some("dlx"));
    }

    #[test]
    fn rejects_quorum_and_bad_types() {
        let quorum = t(vec![(
            "x-queue-type",
            Value::Text(Bytes::from_static(b"quorum")),
        )]);
        assert!(matches!(
            QueueArgs::parse(&quorum, "q", "/"),
            Err(CoreError::InvalidArgument { .. })
        ));
        let bad = t(vec![(
            "x-message-ttl",
            Value::Text(Bytes::from_static(b"x")),
        )]);
        assert!(QueueArgs::parse(&bad, "q", "/").is_err());
        let neg = t(vec![("x-max-length", Value::I32(-1))]);
        assert!(QueueArgs::parse(&neg, "q", "/").is_err());
    }
}
