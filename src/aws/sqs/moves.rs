//! Message move tasks (StartMessageMoveTask, ListMessageMoveTasks, CancelMessageMoveTask): moving the messages
//! of a dead-letter queue back to their source queue (the queue whose RedrivePolicy names it) or to a given
//! destination, at most MaxNumberOfMessagesPerSecond, one running task per source. A task is a tokio task that
//! receives from the source under a lease, publishes a copy to the destination (confirmed), then deletes the
//! original. A running task is also recorded with its source queue's attributes (journaled), and cleared when it
//! ends: a restart resumes it under the same handle ([`MoveTasks::resume`]; its count starts again from 0).
//! The list keeps the [`KEPT_PER_SOURCE`] most recent tasks of each source, as ListMessageMoveTasks shows them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::Request;
use super::attributes::Stored;
use super::error::resource_not_found;
use super::input::{opt_int, opt_str, req_str};
use super::messages::move_to;
use super::queues::load_quick;
use crate::aws::error::AwsError;
use crate::core::message::now_ms;
use crate::core::{Broker, ReceiveRequest, Session, Settle};

/// Finished tasks kept per source queue (ListMessageMoveTasks shows at most 10).
const KEPT_PER_SOURCE: usize = 10;

/// What a running task records with its source queue's attributes, to be resumed after a restart.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    handle: String,
    source_arn: String,
    destination_arn: Option<String>,
    /// The core queue moved to.
    destination: String,
    rate: Option<u64>,
    started_ms: u64,
}

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
    fn new(record: &Record, source: String) -> Self {
        Self {
            handle: record.handle.clone(),
            source,
            source_arn: record.source_arn.clone(),
            destination_arn: record.destination_arn.clone(),
            rate: record.rate,
            to_move: 0,
            started_ms: record.started_ms,
            moved: AtomicU64::new(0),
            cancelled: AtomicBool::new(false),
            finished: AtomicBool::new(false),
            failed: AtomicBool::new(false),
        }
    }

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

/// The tasks of this run (running, and the most recent finished ones), newest last.
#[derive(Debug)]
pub struct MoveTasks {
    tasks: Mutex<Vec<Arc<Task>>>,
    /// The SQS service's lock on queue attribute edits (see `Sqs::edit_lock`): task records are such edits.
    edits: Arc<Mutex<()>>,
}

impl MoveTasks {
    pub fn new(edits: Arc<Mutex<()>>) -> Self {
        Self {
            tasks: Mutex::new(Vec::new()),
            edits,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Task>>> {
        self.tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A deleted queue's tasks stop, and its finished ones are forgotten.
    pub fn forget_source(&self, queue: &str) {
        let mut tasks = self.lock();
        for t in tasks.iter() {
            if t.source == queue {
                t.cancelled.store(true, Ordering::Release);
            }
        }
        tasks.retain(|t| t.source != queue || !t.finished.load(Ordering::Acquire));
    }

    /// Adds a task unless one of its source is running, forgetting the oldest finished ones of its source
    /// beyond [`KEPT_PER_SOURCE`]; false when one is running.
    fn add(&self, task: Arc<Task>) -> bool {
        let mut tasks = self.lock();
        if tasks
            .iter()
            .any(|t| t.source_arn == task.source_arn && t.running())
        {
            return false;
        }
        let mut kept = 0;
        for i in (0..tasks.len()).rev() {
            if tasks[i].source_arn == task.source_arn && !tasks[i].running() {
                kept += 1;
                if kept >= KEPT_PER_SOURCE {
                    tasks.remove(i);
                }
            }
        }
        tasks.push(task);
        true
    }

    /// Starts again the tasks a previous run recorded as running (at start-up).
    pub fn resume(&self, session: &Session, broker: &Broker) {
        for source in session.queue_names() {
            let Ok(q) = session.usable_queue(&source) else {
                continue;
            };
            let stored = Stored::of(&q);
            let Some(record) = stored.move_task.as_deref() else {
                continue;
            };
            let Ok(record) = serde_json::from_str::<Record>(record) else {
                tracing::warn!(queue = %source, "an unreadable message move task record is dropped");
                save_record(&self.edits, session, &source, Write::ClearAny);
                continue;
            };
            tracing::info!(queue = %source, task = %record.handle, "resuming a message move task");
            let task = Arc::new(Task::new(&record, source.clone()));
            if self.add(task.clone()) {
                let edits = self.edits.clone();
                let (session, broker) = (session.clone(), broker.clone());
                tokio::spawn(run(
                    task,
                    session,
                    broker,
                    edits,
                    source,
                    record.destination,
                ));
            }
        }
    }
}

/// What [`save_record`] does to a queue's task record.
enum Write<'a> {
    /// Records a task that starts.
    Set(&'a Record),
    /// Clears the record if it is this task's (a newer task's record stays).
    ClearIf(&'a str),
    /// Clears whatever is there.
    ClearAny,
}

/// Changes the task record kept with queue `source`'s attributes, under the attribute edit lock.
fn save_record(edits: &Mutex<()>, session: &Session, source: &str, write: Write<'_>) {
    let _edit = edits
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let Ok(q) = session.usable_queue(source) else {
        return;
    };
    let mut stored = Stored::of(&q);
    stored.move_task = match write {
        Write::Set(record) => serde_json::to_string(record).ok(),
        Write::ClearAny => None,
        Write::ClearIf(handle) => {
            let current = stored.move_task.as_deref();
            let theirs = current
                .and_then(|r| serde_json::from_str::<Record>(r).ok())
                .is_some_and(|r| r.handle != handle);
            if theirs {
                return;
            }
            None
        }
    };
    if let Err(e) = session.set_queue_attributes(source, stored.to_core()) {
        tracing::warn!(queue = %source, error = %e, "could not record a message move task");
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
    let record = Record {
        handle: crate::aws::uuid_v4(),
        source_arn,
        destination_arn,
        destination: destination.clone(),
        rate,
        started_ms: now_ms(),
    };
    let task = Arc::new(Task::new(&record, source.clone()));
    if !req.sqs.moves.add(task.clone()) {
        return Err(AwsError::invalid_parameter(
            "There is already a task running. Only one active task is allowed for a source queue arn at a given time.",
        ));
    }
    let session = req.session()?.clone();
    let edits = req.sqs.moves.edits.clone();
    save_record(&edits, &session, &source, Write::Set(&record));
    let broker = req.ctx.broker.clone();
    tokio::spawn(run(
        task.clone(),
        session,
        broker,
        edits,
        source,
        destination,
    ));
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

/// Runs a task until it ends (moved everything, cancelled, failed), then clears its record.
async fn run(
    task: Arc<Task>,
    session: Session,
    broker: Broker,
    edits: Arc<Mutex<()>>,
    source: String,
    destination: String,
) {
    move_all(&task, &session, &broker, &source, &destination).await;
    save_record(&edits, &session, &source, Write::ClearIf(&task.handle));
}

async fn move_all(
    task: &Task,
    session: &Session,
    broker: &Broker,
    source: &str,
    destination: &str,
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
        let got = match session.receive(source, request).await {
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
        if !move_to(session, broker, destination, &d.message).await {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn task(source_arn: &str) -> Arc<Task> {
        let record = Record {
            handle: crate::aws::uuid_v4(),
            source_arn: source_arn.to_owned(),
            destination_arn: None,
            destination: "to".to_owned(),
            rate: None,
            started_ms: 0,
        };
        Arc::new(Task::new(&record, "from".to_owned()))
    }

    #[test]
    fn one_task_runs_per_source_and_finished_ones_are_kept_up_to_the_limit() {
        let tasks = MoveTasks::new(Arc::default());
        for _ in 0..25 {
            let t = task("a");
            assert!(tasks.add(t.clone()));
            assert!(!tasks.add(task("a")), "a second running task of the source");
            t.finished.store(true, Ordering::Release);
        }
        let other = task("b");
        assert!(tasks.add(other.clone()));
        let running = task("a");
        assert!(tasks.add(running.clone()));
        let list = tasks.lock();
        let finished_a = list
            .iter()
            .filter(|t| t.source_arn == "a" && !t.running())
            .count();
        assert_eq!(
            finished_a,
            KEPT_PER_SOURCE - 1,
            "with the running one, 10 listed"
        );
        assert!(list.iter().any(|t| Arc::ptr_eq(t, &running)));
        assert!(list.iter().any(|t| Arc::ptr_eq(t, &other)));
        drop(list);
        tasks.forget_source("from");
        // Its running tasks are cancelled (they leave once their loop ends), its finished ones are gone.
        let list = tasks.lock();
        assert!(list.iter().all(|t| t.source != "from" || !t.running()));
        assert!(!list.iter().any(|t| t.finished.load(Ordering::Acquire)));
    }

    #[test]
    fn a_record_round_trips_through_json() {
        let record = Record {
            handle: "h".into(),
            source_arn: "arn:aws:sqs:us-east-1:123456789012:dlq".into(),
            destination_arn: Some("arn:aws:sqs:us-east-1:123456789012:src".into()),
            destination: "src".into(),
            rate: Some(5),
            started_ms: 42,
        };
        let back: Record = serde_json::from_str(&serde_json::to_string(&record).unwrap()).unwrap();
        assert_eq!(back.handle, "h");
        assert_eq!(back.destination, "src");
        assert_eq!(back.rate, Some(5));
        assert_eq!(back.started_ms, 42);
    }
}
