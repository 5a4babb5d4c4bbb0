//! SQS queue attributes: their names, defaults and valid values (SQS API reference, SetQueueAttributes), how
//! they are kept in the core queue's attributes (a map of name to text under `attributes`, tags under `tags`,
//! timestamps), and their typed reading ([`QueueConfig`]) for the message actions.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use super::error::{invalid_attribute_name, invalid_attribute_value};
use super::input;
use crate::aws::error::AwsError;
use crate::core::QueueHandle;
use crate::core::message::{Headers, Value, now_ms};

const ATTRIBUTES: &str = "attributes";
const TAGS: &str = "tags";
const CREATED: &str = "created";
const MODIFIED: &str = "modified";
const PURGED: &str = "purged";
const MOVE_TASK: &str = "move-task";

/// Attributes a client may set (all but `FifoQueue`, which only CreateQueue takes).
const SETTABLE: &[&str] = &[
    "DelaySeconds",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "Policy",
    "ReceiveMessageWaitTimeSeconds",
    "VisibilityTimeout",
    "RedrivePolicy",
    "RedriveAllowPolicy",
    "KmsMasterKeyId",
    "KmsDataKeyReusePeriodSeconds",
    "SqsManagedSseEnabled",
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "FifoThroughputLimit",
];

/// Attributes computed on reading.
pub const COMPUTED: &[&str] = &[
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
    "CreatedTimestamp",
    "LastModifiedTimestamp",
    "QueueArn",
];

/// Attributes only FIFO queues have.
const FIFO_ONLY: &[&str] = &[
    "FifoQueue",
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "FifoThroughputLimit",
];

/// Whether `name` is an attribute a queue may have.
pub fn is_attribute(name: &str) -> bool {
    SETTABLE.contains(&name) || name == "FifoQueue"
}

/// A queue's attributes and tags as kept in the core.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stored {
    pub attributes: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
    pub created_ms: u64,
    pub modified_ms: u64,
    /// When the queue was last purged (ms since the epoch; 0: never): PurgeQueue's 60 s rule holds across a
    /// restart.
    pub purged_ms: u64,
    /// The message move task running from this queue, as `sqs::moves` records it (JSON), so that a restart
    /// resumes it.
    pub move_task: Option<String>,
}

impl Stored {
    /// A new queue's: the defaults, then what CreateQueue gave.
    pub fn new(
        fifo: bool,
        given: BTreeMap<String, String>,
        tags: BTreeMap<String, String>,
    ) -> Self {
        let mut attributes = defaults(fifo);
        attributes.extend(given);
        let now = now_ms();
        Self {
            attributes,
            tags,
            created_ms: now,
            modified_ms: now,
            purged_ms: 0,
            move_task: None,
        }
    }

    /// A core queue's, read from its attributes (FIFO when its name says so).
    pub fn of(queue: &QueueHandle) -> Self {
        Self::from_core(&queue.attributes(), queue.name.ends_with(".fifo"))
    }

    /// Read from the core queue's attributes (a queue made over AMQP has none: the defaults).
    pub fn from_core(h: &Headers, fifo: bool) -> Self {
        let text_map = |name: &str| -> BTreeMap<String, String> {
            match h.get(name) {
                Some(Value::Map(m)) => m
                    .iter()
                    .filter_map(|e| Some((e.name.clone(), e.value.as_str()?.to_owned())))
                    .collect(),
                _ => BTreeMap::new(),
            }
        };
        let time = |name: &str| {
            h.get(name)
                .and_then(Value::as_i64)
                .map_or(0, |t| t.max(0) as u64)
        };
        let mut attributes = defaults(fifo);
        attributes.extend(text_map(ATTRIBUTES));
        Self {
            attributes,
            tags: text_map(TAGS),
            created_ms: time(CREATED),
            modified_ms: time(MODIFIED),
            purged_ms: time(PURGED),
            move_task: h.get(MOVE_TASK).and_then(Value::as_str).map(str::to_owned),
        }
    }

    /// What the core keeps.
    pub fn to_core(&self) -> Headers {
        let text_map = |m: &BTreeMap<String, String>| {
            let mut h = Headers::with_capacity(m.len());
            for (k, v) in m {
                h.push(k.clone(), Value::text(v));
            }
            Value::Map(h)
        };
        let mut h = Headers::with_capacity(6);
        h.push(ATTRIBUTES, text_map(&self.attributes));
        h.push(TAGS, text_map(&self.tags));
        h.push(
            CREATED,
            Value::I64(i64::try_from(self.created_ms).unwrap_or(0)),
        );
        h.push(
            MODIFIED,
            Value::I64(i64::try_from(self.modified_ms).unwrap_or(0)),
        );
        if self.purged_ms != 0 {
            h.push(
                PURGED,
                Value::I64(i64::try_from(self.purged_ms).unwrap_or(0)),
            );
        }
        if let Some(task) = &self.move_task {
            h.push(MOVE_TASK, Value::text(task));
        }
        h
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.attributes.get(name).map(String::as_str)
    }

    /// The typed view the message actions read.
    pub fn config(&self) -> QueueConfig {
        let int = |name: &str, default: u64| {
            self.get(name)
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        QueueConfig {
            delay_secs: int("DelaySeconds", 0),
            max_size: int("MaximumMessageSize", 1_048_576) as usize,
            retention_secs: int("MessageRetentionPeriod", 345_600),
            wait_secs: int("ReceiveMessageWaitTimeSeconds", 0),
            visibility_secs: int("VisibilityTimeout", 30),
            redrive: self.get("RedrivePolicy").and_then(redrive_of),
            fifo: self.get("FifoQueue") == Some("true"),
            content_dedup: self.get("ContentBasedDeduplication") == Some("true"),
            dedup_per_group: self.get("DeduplicationScope") == Some("messageGroup"),
        }
    }
}

/// The typed attributes the message actions need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    pub delay_secs: u64,
    pub max_size: usize,
    pub retention_secs: u64,
    pub wait_secs: u64,
    pub visibility_secs: u64,
    /// Dead-letter queue ARN and maxReceiveCount.
    pub redrive: Option<(String, u32)>,
    pub fifo: bool,
    pub content_dedup: bool,
    pub dedup_per_group: bool,
}

fn defaults(fifo: bool) -> BTreeMap<String, String> {
    let mut m: BTreeMap<String, String> = [
        ("DelaySeconds", "0"),
        ("MaximumMessageSize", "1048576"),
        ("MessageRetentionPeriod", "345600"),
        ("ReceiveMessageWaitTimeSeconds", "0"),
        ("VisibilityTimeout", "30"),
        ("SqsManagedSseEnabled", "false"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    if fifo {
        for (k, v) in [
            ("FifoQueue", "true"),
            ("ContentBasedDeduplication", "false"),
            ("DeduplicationScope", "queue"),
            ("FifoThroughputLimit", "perQueue"),
        ] {
            m.insert(k.to_owned(), v.to_owned());
        }
    }
    m
}

/// `deadLetterTargetArn` (an SQS queue ARN) and `maxReceiveCount` of a RedrivePolicy.
fn redrive_of(policy: &str) -> Option<(String, u32)> {
    let v: Json = serde_json::from_str(policy).ok()?;
    let arn = v.get("deadLetterTargetArn")?.as_str()?;
    let max = match v.get("maxReceiveCount")? {
        Json::Number(n) => n.as_u64()?,
        Json::String(s) => s.parse().ok()?,
        _ => return None,
    };
    input::region_and_name_of_arn(arn)?;
    Some((arn.to_owned(), u32::try_from(max).ok()?))
}

/// Checks attributes a client gives (CreateQueue: `creating`, which also takes `FifoQueue`) and returns them
/// in their stored form.
pub fn validate(
    given: &serde_json::Map<String, Json>,
    fifo: bool,
    creating: bool,
) -> Result<BTreeMap<String, String>, AwsError> {
    let mut out = BTreeMap::new();
    for (name, value) in given {
        // Clients send names with stray spaces (moto's tests do); AWS takes them trimmed.
        let name = &name.trim().to_owned();
        let value = match value {
            Json::String(s) => s.clone(),
            Json::Null => String::new(),
            other => other.to_string(),
        };
        let known = SETTABLE.contains(&name.as_str()) || (creating && name == "FifoQueue");
        if !known {
            return Err(invalid_attribute_name(&format!(
                "Unknown Attribute {name}."
            )));
        }
        if FIFO_ONLY.contains(&name.as_str()) && !fifo {
            if name == "FifoQueue" {
                continue; // anything but "true" names a standard queue
            }
            return Err(invalid_attribute_name(&format!(
                "Unknown Attribute {name}."
            )));
        }
        out.insert(name.clone(), check_value(name, value)?);
    }
    Ok(out)
}

/// One attribute's value, checked (and normalised: `RedrivePolicy` numbers).
fn check_value(name: &str, value: String) -> Result<String, AwsError> {
    let range = match name {
        "DelaySeconds" => Some(0..=900),
        "MaximumMessageSize" => Some(1024..=1_048_576),
        // AWS's minimum is 60 s; shorter periods are taken (moto's tests use 1 s), and enforced as given.
        "MessageRetentionPeriod" => Some(1..=1_209_600),
        "ReceiveMessageWaitTimeSeconds" => Some(0..=20),
        "VisibilityTimeout" => Some(0..=43_200),
        "KmsDataKeyReusePeriodSeconds" => Some(60..=86_400),
        _ => None,
    };
    let invalid = || invalid_attribute_value(&format!("Invalid value for the parameter {name}."));
    if let Some(range) = range {
        let n: i64 = value.trim().parse().map_err(|_| invalid())?;
        return if range.contains(&n) {
            Ok(n.to_string())
        } else {
            Err(invalid())
        };
    }
    match name {
        "FifoQueue" | "ContentBasedDeduplication" | "SqsManagedSseEnabled" => {
            match value.to_ascii_lowercase().as_str() {
                v @ ("true" | "false") => Ok(v.to_owned()),
                _ => Err(invalid()),
            }
        }
        "DeduplicationScope" if matches!(value.as_str(), "queue" | "messageGroup") => Ok(value),
        "FifoThroughputLimit" if matches!(value.as_str(), "perQueue" | "perMessageGroupId") => {
            Ok(value)
        }
        "DeduplicationScope" | "FifoThroughputLimit" => Err(invalid()),
        "RedrivePolicy" => check_redrive(&value),
        "Policy" | "RedriveAllowPolicy" if !value.is_empty() => {
            serde_json::from_str::<Json>(&value)
                .map(|_| value)
                .map_err(|_| invalid())
        }
        _ => Ok(value),
    }
}

fn check_redrive(value: &str) -> Result<String, AwsError> {
    if value.is_empty() {
        return Ok(String::new());
    }
    let invalid = |why: &str| {
        invalid_attribute_value(&format!(
            "Value {value} for parameter RedrivePolicy is invalid. Reason: {why}"
        ))
    };
    let v: Json = serde_json::from_str(value)
        .map_err(|_| invalid("Redrive policy is not a valid JSON map."))?;
    if v.get("deadLetterTargetArn")
        .and_then(Json::as_str)
        .is_none()
    {
        return Err(invalid(
            "Redrive policy does not contain mandatory attribute: deadLetterTargetArn.",
        ));
    }
    match redrive_of(value) {
        Some((_, n)) if (1..=1000).contains(&n) => {}
        _ => {
            return Err(invalid(
                "Invalid value for maxReceiveCount: must be an integer from 1 to 1000.",
            ));
        }
    }
    // Kept as given (clients compare it with what they sent), but maxReceiveCount is a number, as SQS shows it.
    let mut v = v;
    match (v.get_mut("maxReceiveCount"), redrive_of(value)) {
        (Some(count @ Json::String(_)), Some((_, n))) => {
            *count = Json::from(n);
            Ok(v.to_string())
        }
        _ => Ok(value.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_attributes_round_trip_through_the_core() {
        let mut given = BTreeMap::new();
        given.insert("VisibilityTimeout".to_owned(), "60".to_owned());
        let mut tags = BTreeMap::new();
        tags.insert("team".to_owned(), "a".to_owned());
        let stored = Stored::new(true, given, tags);
        let back = Stored::from_core(&stored.to_core(), true);
        assert_eq!(back, stored);
        assert_eq!(back.config().visibility_secs, 60);
        assert!(back.config().fifo);
    }

    #[test]
    fn values_out_of_range_and_unknown_names_are_refused() {
        let given = serde_json::json!({"DelaySeconds": "901"});
        let err = validate(given.as_object().expect("map"), false, true).expect_err("range");
        assert_eq!(err.code, "InvalidAttributeValue");
        let given = serde_json::json!({"Colour": "red"});
        let err = validate(given.as_object().expect("map"), false, true).expect_err("name");
        assert_eq!(err.code, "InvalidAttributeName");
        let given = serde_json::json!({"ContentBasedDeduplication": "true"});
        assert!(validate(given.as_object().expect("map"), false, true).is_err());
        assert!(validate(given.as_object().expect("map"), true, true).is_ok());
    }

    #[test]
    fn a_redrive_policy_names_its_queue_and_count() {
        let policy = r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:123456789012:dlq","maxReceiveCount":"3"}"#;
        let stored = check_value("RedrivePolicy", policy.to_owned()).expect("valid");
        assert_eq!(
            redrive_of(&stored),
            Some(("arn:aws:sqs:us-east-1:123456789012:dlq".to_owned(), 3))
        );
        assert!(stored.contains("\"maxReceiveCount\":3"), "{stored}");
        let numeric = r#"{"deadLetterTargetArn": "arn:aws:sqs:us-east-1:123456789012:dlq", "maxReceiveCount": 3}"#;
        let kept = check_value("RedrivePolicy", numeric.to_owned()).expect("valid");
        assert_eq!(kept, numeric, "kept as given");
    }
}
