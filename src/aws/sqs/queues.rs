//! The SQS queue actions: CreateQueue (idempotent with the same attributes), GetQueueUrl, ListQueues (prefix,
//! pagination), DeleteQueue, Get/SetQueueAttributes, PurgeQueue (once per 60 s), tags, permissions (kept in
//! the queue's Policy) and ListDeadLetterSourceQueues.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Map, Value, json};

use super::Request;
use super::attributes::{self, COMPUTED, Stored};
use super::error::{self as sqs_error, from_core, invalid_attribute_name};
use super::input::{self, map, opt_int, opt_str, req_str, str_list};
use crate::aws::error::AwsError;
use crate::core::message::now_ms;
use crate::core::{Durability, QueueHandle, QueueOptions, QueueStats};

/// How long after a purge another is refused.
const PURGE_INTERVAL: Duration = Duration::from_secs(60);

/// A queue and its SQS attributes.
pub async fn load(
    req: &Request<'_>,
    name: &str,
) -> Result<(QueueHandle, QueueStats, Stored), AwsError> {
    let (q, stats) = req
        .session()?
        .queue_exists(name)
        .await
        .map_err(|e| from_core(&e))?;
    let stored = Stored::of(&q);
    Ok((q, stats, stored))
}

/// A queue's SQS attributes without its counts.
pub fn load_quick(req: &Request<'_>, name: &str) -> Result<(QueueHandle, Stored), AwsError> {
    let q = req
        .session()?
        .usable_queue(name)
        .map_err(|e| from_core(&e))?;
    let stored = Stored::of(&q);
    Ok((q, stored))
}

fn save(req: &Request<'_>, name: &str, stored: &Stored) -> Result<(), AwsError> {
    req.session()?
        .set_queue_attributes(name, stored.to_core())
        .map_err(|e| from_core(&e))
}

fn check_name(name: &str, fifo: bool) -> Result<(), AwsError> {
    let base = name.strip_suffix(".fifo").unwrap_or(name);
    let valid = !base.is_empty()
        && name.len() <= 80
        && base
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid || fifo != name.ends_with(".fifo") {
        let why = if fifo || name.ends_with(".fifo") {
            "The name of a FIFO queue can only include alphanumeric characters, hyphens, or underscores, must \
             end with .fifo suffix and be 1 to 80 in length."
        } else {
            "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length"
        };
        return Err(AwsError::invalid_parameter(why));
    }
    Ok(())
}

/// A RedrivePolicy must name a dead-letter queue of the source's type (FIFO or standard).
fn check_dead_letter_type(given: &BTreeMap<String, String>, fifo: bool) -> Result<(), AwsError> {
    let Some(policy) = given.get("RedrivePolicy").filter(|p| !p.is_empty()) else {
        return Ok(());
    };
    let stored = Stored {
        attributes: [("RedrivePolicy".to_owned(), policy.clone())].into(),
        ..Stored::default()
    };
    match stored.config().redrive {
        Some((dlq, _)) if dlq.ends_with(".fifo") != fifo => {
            Err(AwsError::invalid_parameter(&format!(
                "Value {policy} for parameter RedrivePolicy is invalid. Reason: Dead-letter target must be the same type of queue as the source."
            )))
        }
        _ => Ok(()),
    }
}

fn text_map(m: Option<&Map<String, Value>>) -> BTreeMap<String, String> {
    m.map(|m| {
        m.iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                )
            })
            .collect()
    })
    .unwrap_or_default()
}

pub async fn create(req: &Request<'_>) -> Result<Value, AwsError> {
    let name = req_str(req.input(), "QueueName")?;
    let given = map(req.input(), "Attributes").cloned().unwrap_or_default();
    let fifo = given
        .get("FifoQueue")
        .and_then(Value::as_str)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    check_name(name, fifo)?;
    let given = attributes::validate(&given, fifo, true)?;
    check_dead_letter_type(&given, fifo)?;
    let tags = text_map(map(req.input(), "tags").or_else(|| map(req.input(), "Tags")));
    let session = req.session()?;
    let core = req.core_name(name);
    if let Ok((_, _, existing)) = load(req, &core).await {
        let same = given
            .iter()
            .all(|(k, v)| existing.get(k) == Some(v.as_str()));
        return if same {
            Ok(json!({"QueueUrl": req.queue_url(&core)}))
        } else {
            Err(sqs_error::queue_name_exists(name))
        };
    }
    let options = QueueOptions {
        durability: Durability::Durable,
        ..QueueOptions::default()
    };
    session
        .declare_queue(&core, options)
        .await
        .map_err(|e| from_core(&e))?;
    save(req, &core, &Stored::new(fifo, given, tags))?;
    Ok(json!({"QueueUrl": req.queue_url(&core)}))
}

pub async fn get_url(req: &Request<'_>) -> Result<Value, AwsError> {
    let core = req.core_name(req_str(req.input(), "QueueName")?);
    load(req, &core).await?;
    Ok(json!({"QueueUrl": req.queue_url(&core)}))
}

/// The core queues SQS can address in this request's region (valid SQS names), sorted.
fn sqs_queue_names(req: &Request<'_>) -> Result<Vec<String>, AwsError> {
    let mut names = req.session()?.queue_names();
    names.retain(|core| {
        req.in_region(core)
            .is_some_and(|n| check_name(n, n.ends_with(".fifo")).is_ok())
    });
    names.sort();
    Ok(names)
}

/// One page of `names` after `NextToken`, and the token of the next page when `MaxResults` asked for pages.
fn page(req: &Request<'_>, names: Vec<String>) -> Result<(Vec<String>, Option<String>), AwsError> {
    let max = opt_int(req.input(), "MaxResults", 1..=1000)?;
    let after = match opt_str(req.input(), "NextToken") {
        Some(token) => {
            let bytes = B64
                .decode(token)
                .map_err(|_| AwsError::invalid_parameter("Invalid NextToken value."))?;
            Some(
                String::from_utf8(bytes)
                    .map_err(|_| AwsError::invalid_parameter("Invalid NextToken value."))?,
            )
        }
        None => None,
    };
    let mut rest: Vec<String> = names
        .into_iter()
        .filter(|n| after.as_ref().is_none_or(|a| n > a))
        .collect();
    let limit = max.map_or(1000, |m| m as usize);
    let more = rest.len() > limit;
    rest.truncate(limit);
    let token = (more && max.is_some())
        .then(|| rest.last().map(|last| B64.encode(last)))
        .flatten();
    Ok((rest, token))
}

pub fn list(req: &Request<'_>) -> Result<Value, AwsError> {
    let prefix = opt_str(req.input(), "QueueNamePrefix").unwrap_or("");
    let mut names = sqs_queue_names(req)?;
    names.retain(|core| req.in_region(core).is_some_and(|n| n.starts_with(prefix)));
    let (names, token) = page(req, names)?;
    let mut out = Map::new();
    if !names.is_empty() {
        let urls: Vec<Value> = names
            .iter()
            .map(|n| Value::String(req.queue_url(n)))
            .collect();
        out.insert("QueueUrls".into(), Value::Array(urls));
    }
    if let Some(token) = token {
        out.insert("NextToken".into(), Value::String(token));
    }
    Ok(Value::Object(out))
}

pub async fn delete(req: &Request<'_>) -> Result<Value, AwsError> {
    let name = input::queue_name(req)?;
    load(req, &name).await?;
    req.session()?
        .delete_queue(&name, false, false)
        .await
        .map_err(|e| from_core(&e))?;
    req.sqs.fifo.forget(&name);
    req.sqs.attempts.forget_queue(&name);
    req.sqs.moves.forget_source(&name);
    Ok(json!({}))
}

pub async fn get_attributes(req: &Request<'_>) -> Result<Value, AwsError> {
    let name = input::queue_name(req)?;
    let (_, stats, stored) = load(req, &name).await?;
    let wanted = str_list(req.input(), "AttributeNames");
    let all = wanted.iter().any(|n| n == "All");
    let mut out = Map::new();
    for (k, v) in &stored.attributes {
        if (all || wanted.contains(k)) && !v.is_empty() {
            out.insert(k.clone(), Value::String(v.clone()));
        }
    }
    for k in COMPUTED {
        if all || wanted.iter().any(|w| w == k) {
            out.insert(
                (*k).to_owned(),
                Value::String(computed(req, &name, k, &stats, &stored)),
            );
        }
    }
    for w in &wanted {
        let known = w == "All" || COMPUTED.contains(&w.as_str()) || attributes::is_attribute(w);
        if !known {
            return Err(invalid_attribute_name(&format!("Unknown Attribute {w}.")));
        }
    }
    if out.is_empty() {
        return Ok(json!({}));
    }
    Ok(json!({"Attributes": out}))
}

fn computed(
    req: &Request<'_>,
    name: &str,
    attribute: &str,
    stats: &QueueStats,
    stored: &Stored,
) -> String {
    match attribute {
        "ApproximateNumberOfMessages" => stats.messages.to_string(),
        "ApproximateNumberOfMessagesNotVisible" => stats.unacked.to_string(),
        "ApproximateNumberOfMessagesDelayed" => stats.delayed.to_string(),
        "CreatedTimestamp" => (stored.created_ms / 1000).to_string(),
        "LastModifiedTimestamp" => (stored.modified_ms / 1000).to_string(),
        _ => req.queue_arn(name),
    }
}

pub fn set_attributes(req: &Request<'_>) -> Result<Value, AwsError> {
    let name = input::queue_name(req)?;
    let _edit = req.sqs.edit_lock();
    let (_, mut stored) = load_quick(req, &name)?;
    let retention_before = stored.config().retention_secs;
    let given = map(req.input(), "Attributes").cloned().unwrap_or_default();
    let given = attributes::validate(&given, name.ends_with(".fifo"), false)?;
    check_dead_letter_type(&given, name.ends_with(".fifo"))?;
    for (k, v) in given {
        if v.is_empty()
            && matches!(
                k.as_str(),
                "RedrivePolicy" | "Policy" | "RedriveAllowPolicy"
            )
        {
            stored.attributes.remove(&k);
        } else {
            stored.attributes.insert(k, v);
        }
    }
    stored.modified_ms = now_ms();
    save(req, &name, &stored)?;
    // The messages already queued take a new retention: each message's deadline is its send plus the
    // retention, so the ones sent before now (deadline before now + the old retention) move by the change.
    let retention = stored.config().retention_secs;
    if retention != retention_before {
        let ms = |secs: u64| i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        let before = now_ms().saturating_add(retention_before.saturating_mul(1000));
        let shifted = req.session()?.shift_queue_deadlines(
            &name,
            before,
            ms(retention) - ms(retention_before),
        );
        shifted.map_err(|e| from_core(&e))?;
    }
    Ok(json!({}))
}

pub async fn purge(req: &Request<'_>) -> Result<Value, AwsError> {
    let name = input::queue_name(req)?;
    {
        // The time is kept with the queue's attributes (journaled); one edit at a time decides.
        let _edit = req.sqs.edit_lock();
        let (_, mut stored) = load_quick(req, &name)?;
        let now = now_ms();
        if stored.purged_ms != 0
            && now.saturating_sub(stored.purged_ms) < PURGE_INTERVAL.as_millis() as u64
        {
            return Err(sqs_error::purge_in_progress(&name));
        }
        stored.purged_ms = now;
        save(req, &name, &stored)?;
    }
    // SQS purges messages in flight too (the core's purge, like AMQP's, takes ready ones).
    let session = req.session()?;
    let q = session.usable_queue(&name).map_err(|e| from_core(&e))?;
    session
        .purge_queue(&name)
        .await
        .map_err(|e| from_core(&e))?;
    q.purge_received().await.map_err(|e| from_core(&e))?;
    Ok(json!({}))
}

pub fn tag(req: &Request<'_>) -> Result<Value, AwsError> {
    let name = input::queue_name(req)?;
    let _edit = req.sqs.edit_lock();
    let (_, mut stored) = load_quick(req, &name)?;
    let tags = text_map(map(req.input(), "Tags"));
    if tags.is_empty() {
        return Err(AwsError::missing_parameter("Tags"));
    }
    stored.tags.extend(tags);
    if stored.tags.len() > 50 {
        return Err(AwsError::invalid_parameter(&format!(
            "Too many tags added for queue {name}."
        )));
    }
    save(req, &name, &stored)?;
    Ok(json!({}))
}

pub fn untag(req: &Request<'_>) -> Result<Value, AwsError> {
    let name = input::queue_name(req)?;
    let _edit = req.sqs.edit_lock();
    let (_, mut stored) = load_quick(req, &name)?;
    let keys = str_list(req.input(), "TagKeys");
    if keys.is_empty() || keys.iter().any(|k| k.is_empty() || k.len() > 128) {
        return Err(AwsError::invalid_parameter(
            "Tag keys must be between 1 and 128 characters in length.",
        ));
    }
    for k in keys {
        stored.tags.remove(&k);
    }
    save(req, &name, &stored)?;
    Ok(json!({}))
}

pub fn list_tags(req: &Request<'_>) -> Result<Value, AwsError> {
    let name = input::queue_name(req)?;
    let (_, stored) = load_quick(req, &name)?;
    if stored.tags.is_empty() {
        return Ok(json!({}));
    }
    Ok(json!({"Tags": stored.tags}))
}

pub fn add_permission(req: &Request<'_>) -> Result<Value, AwsError> {
    let name = input::queue_name(req)?;
    let _edit = req.sqs.edit_lock();
    let (_, mut stored) = load_quick(req, &name)?;
    let label = req_str(req.input(), "Label")?;
    let accounts = str_list(req.input(), "AWSAccountIds");
    let actions = str_list(req.input(), "Actions");
    check_permission(&accounts, &actions)?;
    let mut statements = statements_of(&stored);
    if statements
        .iter()
        .any(|s| s.get("Sid").and_then(Value::as_str) == Some(label))
    {
        return Err(AwsError::invalid_parameter(&format!(
            "Value {label} for parameter Label is invalid. Reason: Already exists."
        )));
    }
    let principals: Vec<String> = accounts
        .iter()
        .map(|a| format!("arn:aws:iam::{a}:root"))
        .collect();
    let actions: Vec<String> = actions.iter().map(|a| format!("SQS:{a}")).collect();
    statements.push(json!({
        "Sid": label,
        "Effect": "Allow",
        "Principal": {"AWS": one_or_many(principals)},
        "Action": one_or_many(actions),
        "Resource": req.queue_arn(&name),
    }));
    let policy = policy_with(&req.queue_arn(&name), statements);
    stored
        .attributes
        .insert("Policy".into(), policy.to_string());
    save(req, &name, &stored)?;
    Ok(json!({}))
}

pub fn remove_permission(req: &Request<'_>) -> Result<Value, AwsError> {
    let name = input::queue_name(req)?;
    let _edit = req.sqs.edit_lock();
    let (_, mut stored) = load_quick(req, &name)?;
    let label = req_str(req.input(), "Label")?;
    let mut statements = statements_of(&stored);
    let before = statements.len();
    statements.retain(|s| s.get("Sid").and_then(Value::as_str) != Some(label));
    if statements.len() == before {
        return Err(AwsError::invalid_parameter(&format!(
            "Value {label} for parameter Label is invalid. Reason: can't find label on existing policy."
        )));
    }
    if statements.is_empty() {
        stored.attributes.remove("Policy");
    } else {
        let policy = policy_with(&req.queue_arn(&name), statements);
        stored
            .attributes
            .insert("Policy".into(), policy.to_string());
    }
    save(req, &name, &stored)?;
    Ok(json!({}))
}

/// A single principal or action as a string, several as a list (as SQS shows a policy).
fn one_or_many(v: Vec<String>) -> Value {
    match <[String; 1]>::try_from(v) {
        Ok([one]) => Value::String(one),
        Err(many) => json!(many),
    }
}

/// AddPermission's accounts and actions, checked as SQS does.
fn check_permission(accounts: &[String], actions: &[String]) -> Result<(), AwsError> {
    const OWNER_ONLY: &[&str] = &[
        "AddPermission",
        "RemovePermission",
        "CreateQueue",
        "DeleteQueue",
        "SetQueueAttributes",
        "TagQueue",
        "UntagQueue",
    ];
    if actions.is_empty() {
        return Err(AwsError::missing_parameter("Actions"));
    }
    if accounts.is_empty() {
        return Err(AwsError::invalid_parameter(
            "Value [] for parameter PrincipalId is invalid. Reason: Unable to verify.",
        ));
    }
    if actions.len() > 7 {
        return Err(sqs_error::over_limit(&format!(
            "{} Actions were found, maximum allowed is 7.",
            actions.len()
        )));
    }
    if let Some(a) = actions.iter().find(|a| OWNER_ONLY.contains(&a.as_str())) {
        return Err(AwsError::invalid_parameter(&format!(
            "Value SQS:{a} for parameter ActionName is invalid. Reason: Only the queue owner is allowed to invoke this action."
        )));
    }
    Ok(())
}

/// The statements of the queue's Policy document.
fn statements_of(stored: &Stored) -> Vec<Value> {
    stored
        .get("Policy")
        .and_then(|p| serde_json::from_str::<Value>(p).ok())
        .and_then(|p| p.get("Statement").and_then(Value::as_array).cloned())
        .unwrap_or_default()
}

/// A Policy document with `statements`.
fn policy_with(arn: &str, statements: Vec<Value>) -> Value {
    json!({"Version": "2012-10-17", "Id": format!("{arn}/SQSDefaultPolicy"), "Statement": statements})
}

pub fn dead_letter_sources(req: &Request<'_>) -> Result<Value, AwsError> {
    let name = input::queue_name(req)?;
    load_quick(req, &name)?;
    let mut sources = Vec::new();
    for other in sqs_queue_names(req)? {
        let Ok((_, stored)) = load_quick(req, &other) else {
            continue;
        };
        let dlq = stored
            .config()
            .redrive
            .and_then(|(arn, _)| req.core_of_arn(&arn));
        if dlq.as_deref() == Some(name.as_str()) {
            sources.push(other);
        }
    }
    let (sources, token) = page(req, sources)?;
    let urls: Vec<Value> = sources
        .iter()
        .map(|n| Value::String(req.queue_url(n)))
        .collect();
    let mut out = json!({"queueUrls": urls});
    if let (Some(token), Some(obj)) = (token, out.as_object_mut()) {
        obj.insert("NextToken".into(), Value::String(token));
    }
    Ok(out)
}
