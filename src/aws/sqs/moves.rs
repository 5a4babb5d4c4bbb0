//! Message move tasks (StartMessageMoveTask, ListMessageMoveTasks, CancelMessageMoveTask): moving the messages
//! of a dead-letter queue back to their source queue (the queue whose RedrivePolicy names it) or to a given
//! destination, at most MaxNumberOfMessagesPerSecond, one running task per source. A task is a tokio task that
//! receives from the source under a lease, publishes a copy to the destination (confirmed), then deletes the
//! original. Tasks are kept in memory (a restart forgets them, as it ends them).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::Request;
use super::error::resource_not_found;
use super::input::{opt_int, opt_str, req_str};
use super::messages::move_to;
use super::queues::load_quick;
use crate::aws::error::AwsError;
use crate::core::message::now_ms;
use crate::core::{Broker, ReceiveRequest, Session, Settle};

/// One task's state, shared with the tokio task that runs it.
#[derive(Debug)]
struct Task {
    handle: String,
    /// The core queue moved from.
    source: String,
    source_arn: String,
    destination_arn: Option<String>,
    rate: Option<u64>,
    to_move: u64,
    started_ms: u64,
    moved: AtomicU64,
    cancelled: AtomicBool,
    finished: AtomicBool,
    failed: AtomicBool,
}

impl Task {
    fn status(&self) -> &'static str {
        if self.cancelled.load(Ordering::Acquire) {
            "CANCELLED"
        } else if self.failed.load(Ordering::Acquire) {
            "FAILED"
        } else if self.finished.load(Ordering::Acquire) {
            "COMPLETED"
        } else {
            "RUNNING"
        }
    }

    fn running(&self) -> bool {
        self.status() == "RUNNING"
    }

    fn to_json(&self) -> Value {
        let mut out = Map::new();
        out.insert("TaskHandle".into(), json!(self.handle));
        out.insert("Status".into(), json!(self.status()));
        out.insert("SourceArn".into(), json!(self.source_arn));
        if let Some(d) = &self.destination_arn {
            out.insert("DestinationArn".into(), json!(d));
        }
        if let Some(r) = self.rate {
            out.insert("MaxNumberOfMessagesPerSecond".into(), json!(r));
        }
        out.insert(
            "ApproximateNumberOfMessagesMoved".into(),
            json!(self.moved.load(Ordering::Acquire)),
        );
        out.insert(
            "ApproximateNumberOfMessagesToMove".into(),
            json!(self.to_move),
        );
        out.insert("StartedTimestamp".into(), json!(self.started_ms));
        Value::Object(out)
    }
}

/// Every task started since the broker started, newest last.
#[derive(Debug, Default)]
pub struct MoveTasks {
    tasks: Mutex<Vec<Arc<Task>>>,
}

impl MoveTasks {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Task>>> {
        self.tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A deleted queue's tasks stop.
    pub fn forget_source(&self, queue: &str) {
        for t in self.lock().iter() {
            if t.source == queue {
                t.cancelled.store(true, Ordering::Release);
            }
        }
    }
}

pub fn start(req: &Request<'_>) -> Result<Value, AwsError> {
    let source_arn = req_str(req.input(), "SourceArn")?.to_owned();
    let source = req.core_of_arn(&source_arn).ok_or_else(|| {
        AwsError::invalid_parameter("Source queue must be configured as a Dead Letter Queue.")
    })?;
    load_quick(req, &source).map_err(|_| {
        resource_not_found(
            "The resource that you specified for the SourceArn parameter doesn't exist.",
        )
    })?;
    let destination_arn = opt_str(req.input(), "DestinationArn").map(str::to_owned);
    let destination = match &destination_arn {
        Some(arn) => req
            .core_of_arn(arn)
            .ok_or_else(|| AwsError::invalid_parameter("Invalid DestinationArn."))?,
        None => redrive_source(req, &source)?,
    };
    load_quick(req, &destination)?;
    let rate = opt_int(req.input(), "MaxNumberOfMessagesPerSecond", 1..=500)?.map(|r| r as u64);
    let mut tasks = req.sqs.moves.lock();
    if tasks
        .iter()
        .any(|t| t.source_arn == source_arn && t.running())
    {
        return Err(AwsError::invalid_parameter(
            "There is already a task running. Only one active task is allowed for a source queue arn at a given time.",
        ));
    }
    let task = Arc::new(Task {
        handle: crate::aws::uuid_v4(),
        source: source.clone(),
        source_arn,
        destination_arn,
        rate,
        to_move: 0,
        started_ms: now_ms(),
        moved: AtomicU64::new(0),
        cancelled: AtomicBool::new(false),
        finished: AtomicBool::new(false),
        failed: AtomicBool::new(false),
    });
    tasks.push(task.clone());
    drop(tasks);
    let session = req.session()?.clone();
    let broker = req.ctx.broker.clone();
    tokio::spawn(run(task.clone(), session, broker, source, destination));
    Ok(json!({"TaskHandle": task.handle}))
}

/// The queue whose RedrivePolicy names `dlq`.
fn redrive_source(req: &Request<'_>, dlq: &str) -> Result<String, AwsError> {
    let not_dlq =
        || AwsError::invalid_parameter("Source queue must be configured as a Dead Letter Queue.");
    for name in req.session()?.queue_names() {
        if let Ok((_, stored)) = load_quick(req, &name)
            && let Some((arn, _)) = stored.config().redrive
            && req.core_of_arn(&arn).as_deref() == Some(dlq)
        {
            return Ok(name);
        }
    }
    Err(not_dlq())
}

async fn run(
    task: Arc<Task>,
    session: Session,
    broker: Broker,
    source: String,
    destination: String,
) {
    let pause = task
        .rate
        .map(|r| Duration::from_secs(1) / u32::try_from(r).unwrap_or(1));
    while !task.cancelled.load(Ordering::Acquire) {
        let request = ReceiveRequest {
            max: 1,
            lease: Duration::from_secs(30),
            wait: Duration::ZERO,
            group_by: None,
        };
        let got = match session.receive(&source, request).await {
            Ok(got) => got,
            Err(_) => {
                task.failed.store(true, Ordering::Release);
                return;
            }
        };
        let Some(received) = got.into_iter().next() else {
            break;
        };
        let d = &received.delivery;
        if !move_to(&session, &broker, &destination, &d.message).await {
            d.queue.settle(vec![d.tag], Settle::Requeue, None);
            task.failed.store(true, Ordering::Release);
            return;
        }
        d.queue.settle(vec![d.tag], Settle::Ack, None);
        task.moved.fetch_add(1, Ordering::AcqRel);
        if let Some(pause) = pause {
            tokio::time::sleep(pause).await;
        }
    }
    task.finished.store(true, Ordering::Release);
}

pub fn list(req: &Request<'_>) -> Result<Value, AwsError> {
    let source_arn = req_str(req.input(), "SourceArn")?;
    let max = opt_int(req.input(), "MaxResults", 1..=10)?.unwrap_or(1) as usize;
    let tasks = req.sqs.moves.lock();
    let results: Vec<Value> = tasks
        .iter()
        .rev()
        .filter(|t| t.source_arn == source_arn)
        .take(max)
        .map(|t| t.to_json())
        .collect();
    Ok(json!({"Results": results}))
}

pub fn cancel(req: &Request<'_>) -> Result<Value, AwsError> {
    let handle = req_str(req.input(), "TaskHandle")?;
    let tasks = req.sqs.moves.lock();
    let task = tasks
        .iter()
        .find(|t| t.handle == handle)
        .ok_or_else(|| resource_not_found("Task does not exist."))?;
    if !task.running() {
        return Err(AwsError::invalid_parameter(
            "Only active tasks can be cancelled.",
        ));
    }
    task.cancelled.store(true, Ordering::Release);
    Ok(json!({"ApproximateNumberOfMessagesMoved": task.moved.load(Ordering::Acquire)}))
}
