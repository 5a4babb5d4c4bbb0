//! Amazon SQS on the core (the SQS issue; AWS facts in the shared design §6). An SQS queue is the durable core
//! queue of the same name in vhost `/`: ReceiveMessage is a leased receive (`Session::receive`: the visibility
//! timeout is the lease, long polling waits in the queue), SendMessage publishes a persistent message to the
//! default exchange and answers once `Confirmation::outcome` says it is accepted (synced), and queue attributes
//! and tags are the queue's core attributes (journaled with its definition). Files: `queues` the queue actions,
//! `messages` the message actions, `attributes` queue attributes, `convert` messages and their attributes to
//! and from the core (MD5 digests included), `receipt` receipt handles, `input` reading request fields,
//! `error` SQS's error vocabulary, `fifo` FIFO deduplication and sequence numbers, `attempts` FIFO receive
//! attempts (ReceiveRequestAttemptId), `moves` message move tasks.

mod attempts;
mod attributes;
mod convert;
mod error;
mod fifo;
mod input;
mod messages;
mod moves;
mod queues;
mod receipt;

use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::error::AwsError;
use super::query::QueryShapes;
use super::xml::Shapes;
use super::{AwsContext, Call};
use crate::core::{Broker, CoreError, DEFAULT_VHOST, Session};

/// The `X-Amz-Target` prefix of SQS's JSON protocol.
pub const JSON_TARGET_PREFIX: &str = "AmazonSQS";

/// How the Query protocol's numbered SQS members map to the JSON fields.
pub const QUERY_SHAPES: QueryShapes = QueryShapes {
    lists: &[
        ("AttributeName", "AttributeNames"),
        ("MessageAttributeName", "MessageAttributeNames"),
        ("MessageSystemAttributeName", "MessageSystemAttributeNames"),
        ("TagKey", "TagKeys"),
        ("AWSAccountId", "AWSAccountIds"),
        ("ActionName", "Actions"),
        ("SendMessageBatchRequestEntry", "Entries"),
        ("DeleteMessageBatchRequestEntry", "Entries"),
        ("ChangeMessageVisibilityBatchRequestEntry", "Entries"),
        ("StringListValue", "StringListValues"),
        ("BinaryListValue", "BinaryListValues"),
    ],
    maps: &[
        ("Attribute", "Attributes", "Name", "Value"),
        ("MessageAttribute", "MessageAttributes", "Name", "Value"),
        (
            "MessageSystemAttribute",
            "MessageSystemAttributes",
            "Name",
            "Value",
        ),
        ("Tag", "Tags", "Key", "Value"),
    ],
};

/// How SQS's XML replies name list members and map entries.
pub const XML_SHAPES: Shapes = Shapes {
    namespace: "http://queue.amazonaws.com/doc/2012-11-05/",
    lists: &[
        ("QueueUrls", "QueueUrl"),
        ("queueUrls", "QueueUrl"),
        ("Messages", "Message"),
        ("Successful", "{action}ResultEntry"),
        ("Failed", "BatchResultErrorEntry"),
        ("Results", "ListMessageMoveTasksResultEntry"),
    ],
    maps: &[
        ("Attributes", "Attribute", "Name", "Value"),
        ("MessageAttributes", "MessageAttribute", "Name", "Value"),
        ("Tags", "Tag", "Key", "Value"),
    ],
    void: &[
        "DeleteQueue",
        "SetQueueAttributes",
        "PurgeQueue",
        "DeleteMessage",
        "ChangeMessageVisibility",
        "TagQueue",
        "UntagQueue",
        "AddPermission",
        "RemovePermission",
    ],
};

/// The SQS service: a session on vhost `/` and what SQS keeps in memory beside the core queues (FIFO
/// deduplication windows, rebuilt from the messages after a restart; sequence numbers; receive attempts; move
/// tasks, recorded with their source queue while they run); purge times are kept with the queue's attributes.
#[derive(Debug)]
pub struct Sqs {
    session: Result<Session, CoreError>,
    /// Held while a queue's stored attributes are read, changed and written back (see [`Sqs::edit_lock`]).
    edits: Arc<Mutex<()>>,
    fifo: fifo::FifoState,
    attempts: attempts::Attempts,
    /// Held while a FIFO queue's deduplication window is rebuilt after a restart.
    restoring: tokio::sync::Mutex<()>,
    moves: moves::MoveTasks,
}

impl Sqs {
    /// The service; message move tasks a previous run left running start again.
    pub fn new(broker: &Broker) -> Self {
        let edits = Arc::new(Mutex::new(()));
        let sqs = Self {
            session: broker.trusted_session("sqs", DEFAULT_VHOST),
            edits: edits.clone(),
            fifo: fifo::FifoState::default(),
            attempts: attempts::Attempts::default(),
            restoring: tokio::sync::Mutex::new(()),
            moves: moves::MoveTasks::new(edits),
        };
        if let Ok(session) = &sqs.session {
            sqs.moves.resume(session, broker);
        }
        sqs
    }

    /// Every change to a queue's stored attributes (SetQueueAttributes, tags, permissions, the purge time, a
    /// move task's record) reads them, changes them and writes them back under this lock, so that none
    /// undoes another.
    fn edit_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.edits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn session(&self) -> Result<&Session, AwsError> {
        self.session
            .as_ref()
            .map_err(|e| AwsError::unavailable(&e.to_string()))
    }

    /// Runs one SQS action.
    pub async fn call(&self, ctx: &AwsContext, call: &Call) -> Result<Value, AwsError> {
        let req = Request {
            ctx,
            call,
            sqs: self,
        };
        match call.action.as_str() {
            "CreateQueue" => queues::create(&req).await,
            "GetQueueUrl" => queues::get_url(&req).await,
            "ListQueues" => queues::list(&req),
            "DeleteQueue" => queues::delete(&req).await,
            "GetQueueAttributes" => queues::get_attributes(&req).await,
            "SetQueueAttributes" => queues::set_attributes(&req),
            "PurgeQueue" => queues::purge(&req).await,
            "TagQueue" => queues::tag(&req),
            "UntagQueue" => queues::untag(&req),
            "ListQueueTags" => queues::list_tags(&req),
            "AddPermission" => queues::add_permission(&req),
            "RemovePermission" => queues::remove_permission(&req),
            "ListDeadLetterSourceQueues" => queues::dead_letter_sources(&req),
            "SendMessage" => messages::send(&req).await,
            "SendMessageBatch" => messages::send_batch(&req).await,
            "ReceiveMessage" => messages::receive(&req).await,
            "DeleteMessage" => messages::delete(&req).await,
            "DeleteMessageBatch" => messages::delete_batch(&req).await,
            "ChangeMessageVisibility" => messages::change_visibility(&req).await,
            "ChangeMessageVisibilityBatch" => messages::change_visibility_batch(&req).await,
            "StartMessageMoveTask" => moves::start(&req),
            "ListMessageMoveTasks" => moves::list(&req),
            "CancelMessageMoveTask" => moves::cancel(&req),
            other => Err(match call.protocol {
                super::Protocol::Json => AwsError::unknown_operation(),
                super::Protocol::Query => AwsError::invalid_action(other),
            }),
        }
    }
}

/// One SQS request in progress: the endpoint's context, the decoded call, the service state.
struct Request<'a> {
    ctx: &'a AwsContext,
    call: &'a Call,
    sqs: &'a Sqs,
}

impl Request<'_> {
    /// Every change to a queue's stored attributes (SetQueueAttributes, tags, permissions, the purge time, a
    /// move task's record) reads them, changes them and writes them back under this lock, so that none
    /// undoes another.
    fn session(&self) -> Result<&Session, AwsError> {
        self.sqs.session()
    }

    fn input(&self) -> &Value {
        &self.call.input
    }

    /// The core queue of SQS queue `name` in this request's region (see [`core_name_in`]).
    fn core_name(&self, name: &str) -> String {
        core_name_in(&self.ctx.region, &self.call.region, name)
    }

    /// The core queue an SQS queue ARN names (`arn:aws:sqs:<region>:<account>:<name>`).
    fn core_of_arn(&self, arn: &str) -> Option<String> {
        let (region, name) = input::region_and_name_of_arn(arn)?;
        Some(core_name_in(&self.ctx.region, region, name))
    }

    /// The SQS name of core queue `core` if it is in this request's region.
    fn in_region<'q>(&self, core: &'q str) -> Option<&'q str> {
        let (region, name) = match core.split_once(':') {
            Some((region, name)) => (region, name),
            None => (self.ctx.region.as_str(), core),
        };
        (region == self.call.region).then_some(name)
    }

    /// `http://<Host>/<account>/<name>` of core queue `core`.
    fn queue_url(&self, core: &str) -> String {
        let (_, name) = split_core_name(&self.ctx.region, core);
        format!("http://{}/{}/{name}", self.call.host, self.ctx.account_id)
    }

    /// `arn:aws:sqs:<region>:<account>:<name>` of core queue `core`.
    fn queue_arn(&self, core: &str) -> String {
        let (region, name) = split_core_name(&self.ctx.region, core);
        format!("arn:aws:sqs:{region}:{}:{name}", self.ctx.account_id)
    }
}

/// Each region is a namespace of its own (as in AWS): queue `name` of the configured region is the core queue
/// `name` (so AMQP clients find it by that name), of another region the core queue `<region>:<name>` (a colon
/// is never part of an SQS queue name).
fn core_name_in(home: &str, region: &str, name: &str) -> String {
    if region == home {
        name.to_owned()
    } else {
        format!("{region}:{name}")
    }
}

/// The region and SQS name of a core queue name (see [`core_name_in`]).
fn split_core_name<'a>(home: &'a str, core: &'a str) -> (&'a str, &'a str) {
    core.split_once(':').unwrap_or((home, core))
}
