//! The SQS message actions: SendMessage(Batch), ReceiveMessage, DeleteMessage(Batch) and
//! ChangeMessageVisibility(Batch). A send publishes a persistent message to the default exchange with the
//! queue's name and answers once the core confirms it (journaled and synced); a receive is the core's leased
//! receive (`Session::receive`), after which messages past their retention are deleted, messages received more
//! than the RedrivePolicy's maxReceiveCount move to the dead-letter queue. A delayed send (DelaySeconds) sets the
//! message's delivery time (`Annotations::deliver_at`): the queue holds it aside until then, from every
//! consumer of every protocol. Batch entries fail one by one.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::Request;
use super::attempts::{self, Attempt};
use super::attributes::{QueueConfig, Stored};
use super::convert::{
    self, AttrValue, Attribute, DEDUP_ID, GROUP_ID, SENDER, SEQUENCE, TRACE, header_text, md5_hex,
    md5_of_attributes,
};
use super::error::{self as sqs_error, from_core};
use super::fifo;
use super::input::{self, entries, opt_int, opt_str, req_str, str_list};
use super::queues::load_quick;
use super::receipt::Receipt;
use crate::aws::error::AwsError;
use crate::core::message::{
    Expiry, Headers, Message, Protocol, TextProperties, Value as HValue, now_ms,
};
use crate::core::{
    Broker, Outcome, Publisher, Receipt as CoreReceipt, ReceiveRequest, Received, Session, Settle,
};

/// At most this many entries in a batch.
const MAX_BATCH: usize = 10;
/// At most this many bytes of bodies and attributes in one SendMessageBatch.
const MAX_BATCH_BYTES: usize = 1_048_576;

/// A FIFO send's deduplication key, and the earlier send's message id and sequence number when it is a
/// duplicate.
type Dedup = (Option<String>, Option<(String, String)>);

/// A send, checked and turned into a core message, with what its answer says.
struct Prepared {
    message: Message,
    answer: Map<String, Value>,
    /// The FIFO deduplication key, and the earlier answer's message id when it is a duplicate.
    dedup: Option<String>,
    duplicate: Option<(String, String)>,
}

pub async fn send(req: &Request<'_>) -> Result<Value, AwsError> {
    let name = input::queue_name(req)?;
    let (q, stored) = load_quick(req, &name)?;
    let cfg = stored.config();
    restore_window(req, &q, &name, &cfg).await?;
    let prepared = prepare(req, &name, &cfg, req.input())?;
    let mut results = publish_all(req, &name, vec![prepared]).await?;
    results
        .pop()
        .unwrap_or_else(|| Err(AwsError::internal("no answer for the message")))
        .map(Value::Object)
}

pub async fn send_batch(req: &Request<'_>) -> Result<Value, AwsError> {
    let name = input::queue_name(req)?;
    let (q, stored) = load_quick(req, &name)?;
    let cfg = stored.config();
    restore_window(req, &q, &name, &cfg).await?;
    let list = batch_entries(req, "SendMessageBatchRequestEntry")?;
    check_batch_size(list)?;
    if cfg.fifo {
        check_fifo_batch(&cfg, list)?;
    }
    let mut ids = Vec::new();
    let mut ready = Vec::new();
    let mut failed = Vec::new();
    for entry in list {
        let id = req_str(entry, "Id")?.to_owned();
        match prepare(req, &name, &cfg, entry) {
            Ok(p) => {
                ids.push(id);
                ready.push(p);
            }
            Err(e) => failed.push(failure(&id, &e)),
        }
    }
    let results = publish_all(req, &name, ready).await?;
    let mut successful = Vec::new();
    for (id, result) in ids.into_iter().zip(results) {
        match result {
            Ok(mut answer) => {
                answer.insert("Id".into(), Value::String(id));
                successful.push(Value::Object(answer));
            }
            Err(e) => failed.push(failure(&id, &e)),
        }
    }
    Ok(batch_answer(successful, failed))
}

/// On a FIFO queue's first send in this run, rebuilds its deduplication window from the sends its messages
/// record: a send retried across a broker restart is still answered as a duplicate. The messages sent within
/// the window are the ones whose retention deadline falls within the window's length of the latest possible
/// (so only they are read back); a queue whose retention changed since reads a few more or fewer.
async fn restore_window(
    req: &Request<'_>,
    q: &crate::core::QueueHandle,
    name: &str,
    cfg: &QueueConfig,
) -> Result<(), AwsError> {
    if !cfg.fifo || !req.sqs.fifo.needs_restore(name) {
        return Ok(());
    }
    // One rebuild at a time: a send that comes meanwhile waits for it rather than scanning again.
    let _one = req.sqs.restoring.lock().await;
    if !req.sqs.fifo.needs_restore(name) {
        return Ok(());
    }
    let window_ms = fifo::DEDUP_WINDOW.as_millis() as u64;
    let since = now_ms().saturating_sub(window_ms);
    let after = since.saturating_add(cfg.retention_secs.saturating_mul(1000));
    let messages = q
        .recent(after, fifo::MAX_WINDOW)
        .await
        .map_err(|e| from_core(&e))?;
    let sends = messages
        .iter()
        .filter_map(|m| {
            let h = &m.headers;
            let dedup = header_text(h, DEDUP_ID)?;
            let key = dedup_key(cfg, header_text(h, GROUP_ID)?, dedup);
            let id = m.properties.text.as_ref()?.message_id.clone()?;
            let sequence = header_text(h, SEQUENCE).unwrap_or_default().to_owned();
            Some((key, id, sequence, m.properties.timestamp_ms?))
        })
        .collect();
    req.sqs.fifo.restore(name, sends);
    Ok(())
}

/// `{"Successful": [...], "Failed": [...]}` (an empty list is left out of the JSON, as SQS does).
fn batch_answer(successful: Vec<Value>, failed: Vec<Value>) -> Value {
    let mut out = Map::new();
    out.insert("Successful".into(), Value::Array(successful));
    if !failed.is_empty() {
        out.insert("Failed".into(), Value::Array(failed));
    }
    Value::Object(out)
}

fn failure(id: &str, e: &AwsError) -> Value {
    json!({"Id": id, "SenderFault": e.sender, "Code": e.code, "Message": e.message})
}

/// The bodies and attributes of a SendMessageBatch are at most [`MAX_BATCH_BYTES`] together.
fn check_batch_size(list: &[Value]) -> Result<(), AwsError> {
    let mut total = 0;
    for e in list {
        total += opt_str(e, "MessageBody").map_or(0, str::len);
        let attrs =
            convert::parse_attributes(input::map(e, "MessageAttributes")).unwrap_or_default();
        total += attrs.iter().map(|(n, a)| a.size(n)).sum::<usize>();
    }
    if total > MAX_BATCH_BYTES {
        return Err(sqs_error::batch_too_long(MAX_BATCH_BYTES, total));
    }
    Ok(())
}

/// Every entry of a FIFO batch names its group and, unless the queue deduplicates by content, its
/// deduplication id: otherwise the whole batch is refused (as SQS does).
fn check_fifo_batch(cfg: &QueueConfig, list: &[Value]) -> Result<(), AwsError> {
    for e in list {
        if opt_str(e, "MessageGroupId").is_none() {
            return Err(AwsError::missing_parameter("MessageGroupId"));
        }
        if opt_str(e, "MessageDeduplicationId").is_none() && !cfg.content_dedup {
            return Err(no_dedup_id());
        }
    }
    Ok(())
}

fn no_dedup_id() -> AwsError {
    AwsError::invalid_parameter(
        "The queue should either have ContentBasedDeduplication enabled or MessageDeduplicationId provided explicitly",
    )
}

/// A batch's entries, checked as a whole: 1 to 10, distinct and well-formed ids. `entry`: the entry shape's
/// name, for the error of an empty batch.
fn batch_entries<'a>(req: &'a Request<'_>, entry: &str) -> Result<&'a [Value], AwsError> {
    let list = entries(req.input(), "Entries");
    if list.is_empty() {
        return Err(sqs_error::empty_batch(entry));
    }
    if list.len() > MAX_BATCH {
        return Err(sqs_error::too_many_entries(list.len()));
    }
    let mut seen = HashSet::new();
    for e in list {
        let id = req_str(e, "Id")?;
        let valid = !id.is_empty()
            && id.len() <= 80
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return Err(sqs_error::invalid_batch_entry_id());
        }
        if !seen.insert(id) {
            return Err(sqs_error::batch_ids_not_distinct(id));
        }
    }
    Ok(list)
}

/// Checks one send and builds its core message.
fn prepare(
    req: &Request<'_>,
    queue: &str,
    cfg: &QueueConfig,
    entry: &Value,
) -> Result<Prepared, AwsError> {
    let body = req_str(entry, "MessageBody")?;
    if body.is_empty() {
        return Err(AwsError::missing_parameter("MessageBody"));
    }
    if !convert::valid_body(body) {
        return Err(sqs_error::invalid_message_contents(
            "Invalid characters found. Valid unicode characters are #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to \
             #xFFFD | #x10000 to #x10FFFF",
        ));
    }
    let attrs = convert::parse_attributes(input::map(entry, "MessageAttributes"))?;
    let size = body.len() + attrs.iter().map(|(n, a)| a.size(n)).sum::<usize>();
    if size > cfg.max_size {
        return Err(AwsError::invalid_parameter(&format!(
            "One or more parameters are invalid. Reason: Message must be shorter than {} bytes.",
            cfg.max_size
        )));
    }
    let delay = delay_of(cfg, entry)?;
    let trace = system_trace(entry)?;
    let message_id = crate::aws::uuid_v4();
    let mut answer = Map::new();
    answer.insert(
        "MD5OfMessageBody".into(),
        Value::String(md5_hex(body.as_bytes())),
    );
    if !attrs.is_empty() {
        answer.insert(
            "MD5OfMessageAttributes".into(),
            Value::String(md5_of_attributes(&attrs)),
        );
    }
    if let Some(trace) = &trace {
        let sys = vec![("AWSTraceHeader".to_owned(), trace.clone())];
        answer.insert(
            "MD5OfMessageSystemAttributes".into(),
            Value::String(md5_of_attributes(&sys)),
        );
    }
    answer.insert("MessageId".into(), Value::String(message_id.clone()));
    let mut headers = Headers::with_capacity(attrs.len() + 4);
    convert::to_headers(&attrs, &mut headers);
    if let Some(Attribute {
        value: AttrValue::Text(t),
        ..
    }) = &trace
    {
        headers.push(TRACE, HValue::text(t));
    }
    let sender = req
        .call
        .signer
        .as_ref()
        .map_or("AIDAFERRYMQ", |s| s.access_key.as_str());
    headers.push(SENDER, HValue::text(sender));
    let (dedup, duplicate) = fifo_fields(req, queue, cfg, entry, body, &mut headers, &mut answer)?;
    let mut message = Message::new("", queue, Bytes::copy_from_slice(body.as_bytes()));
    let now = now_ms();
    message.properties.durable = true;
    message.properties.timestamp_ms = Some(now);
    // The retention as the message's deadline: the queue drops it when it is due, read or not.
    message.properties.expiry = Some(retention_from(now, cfg.retention_secs));
    message.properties.set_text(TextProperties {
        message_id: Some(message_id),
        ..TextProperties::default()
    });
    message.headers = headers;
    message.annotations.origin = Protocol::Sqs;
    if delay > 0 {
        message.annotations.deliver_at = std::num::NonZeroU64::new(now + delay * 1000);
    }
    Ok(Prepared {
        message,
        answer,
        dedup,
        duplicate,
    })
}

/// The deadline a queue's MessageRetentionPeriod gives a message enqueued at `since` (ms since the epoch).
fn retention_from(since: u64, retention_secs: u64) -> Expiry {
    Expiry::after(since, retention_secs.saturating_mul(1000))
}

/// A send's delay: its DelaySeconds (0 to 900; none on FIFO queues), else the queue's.
fn delay_of(cfg: &QueueConfig, entry: &Value) -> Result<u64, AwsError> {
    let given = match entry.get("DelaySeconds") {
        None | Some(Value::Null) => return Ok(cfg.delay_secs),
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        Some(_) => None,
    };
    let shown = entry
        .get("DelaySeconds")
        .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
        .unwrap_or_default();
    let invalid = |why: &str| {
        AwsError::invalid_parameter(&format!(
            "Value {shown} for parameter DelaySeconds is invalid. Reason: {why}"
        ))
    };
    match given {
        Some(d) if cfg.fifo && d != 0 => Err(invalid(
            "The request include parameter that is not valid for this queue type.",
        )),
        Some(d) if (0..=900).contains(&d) => Ok(d as u64),
        _ => Err(invalid("DelaySeconds must be >= 0 and <= 900.")),
    }
}

/// The AWSTraceHeader system attribute, if given.
fn system_trace(entry: &Value) -> Result<Option<Attribute>, AwsError> {
    let Some(sys) = input::map(entry, "MessageSystemAttributes") else {
        return Ok(None);
    };
    for name in sys.keys() {
        if name != "AWSTraceHeader" {
            return Err(AwsError::invalid_parameter(&format!(
                "Message system attribute name '{name}' is invalid."
            )));
        }
    }
    let parsed = convert::parse_attributes(Some(sys))?;
    Ok(parsed.into_iter().next().map(|(_, a)| a))
}

/// FIFO fields: MessageGroupId (required), the deduplication key (id or body hash), the sequence number.
/// Standard queues take a MessageGroupId as a plain field (fair queues) and refuse a deduplication id.
fn fifo_fields(
    req: &Request<'_>,
    queue: &str,
    cfg: &QueueConfig,
    entry: &Value,
    body: &str,
    headers: &mut Headers,
    answer: &mut Map<String, Value>,
) -> Result<Dedup, AwsError> {
    let group = opt_str(entry, "MessageGroupId");
    let dedup_id = opt_str(entry, "MessageDeduplicationId");
    if !cfg.fifo {
        // A deduplication id means nothing to a standard queue; it is kept, not acted on.
        if let Some(dedup) = dedup_id {
            headers.push(DEDUP_ID, HValue::text(dedup));
        }
        if let Some(group) = group {
            headers.push(GROUP_ID, HValue::text(group));
        }
        return Ok((None, None));
    }
    let group = group.ok_or_else(|| AwsError::missing_parameter("MessageGroupId"))?;
    let dedup = match dedup_id {
        Some(id) => id.to_owned(),
        None if cfg.content_dedup => hex::encode(Sha256::digest(body.as_bytes())),
        None => return Err(no_dedup_id()),
    };
    let key = dedup_key(cfg, group, &dedup);
    headers.push(GROUP_ID, HValue::text(group));
    headers.push(DEDUP_ID, HValue::text(&dedup));
    if let Some(sent) = req.sqs.fifo.seen(queue, &key) {
        answer.insert(
            "SequenceNumber".into(),
            Value::String(sent.sequence.clone()),
        );
        return Ok((Some(key), Some((sent.message_id, sent.sequence))));
    }
    let sequence = req.sqs.fifo.next_sequence(queue);
    headers.push(SEQUENCE, HValue::text(&sequence));
    answer.insert("SequenceNumber".into(), Value::String(sequence));
    Ok((Some(key), None))
}

/// The deduplication window's key of a send: its deduplication id, within its group when the queue's
/// DeduplicationScope is `messageGroup`.
fn dedup_key(cfg: &QueueConfig, group: &str, dedup: &str) -> String {
    if cfg.dedup_per_group {
        format!("{group}\n{dedup}")
    } else {
        dedup.to_owned()
    }
}

/// Publishes the prepared sends in order and waits for each to be confirmed (synced); duplicates answer the
/// first send's message id without being published.
async fn publish_all(
    req: &Request<'_>,
    queue: &str,
    prepared: Vec<Prepared>,
) -> Result<Vec<Result<Map<String, Value>, AwsError>>, AwsError> {
    let mut publisher = Publisher::new(req.session()?.clone());
    let mut pending = Vec::with_capacity(prepared.len());
    for p in prepared {
        let Prepared {
            message,
            mut answer,
            dedup,
            duplicate,
        } = p;
        if let Some((id, _)) = duplicate {
            answer.insert("MessageId".into(), Value::String(id));
            pending.push((answer, None, None));
            continue;
        }
        let receipt = publisher
            .publish_buffered(message, true)
            .map_err(|e| from_core(&e))?;
        pending.push((answer, Some(receipt), dedup));
    }
    publisher.flush().await;
    let mut view = req.ctx.broker.sync_view();
    let mut out = Vec::with_capacity(pending.len());
    for (answer, receipt, dedup) in pending {
        let outcome = match receipt {
            None => Ok(()),
            Some(CoreReceipt::Unroutable(_)) => Err(sqs_error::queue_does_not_exist()),
            Some(CoreReceipt::Routed(confirmation)) => {
                match confirmation.outcome(&mut view).await {
                    Outcome::Accepted => Ok(()),
                    Outcome::Refused => {
                        Err(sqs_error::over_limit("The queue refused the message."))
                    }
                    Outcome::Failed => {
                        Err(AwsError::unavailable("The message could not be stored."))
                    }
                }
            }
        };
        if outcome.is_ok()
            && let Some(key) = dedup
            && let (Some(Value::String(id)), Some(Value::String(seq))) =
                (answer.get("MessageId"), answer.get("SequenceNumber"))
        {
            req.sqs.fifo.remember(queue, key, id.clone(), seq.clone());
        }
        out.push(outcome.map(|()| answer));
    }
    Ok(out)
}

pub async fn receive(req: &Request<'_>) -> Result<Value, AwsError> {
    let name = input::queue_name(req)?;
    let (_, stored) = load_quick(req, &name)?;
    let cfg = stored.config();
    let input = req.input();
    let max = opt_int(input, "MaxNumberOfMessages", 1..=10)?.unwrap_or(1) as usize;
    let visibility =
        opt_int(input, "VisibilityTimeout", 0..=43_200)?.map_or(cfg.visibility_secs, |v| v as u64);
    let wait = opt_int(input, "WaitTimeSeconds", 0..=20)?.map_or(cfg.wait_secs, |v| v as u64);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    let want = Wanted::of(input);
    let session = req.session()?;
    // A FIFO retry with the same ReceiveRequestAttemptId gets the same messages while they are still out.
    let attempt = match opt_str(input, "ReceiveRequestAttemptId") {
        Some(id) if cfg.fifo => {
            attempts::check_id(id)?;
            if let Some(answer) = retry(req, &name, id, visibility).await? {
                return Ok(answer);
            }
            Some(id)
        }
        _ => None,
    };
    let mut messages = Vec::new();
    let mut leases = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let request = ReceiveRequest {
            max: max - messages.len(),
            lease: Duration::from_secs(visibility),
            wait: left,
            group_by: cfg.fifo.then_some(GROUP_ID),
        };
        let got = session
            .receive(&name, request)
            .await
            .map_err(|e| from_core(&e))?;
        let empty = got.is_empty();
        for received in got {
            if let Some(m) = keep(req, &cfg, received).await {
                leases.push((m.delivery.tag, m.receive_count));
                messages.push(render(&name, &m, &want));
            }
        }
        // Messages that were kept back (expired, moved) left the way free: look again at once.
        if !messages.is_empty() || empty {
            break;
        }
    }
    if messages.is_empty() {
        return Ok(json!({}));
    }
    let answer = json!({"Messages": messages});
    if let Some(id) = attempt {
        let bytes = messages_bytes(&answer);
        let remembered = Attempt::new(leases, answer.clone(), bytes);
        req.sqs.attempts.remember(&name, id, remembered);
    }
    Ok(answer)
}

/// The answer of an earlier receive with attempt `id`, when every message it handed out is still out under
/// that receive's lease; their visibility timeout starts again. `None`: receive anew.
async fn retry(
    req: &Request<'_>,
    queue: &str,
    id: &str,
    visibility: u64,
) -> Result<Option<Value>, AwsError> {
    let Some(earlier) = req.sqs.attempts.get(queue, id) else {
        return Ok(None);
    };
    if visibility == 0 {
        // A zero lease would make them visible again, not hand them out again.
        req.sqs.attempts.forget(queue, id);
        return Ok(None);
    }
    let q = req
        .session()?
        .usable_queue(queue)
        .map_err(|e| from_core(&e))?;
    for (i, &(tag, receive)) in earlier.leases.iter().enumerate() {
        let still_out = q
            .change_lease(tag, Duration::from_secs(visibility), Some(receive))
            .await
            .map_err(|e| from_core(&e))?;
        if !still_out {
            // Spent: the answer is not given again, so the ones just held longer are let go (visible, their
            // groups free) for the receive that follows to hand out.
            req.sqs.attempts.forget(queue, id);
            for &(tag, receive) in &earlier.leases[..i] {
                let _ = q.change_lease(tag, Duration::ZERO, Some(receive)).await;
            }
            return Ok(None);
        }
    }
    Ok(Some(earlier.answer))
}

/// About what a rendered answer holds in memory: its strings, and a node's worth for each value and key.
fn messages_bytes(answer: &Value) -> usize {
    const NODE: usize = size_of::<Value>() + size_of::<String>();
    fn size(v: &Value) -> usize {
        NODE + match v {
            Value::String(s) => s.len(),
            Value::Array(a) => a.iter().map(size).sum(),
            Value::Object(o) => o.iter().map(|(k, v)| k.len() + size(v)).sum(),
            _ => 0,
        }
    }
    size(answer)
}

/// What a receive asked to see of each message.
struct Wanted {
    system: Vec<String>,
    attributes: Vec<String>,
}

impl Wanted {
    fn of(input: &Value) -> Self {
        let mut system = str_list(input, "AttributeNames");
        system.extend(str_list(input, "MessageSystemAttributeNames"));
        Self {
            system,
            attributes: str_list(input, "MessageAttributeNames"),
        }
    }

    fn system(&self, name: &str) -> bool {
        self.system.iter().any(|w| w == "All" || w == name)
    }

    fn attribute(&self, name: &str) -> bool {
        self.attributes.iter().any(|w| {
            w == "All"
                || w == ".*"
                || w == name
                || w.strip_suffix(".*").is_some_and(|p| name.starts_with(p))
        })
    }
}

/// Whether a received message is handed to the client: not past its retention (then deleted), not past the
/// redrive limit (then moved to the dead-letter queue).
async fn keep(req: &Request<'_>, cfg: &QueueConfig, received: Received) -> Option<Received> {
    let message = &received.delivery.message;
    let now = now_ms();
    let q = &received.delivery.queue;
    let tag = received.delivery.tag;
    let sent = message.properties.timestamp_ms.unwrap_or(now);
    if now.saturating_sub(sent) > cfg.retention_secs * 1000 {
        q.settle(vec![tag], Settle::Ack, None);
        return None;
    }
    if let Some((dlq_arn, max)) = &cfg.redrive
        && received.receive_count > *max
        && let Ok(session) = req.session()
        && let Some(dlq) = req.core_of_arn(dlq_arn)
        && move_to(session, &req.ctx.broker, &dlq, message).await
    {
        q.settle(vec![tag], Settle::Ack, None);
        return None;
    }
    Some(received)
}

/// Publishes a copy of `message` to queue `dlq` and waits until it is stored; false when it could not be.
/// The copy expires by the destination's retention, counted as SQS does: from the original send on a
/// standard queue, from the move on a FIFO queue.
pub async fn move_to(
    session: &Session,
    broker: &Broker,
    dlq: &str,
    message: &Arc<Message>,
) -> bool {
    let Ok(destination) = session.usable_queue(dlq) else {
        return false;
    };
    let fifo = dlq.ends_with(".fifo");
    let retention = Stored::of(&destination).config().retention_secs;
    let mut copy = Message::clone(message);
    copy.exchange = String::new();
    copy.routing_key = dlq.to_owned();
    copy.annotations.deliver_at = None;
    let now = now_ms();
    let since = match copy.properties.timestamp_ms {
        Some(sent) if !fifo => sent,
        _ => now,
    };
    copy.properties.expiry = Some(retention_from(since, retention));
    let mut publisher = Publisher::new(session.clone());
    match publisher.publish(copy, true).await {
        Ok(CoreReceipt::Routed(c)) => c.outcome(&mut broker.sync_view()).await == Outcome::Accepted,
        _ => false,
    }
}

/// One received message in SQS's form.
fn render(queue: &str, r: &Received, want: &Wanted) -> Value {
    let m = &r.delivery.message;
    let body = String::from_utf8_lossy(&m.body);
    let message_id = m
        .properties
        .text
        .as_ref()
        .and_then(|t| t.message_id.clone())
        .unwrap_or_else(|| synthetic_id(queue, r.delivery.tag));
    let receipt = Receipt {
        queue: queue.to_owned(),
        tag: r.delivery.tag,
        receive: r.receive_count,
    };
    let mut out = Map::new();
    out.insert("MessageId".into(), Value::String(message_id));
    out.insert("ReceiptHandle".into(), Value::String(receipt.encode()));
    out.insert("MD5OfBody".into(), Value::String(md5_hex(body.as_bytes())));
    out.insert("Body".into(), Value::String(body.into_owned()));
    let system = system_attributes(r, want);
    if !system.is_empty() {
        out.insert("Attributes".into(), Value::Object(system));
    }
    let attrs: Vec<(String, Attribute)> = convert::from_headers(&m.headers)
        .into_iter()
        .filter(|(n, _)| want.attribute(n))
        .collect();
    if !attrs.is_empty() {
        out.insert(
            "MD5OfMessageAttributes".into(),
            Value::String(md5_of_attributes(&attrs)),
        );
        let map: Map<String, Value> = attrs
            .iter()
            .map(|(n, a)| (n.clone(), a.to_json()))
            .collect();
        out.insert("MessageAttributes".into(), Value::Object(map));
    }
    Value::Object(out)
}

fn system_attributes(r: &Received, want: &Wanted) -> Map<String, Value> {
    let m = &r.delivery.message;
    let h = &m.headers;
    let sent = m.properties.timestamp_ms.unwrap_or_else(now_ms);
    let candidates: [(&str, Option<String>); 8] = [
        (
            "SenderId",
            Some(header_text(h, SENDER).unwrap_or("AIDAFERRYMQ").to_owned()),
        ),
        ("SentTimestamp", Some(sent.to_string())),
        ("ApproximateReceiveCount", Some(r.receive_count.to_string())),
        (
            "ApproximateFirstReceiveTimestamp",
            Some(r.first_receive_ms.to_string()),
        ),
        (
            "MessageGroupId",
            header_text(h, GROUP_ID).map(str::to_owned),
        ),
        (
            "MessageDeduplicationId",
            header_text(h, DEDUP_ID).map(str::to_owned),
        ),
        (
            "SequenceNumber",
            header_text(h, SEQUENCE).map(str::to_owned),
        ),
        ("AWSTraceHeader", header_text(h, TRACE).map(str::to_owned)),
    ];
    candidates
        .into_iter()
        .filter(|(name, _)| want.system(name))
        .filter_map(|(name, v)| Some((name.to_owned(), Value::String(v?))))
        .collect()
}

/// A stable message id for a message that came without one (published over another protocol).
fn synthetic_id(queue: &str, tag: u64) -> String {
    let digest = md5_hex(format!("{queue}\n{tag}").as_bytes());
    format!(
        "{}-{}-{}-{}-{}",
        &digest[0..8],
        &digest[8..12],
        &digest[12..16],
        &digest[16..20],
        &digest[20..32]
    )
}

pub async fn delete(req: &Request<'_>) -> Result<Value, AwsError> {
    let name = input::queue_name(req)?;
    let (q, _) = load_quick(req, &name)?;
    let receipt = Receipt::decode(req_str(req.input(), "ReceiptHandle")?, &name)?;
    q.delete_received(vec![receipt.tag])
        .await
        .map_err(|e| from_core(&e))?;
    Ok(json!({}))
}

pub async fn delete_batch(req: &Request<'_>) -> Result<Value, AwsError> {
    let name = input::queue_name(req)?;
    let (q, _) = load_quick(req, &name)?;
    let list = batch_entries(req, "DeleteMessageBatchRequestEntry")?;
    let mut tags = Vec::new();
    let mut successful = Vec::new();
    let mut failed = Vec::new();
    for entry in list {
        let id = req_str(entry, "Id")?;
        let handle = req_str(entry, "ReceiptHandle")?;
        let decoded = Receipt::decode(handle, &name)
            .map_err(|_| sqs_error::receipt_handle_invalid_in_batch(handle));
        match decoded {
            Ok(receipt) => {
                tags.push(receipt.tag);
                successful.push(json!({"Id": id}));
            }
            Err(e) => failed.push(failure(id, &e)),
        }
    }
    q.delete_received(tags).await.map_err(|e| from_core(&e))?;
    Ok(batch_answer(successful, failed))
}

pub async fn change_visibility(req: &Request<'_>) -> Result<Value, AwsError> {
    let name = input::queue_name(req)?;
    let (q, _) = load_quick(req, &name)?;
    change_one(&q, &name, req.input()).await?;
    Ok(json!({}))
}

pub async fn change_visibility_batch(req: &Request<'_>) -> Result<Value, AwsError> {
    let name = input::queue_name(req)?;
    let (q, _) = load_quick(req, &name)?;
    let list = batch_entries(req, "ChangeMessageVisibilityBatchRequestEntry")?;
    let mut successful = Vec::new();
    let mut failed = Vec::new();
    for entry in list {
        let id = req_str(entry, "Id")?;
        match change_one(&q, &name, entry).await {
            Ok(()) => successful.push(json!({"Id": id})),
            Err(e) => failed.push(failure(id, &e)),
        }
    }
    Ok(batch_answer(successful, failed))
}

async fn change_one(
    q: &crate::core::QueueHandle,
    name: &str,
    entry: &Value,
) -> Result<(), AwsError> {
    let receipt = Receipt::decode(req_str(entry, "ReceiptHandle")?, name)?;
    let timeout = opt_int(entry, "VisibilityTimeout", 0..=43_200)?
        .ok_or_else(|| AwsError::missing_parameter("VisibilityTimeout"))?;
    let changed = q
        .change_lease(receipt.tag, Duration::from_secs(timeout as u64), None)
        .await
        .map_err(|e| from_core(&e))?;
    if changed {
        Ok(())
    } else {
        Err(sqs_error::message_not_inflight())
    }
}
