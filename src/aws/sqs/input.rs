//! Reading SQS request fields from the JSON input (which the Query protocol's form was turned into): strings,
//! integers that may arrive as numbers (JSON) or strings (Query), booleans, lists and maps, and the queue a
//! request names (`QueueUrl` in either URL form, or the request path).

use serde_json::{Map, Value};

use super::Request;
use crate::aws::error::AwsError;

/// A string field, if present.
pub fn opt_str<'a>(v: &'a Value, name: &str) -> Option<&'a str> {
    v.get(name).and_then(Value::as_str)
}

/// A required string field.
pub fn req_str<'a>(v: &'a Value, name: &str) -> Result<&'a str, AwsError> {
    opt_str(v, name).ok_or_else(|| AwsError::missing_parameter(name))
}

/// An integer field within `range`, if present (a number or a numeric string).
pub fn opt_int(
    v: &Value,
    name: &str,
    range: std::ops::RangeInclusive<i64>,
) -> Result<Option<i64>, AwsError> {
    let Some(field) = v.get(name).filter(|f| !f.is_null()) else {
        return Ok(None);
    };
    let n = match field {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    match n {
        Some(n) if range.contains(&n) => Ok(Some(n)),
        _ => Err(AwsError::invalid_parameter(&format!(
            "Value {} for parameter {name} is invalid. Reason: must be between {} and {}.",
            show(field),
            range.start(),
            range.end()
        ))),
    }
}

/// A list of strings, empty if absent.
pub fn str_list(v: &Value, name: &str) -> Vec<String> {
    v.get(name)
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// A map field, empty if absent.
pub fn map<'a>(v: &'a Value, name: &str) -> Option<&'a Map<String, Value>> {
    v.get(name).and_then(Value::as_object)
}

/// A list of objects (batch entries).
pub fn entries<'a>(v: &'a Value, name: &str) -> &'a [Value] {
    v.get(name)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The core queue a request addresses (see `Request::core_name`): its `QueueUrl` (`http://host/<account>/<name>` or the legacy
/// `http://host/queue/<name>`), else the request path when it is a queue URL's path.
pub fn queue_name(req: &Request<'_>) -> Result<String, AwsError> {
    let url = match opt_str(req.input(), "QueueUrl") {
        Some(url) => url.to_owned(),
        None if req.call.path.trim_matches('/').contains('/') => req.call.path.clone(),
        None => return Err(AwsError::missing_parameter("QueueUrl")),
    };
    let name = name_from_url(&url).ok_or_else(super::error::queue_does_not_exist)?;
    Ok(req.core_name(&name))
}

/// The last path segment of a queue URL.
pub fn name_from_url(url: &str) -> Option<String> {
    let path = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest.split_once('/').map_or("", |(_, p)| p));
    let name = path.trim_end_matches('/').rsplit('/').next()?;
    (!name.is_empty()).then(|| name.to_owned())
}

/// The region and queue name of an SQS queue ARN (`arn:aws:sqs:region:account:name`).
pub fn region_and_name_of_arn(arn: &str) -> Option<(&str, &str)> {
    let parts: Vec<&str> = arn.split(':').collect();
    match parts[..] {
        ["arn", _, "sqs", region, _, name] if !name.is_empty() && !region.is_empty() => {
            Some((region, name))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names_come_from_either_url_form() {
        assert_eq!(
            name_from_url("http://h:9324/123456789012/q1").as_deref(),
            Some("q1")
        );
        assert_eq!(name_from_url("http://h/queue/q2").as_deref(), Some("q2"));
        assert_eq!(name_from_url("/123456789012/q3").as_deref(), Some("q3"));
        assert_eq!(name_from_url("http://h/"), None);
        assert_eq!(
            region_and_name_of_arn("arn:aws:sqs:us-east-1:123456789012:dlq"),
            Some(("us-east-1", "dlq"))
        );
        assert_eq!(region_and_name_of_arn("dlq"), None);
    }

    #[test]
    fn integers_arrive_as_numbers_or_strings() {
        let v = serde_json::json!({"A": 5, "B": "7", "C": "x", "D": 99});
        assert_eq!(opt_int(&v, "A", 0..=10).ok(), Some(Some(5)));
        assert_eq!(opt_int(&v, "B", 0..=10).ok(), Some(Some(7)));
        assert!(opt_int(&v, "C", 0..=10).is_err());
        assert!(opt_int(&v, "D", 0..=10).is_err());
        assert_eq!(opt_int(&v, "E", 0..=10).ok(), Some(None));
    }
}
