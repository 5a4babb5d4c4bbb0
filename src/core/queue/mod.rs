//! Queues as actors: each queue is one tokio task owning its messages and consumers, driven by commands over a
//! bounded channel (per-queue ordering and back-pressure, no global lock). This module owns the handle other
//! parts hold and the vocabulary they speak to the actor with; `actor` owns the state machine, `args` the
//! typed `x-*` arguments, `entry` one message as the actor holds it, `level` one priority's ready messages
//! (a loaded head and a paged tail), `tail` the compact form of a paged backlog.

mod actor;
pub mod args;
mod entry;
pub(crate) mod flow;
mod level;
mod tail;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::core::message::Headers;
use tokio::sync::{mpsc, oneshot};

use super::CoreError;
use super::error::Entity;
use super::memory::MemoryGauge;
use super::message::Message;
use crate::store::{MsgId, QueueKey, RecoveredQueue, Store, SyncPoint};
pub use args::{Overflow, QueueArgs};

/// The declare argument that carries a queue's front-end attributes in its journaled definition (ignored by
/// the equivalence check of a re-declare).
pub const ATTRIBUTES_ARGUMENT: &str = "x-attributes";
/// The argument a queue's lengthened deadlines are journaled in (see [`QueueHandle::deadline_shifts`]).
const DEADLINE_SHIFTS_ARGUMENT: &str = "x-deadline-shifts";
/// Most lengthenings a queue keeps (the oldest are forgotten first).
const MAX_DEADLINE_SHIFTS: usize = 32;

/// Capacity of a queue's command channel: publishers wait (back-pressure) when a queue falls this far behind.
const COMMAND_CAPACITY: usize = 4096;

/// Identifies a consumer across the broker (allocated by [`crate::core::Broker::next_consumer_key`]).
pub type ConsumerKey = u64;

/// Identifies a connection (owner of exclusive queues).
pub type ConnId = u64;

/// How many deliveries a consumer may have handed to its sink but not yet written to the wire: bounds the
/// memory a slow socket can pin, independently of prefetch (which bounds unacked messages).
pub const WRITE_WINDOW: u32 = 2000;
/// How many body bytes a consumer may have handed to its sink but not yet written to the wire (one delivery
/// always goes, however large). A no-ack delivery leaves the queue when it is handed out, but its bytes stay
/// in the memory gauge until its connection reports it written.
pub const WRITE_WINDOW_BYTES: u64 = 4 * 1024 * 1024;

/// Where a consumer's deliveries go: one channel per connection, read by the connection's writer.
pub type ConsumerSink = mpsc::UnboundedSender<SinkEvent>;

/// What a queue tells a consumer's connection.
#[derive(Debug)]
pub enum SinkEvent {
    /// Messages for one consumer, in queue order: what one delivery pass handed it.
    Deliver(Deliveries),
    /// The queue cancelled the consumer (queue deleted): RabbitMQ's consumer_cancel_notify.
    Cancelled { consumer: ConsumerKey },
}

/// One message handed to a consumer or returned by `get`.
#[derive(Debug)]
pub struct Delivery {
    pub consumer: ConsumerKey,
    pub queue: QueueHandle,
    /// Queue-local id used to settle the delivery.
    pub tag: u64,
    pub message: Arc<Message>,
    pub redelivered: bool,
    /// Messages still ready in the queue after this one (for basic.get-ok).
    pub remaining: u32,
}

/// Messages a queue hands one consumer at once (see [`SinkEvent::Deliver`]).
#[derive(Debug)]
pub struct Deliveries {
    pub consumer: ConsumerKey,
    pub queue: QueueHandle,
    pub items: Vec<Delivered>,
}

/// One message of [`Deliveries`].
#[derive(Debug)]
pub struct Delivered {
    /// Queue-local id used to settle the delivery.
    pub tag: u64,
    pub message: Arc<Message>,
    pub redelivered: bool,
}

/// Per-channel prefetch shared by all consumers of one channel (AMQP basic.qos with global=true).
#[derive(Debug, Default)]
pub struct ChannelLimit {
    pub limit: AtomicU32,
    pub unacked: AtomicU32,
}

impl ChannelLimit {
    /// Take one unit of credit; false when the channel is at its limit.
    pub fn try_acquire(&self) -> bool {
        let limit = self.limit.load(Ordering::Relaxed);
        if limit == 0 {
            self.unacked.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        self.unacked
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_ok()
    }
    /// Return `n` units of credit.
    pub fn release(&self, n: u32) {
        let _ = self
            .unacked
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(n))
            });
    }
}

/// A consumer as the queue needs to know it.
#[derive(Debug)]
pub struct ConsumerSpec {
    pub key: ConsumerKey,
    pub tag: Arc<str>,
    pub no_ack: bool,
    pub exclusive: bool,
    pub priority: i32,
    /// Per-consumer prefetch count; 0 = unlimited.
    pub prefetch: u32,
    pub channel_limit: Option<Arc<ChannelLimit>>,
    pub sink: ConsumerSink,
}

/// How a delivery is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Acked: removed for good.
    Ack,
    /// Put back at its original position, marked redelivered.
    Requeue,
    /// Rejected without requeue: dead-lettered if the queue has a DLX, else dropped.
    Reject,
}

/// Outcome of enqueueing one publish, reported only when the publisher asked (confirm mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    Accepted,
    /// Refused by `x-overflow = reject-publish(-dlx)`: the publisher gets a nack, once the settlement of the
    /// journaled message is durable at this point (if it was journaled).
    Rejected(Option<SyncPoint>),
}

/// One routed message for a queue; a publisher hands them over in batches ([`Command::Publish`]).
#[derive(Debug)]
pub(crate) struct Enqueue {
    pub message: Arc<Message>,
    pub store_id: Option<MsgId>,
    /// Where to say whether the queue took it (asked only of queues that may refuse).
    pub reply: Option<oneshot::Sender<Enqueued>>,
}

pub(crate) enum Command {
    /// Messages in publish order: one command for what one publisher routed here since its last flush.
    Publish(Vec<Enqueue>),
    Consume {
        spec: ConsumerSpec,
        reply: oneshot::Sender<Result<(), CoreError>>,
    },
    Cancel {
        consumer: ConsumerKey,
        reply: Option<oneshot::Sender<()>>,
    },
    Get {
        no_ack: bool,
        lease: Option<Duration>,
        reply: oneshot::Sender<Option<Delivery>>,
    },
    Settle {
        tags: Vec<u64>,
        outcome: Settle,
        consumer: Option<ConsumerKey>,
    },
    /// Deliveries a consumer's connection has written out (returns write-window credit).
    Written {
        consumer: ConsumerKey,
        count: u32,
        /// Their body bytes.
        bytes: u64,
    },
    /// Re-try deliveries (channel credit was released elsewhere).
    Wake,
    /// A new `x-expires` (an MQTT session's expiry interval changed): `None` never expires.
    SetExpires(Option<Duration>),
    Stats {
        reply: oneshot::Sender<QueueStats>,
    },
    Purge {
        reply: oneshot::Sender<u32>,
    },
    Delete {
        if_unused: bool,
        if_empty: bool,
        reply: oneshot::Sender<Result<u32, CoreError>>,
    },
    /// Recovered messages, restored before any publish (those without a body are restored paged out).
    Restore {
        messages: RecoveredQueue,
    },
    /// Leased receive with long polling (SQS ReceiveMessage).
    Receive {
        request: ReceiveRequest,
        reply: oneshot::Sender<Vec<Received>>,
    },
    /// A new lease for a received message (SQS ChangeMessageVisibility); false when it is not out (under
    /// that receive, when one is named).
    ChangeLease {
        tag: u64,
        lease: Duration,
        receive: Option<u32>,
        reply: oneshot::Sender<bool>,
    },
    /// Messages out under a lease leave the queue (SQS PurgeQueue, which takes those in flight too).
    PurgeReceived {
        reply: oneshot::Sender<u32>,
    },
    /// Received messages leave the queue, whether still out or visible again (SQS DeleteMessage).
    DeleteReceived {
        tags: Vec<u64>,
        reply: oneshot::Sender<()>,
    },
    /// Moves the deadlines before `before_ms` by `delta_ms` (see [`QueueHandle::shift_deadlines`]).
    ShiftDeadlines {
        before_ms: u64,
        delta_ms: i64,
    },
    /// The messages whose deadline is at or after `after_ms` (see [`QueueHandle::recent`]).
    Recent {
        after_ms: u64,
        max: usize,
        reply: oneshot::Sender<Vec<Arc<Message>>>,
    },
}

/// What a leased receive asks for (SQS ReceiveMessage).
#[derive(Debug, Clone, Copy)]
pub struct ReceiveRequest {
    /// At most this many messages.
    pub max: usize,
    /// Each is invisible to others for this long unless settled (the visibility timeout).
    pub lease: Duration,
    /// How long to wait for a first message when the queue is empty (long polling; zero: answer at once).
    pub wait: Duration,
    /// Messages with this header are grouped by its value, and a group with a message out under a lease is
    /// locked: none of its messages is handed out until that one is settled or visible again (SQS FIFO
    /// message groups). Messages without the header are not grouped.
    pub group_by: Option<&'static str>,
}

/// One message handed out by a leased receive.
#[derive(Debug)]
pub struct Received {
    pub delivery: Delivery,
    /// How often this message has been received, this time included (SQS ApproximateReceiveCount).
    pub receive_count: u32,
    /// When it was first received, ms since the epoch.
    pub first_receive_ms: u64,
}

/// Counts reported by a queue (queue.declare-ok, purge, health).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    pub messages: u32,
    pub consumers: u32,
    pub unacked: u32,
    /// Ready messages whose body is in memory; the others are paged out to the store (see `actor`).
    pub loaded: u32,
    /// Messages held until their delivery time (`Annotations::deliver_at`), not counted in `messages`.
    pub delayed: u32,
}

/// Immutable facts about a queue plus the command channel to its actor.
#[derive(Debug)]
pub struct QueueShared {
    pub name: String,
    pub vhost: String,
    pub durable: bool,
    pub auto_delete: bool,
    /// Connection owning an exclusive queue.
    pub exclusive_owner: Option<ConnId>,
    pub arguments: Headers,
    pub args: QueueArgs,
    pub key: QueueKey,
    /// Attributes a front end keeps with the queue (SQS queue attributes and tags), journaled with its
    /// definition as the `x-attributes` argument; see [`QueueHandle::attributes`].
    attributes: std::sync::Mutex<Headers>,
    /// The current `x-expires`: the declared one until [`QueueHandle::set_expires`] changes it.
    expires: std::sync::Mutex<Option<Duration>>,
    /// Lengthened deadlines, journaled as the `x-deadline-shifts` argument; see [`QueueHandle::deadline_shifts`].
    deadline_shifts: std::sync::Mutex<Vec<(u64, i64)>>,
    /// Whether publishers should wait for this queue (see `flow`).
    pub(crate) flow: flow::Flow,
    tx: mpsc::Sender<Command>,
    deleted: AtomicBool,
}

/// The front-end attributes held in a queue's `x-attributes` argument (none when absent).
/// The lengthened deadlines journaled in `arguments` (`x-deadline-shifts`: a list of [before_ms, delta_ms]).
fn deadline_shifts_of(arguments: &Headers) -> Vec<(u64, i64)> {
    use crate::core::message::Value;
    let Some(Value::Array(list)) = arguments.get(DEADLINE_SHIFTS_ARGUMENT) else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|pair| match pair {
            Value::Array(p) => match p.as_slice() {
                [before, delta] => Some((u64::try_from(before.as_i64()?).ok()?, delta.as_i64()?)),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

fn attributes_of(arguments: &Headers) -> Headers {
    match arguments.get(ATTRIBUTES_ARGUMENT) {
        Some(crate::core::message::Value::Map(m)) => m.clone(),
        _ => Headers::new(),
    }
}

/// Cheap-to-clone handle to a queue actor; equal when it names the same queue instance.
#[derive(Debug, Clone)]
pub struct QueueHandle(Arc<QueueShared>);

impl PartialEq for QueueHandle {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}
impl Eq for QueueHandle {}

impl std::ops::Deref for QueueHandle {
    type Target = QueueShared;
    fn deref(&self) -> &QueueShared {
        &self.0
    }
}

/// What a new queue is made of.
#[derive(Debug)]
pub(crate) struct QueueInit {
    pub name: String,
    pub durable: bool,
    pub auto_delete: bool,
    pub exclusive_owner: Option<ConnId>,
    pub arguments: Headers,
    pub args: QueueArgs,
}

/// What a queue needs of the namespace it lives in (the vhost implements it): routing its dead-lettered
/// messages, and forgetting it when it deletes itself. A trait, so that queues do not depend on the vhost that
/// holds them (no import circle in the core).
pub(crate) trait QueueHost: Send + Sync + std::fmt::Debug {
    /// The vhost's name.
    fn name(&self) -> &str;
    /// The broker-wide memory gauge the queue accounts its messages in.
    fn memory(&self) -> &Arc<MemoryGauge>;
    /// The queues a message published to `exchange` reaches.
    fn route(&self, exchange: &str, message: &Message) -> Vec<QueueHandle>;
    /// Journals (when durable) and enqueues a message the broker produced, without waiting on any queue.
    fn enqueue_detached(&self, message: Arc<Message>, targets: &[QueueHandle]);
    /// Removes a queue that deleted itself from the namespace.
    fn forget_queue(&self, queue: &QueueHandle);
}

impl QueueHandle {
    /// Spawn the actor for a new queue in `host`.
    pub(crate) fn spawn(
        init: QueueInit,
        host: Weak<dyn QueueHost>,
        store: Arc<dyn Store>,
    ) -> Option<QueueHandle> {
        let strong = host.upgrade()?;
        let (tx, rx) = mpsc::channel(COMMAND_CAPACITY);
        let shared = QueueShared {
            attributes: std::sync::Mutex::new(attributes_of(&init.arguments)),
            expires: std::sync::Mutex::new(init.args.expires),
            deadline_shifts: std::sync::Mutex::new(deadline_shifts_of(&init.arguments)),
            flow: flow::Flow::default(),
            key: QueueKey::new(strong.name(), init.name.clone()),
            name: init.name,
            vhost: strong.name().to_owned(),
            durable: init.durable,
            auto_delete: init.auto_delete,
            exclusive_owner: init.exclusive_owner,
            arguments: init.arguments,
            args: init.args,
            tx,
            deleted: AtomicBool::new(false),
        };
        let handle = QueueHandle(Arc::new(shared));
        actor::spawn(handle.clone(), rx, host, store, strong.memory().clone());
        Some(handle)
    }

    /// Identifies this queue instance while it is alive (the address of its shared part).
    pub(crate) fn id(&self) -> usize {
        Arc::as_ptr(&self.0) as usize
    }

    /// The attributes a front end keeps with this queue (empty unless set).
    pub fn attributes(&self) -> Headers {
        self.attributes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Replaces the attributes in memory; the vhost journals them first ([`QueueHandle::arguments_with`]).
    pub(crate) fn set_attributes(&self, attributes: Headers) {
        *self
            .attributes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = attributes;
    }

    /// Takes the attributes and lengthened deadlines of a later journaled definition of this queue
    /// (recovery); none when it has none.
    pub(crate) fn restore_attributes(&self, arguments: &Headers) {
        self.set_attributes(attributes_of(arguments));
        *self.shifts() = deadline_shifts_of(arguments);
    }

    fn shifts(&self) -> std::sync::MutexGuard<'_, Vec<(u64, i64)>> {
        self.deadline_shifts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The queue's lengthened deadlines, oldest first: each (before_ms, delta_ms) moved every deadline before
    /// `before_ms` later by `delta_ms` ([`QueueHandle::shift_deadlines`] with a positive delta). Journaled
    /// with the queue's definition, so recovered messages (whose journaled deadlines are the ones they were
    /// published with) are moved again at restore.
    pub(crate) fn deadline_shifts(&self) -> Vec<(u64, i64)> {
        self.shifts().clone()
    }

    /// Records a lengthening in memory, before the vhost journals it ([`QueueHandle::arguments_with`]).
    pub(crate) fn add_deadline_shift(&self, before_ms: u64, delta_ms: i64) {
        let mut shifts = self.shifts();
        if shifts.len() == MAX_DEADLINE_SHIFTS {
            shifts.remove(0);
        }
        shifts.push((before_ms, delta_ms));
    }

    /// Takes back the lengthening just recorded (its journaling failed).
    pub(crate) fn forget_last_deadline_shift(&self) {
        self.shifts().pop();
    }

    /// The declare arguments with the given `x-expires` and attributes, and the current lengthened deadlines,
    /// in place of the declared ones: what is journaled when any changes, so that replaying the latest
    /// definition restores them all.
    pub(crate) fn arguments_with(
        &self,
        expires: Option<Duration>,
        attributes: &Headers,
    ) -> Headers {
        use crate::core::message::Value;
        let mut arguments = self.arguments.clone();
        match expires {
            Some(d) => arguments.set(
                "x-expires",
                Value::I64(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            ),
            None => drop(arguments.remove("x-expires")),
        }
        if attributes.is_empty() {
            drop(arguments.remove(ATTRIBUTES_ARGUMENT));
        } else {
            arguments.set(ATTRIBUTES_ARGUMENT, Value::Map(attributes.clone()));
        }
        let shifts = self.deadline_shifts();
        if shifts.is_empty() {
            drop(arguments.remove(DEADLINE_SHIFTS_ARGUMENT));
        } else {
            let pair = |(before, delta): (u64, i64)| {
                Value::Array(vec![
                    Value::I64(i64::try_from(before).unwrap_or(i64::MAX)),
                    Value::I64(delta),
                ])
            };
            let list = shifts.into_iter().map(pair).collect();
            arguments.set(DEADLINE_SHIFTS_ARGUMENT, Value::Array(list));
        }
        arguments
    }

    /// The queue's current `x-expires`.
    pub(crate) fn expires(&self) -> Option<Duration> {
        *self
            .expires
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether the queue has been deleted.
    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    pub(crate) fn mark_deleted(&self) {
        self.deleted.store(true, Ordering::Release);
    }

    fn gone(&self) -> CoreError {
        CoreError::not_found(Entity::Queue, &self.vhost, &self.name)
    }

    async fn send(&self, cmd: Command) -> Result<(), CoreError> {
        self.tx.send(cmd).await.map_err(|_| self.gone())
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, CoreError> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx)).await?;
        rx.await.map_err(|_| self.gone())
    }

    /// Enqueue routed messages, in order (waits while the queue's command channel is full: back-pressure).
    pub(crate) async fn publish(&self, batch: Vec<Enqueue>) {
        // A queue deleted under a publisher simply drops the messages, as in RabbitMQ.
        let _ = self.tx.send(Command::Publish(batch)).await;
    }

    /// Enqueue without waiting (dead-lettering from another queue's actor must never block on a full channel).
    pub(crate) fn publish_detached(&self, message: Arc<Message>, store_id: Option<MsgId>) {
        self.try_or_spawn(Command::Publish(vec![Enqueue {
            message,
            store_id,
            reply: None,
        }]));
    }

    /// Register a consumer.
    pub async fn consume(&self, spec: ConsumerSpec) -> Result<(), CoreError> {
        self.ask(|reply| Command::Consume { spec, reply }).await?
    }

    /// Cancel a consumer; its unacked deliveries stay unacked until settled.
    pub async fn cancel(&self, consumer: ConsumerKey) {
        let _ = self
            .ask(|reply| Command::Cancel {
                consumer,
                reply: Some(reply),
            })
            .await;
    }

    /// Cancel without waiting for the queue (used when a channel closes).
    pub fn cancel_detached(&self, consumer: ConsumerKey) {
        self.try_or_spawn(Command::Cancel {
            consumer,
            reply: None,
        });
    }

    /// Take one message. `no_ack` removes it at once; otherwise it stays unacked (until settled, or until the
    /// lease runs out when one is given: SQS visibility).
    pub async fn get(
        &self,
        no_ack: bool,
        lease: Option<Duration>,
    ) -> Result<Option<Delivery>, CoreError> {
        self.ask(|reply| Command::Get {
            no_ack,
            lease,
            reply,
        })
        .await
    }

    /// Leased receive: up to `request.max` messages, waiting up to `request.wait` for the first one.
    pub async fn receive(&self, request: ReceiveRequest) -> Result<Vec<Received>, CoreError> {
        self.ask(|reply| Command::Receive { request, reply }).await
    }

    /// Sets a new lease on received message `tag` (zero: visible again now), if it is out (and, when `receive`
    /// is given, out under that receive). False when it is not (settled, or its lease ran out).
    pub async fn change_lease(
        &self,
        tag: u64,
        lease: Duration,
        receive: Option<u32>,
    ) -> Result<bool, CoreError> {
        self.ask(|reply| Command::ChangeLease {
            tag,
            lease,
            receive,
            reply,
        })
        .await
    }

    /// Messages out under a lease (received, not settled) leave the queue; returns how many.
    pub async fn purge_received(&self) -> Result<u32, CoreError> {
        self.ask(|reply| Command::PurgeReceived { reply }).await
    }

    /// Up to `max` of the queue's messages (ready, delayed or out under a lease; the newest when there are
    /// more) whose expiry deadline is at or after `after_ms` (ms since the epoch). A message paged out to the
    /// store is read back without its body (properties, headers and annotations only). For messages with a
    /// fixed time to live these are the recently published ones: a front end rebuilds what it keeps about
    /// recent publishes from them after a restart (SQS FIFO deduplication).
    pub async fn recent(&self, after_ms: u64, max: usize) -> Result<Vec<Arc<Message>>, CoreError> {
        self.ask(|reply| Command::Recent {
            after_ms,
            max,
            reply,
        })
        .await
    }

    /// Moves by `delta_ms` the expiry deadline of every message in the actor whose deadline is before
    /// `before_ms` (ms since the epoch); `Session::shift_queue_deadlines` is the journaled way in.
    pub(crate) fn shift_deadlines(&self, before_ms: u64, delta_ms: i64) {
        self.try_or_spawn(Command::ShiftDeadlines {
            before_ms,
            delta_ms,
        });
    }

    /// Received messages leave the queue, whether still out under a lease or visible again since.
    pub async fn delete_received(&self, tags: Vec<u64>) -> Result<(), CoreError> {
        self.ask(|reply| Command::DeleteReceived { tags, reply })
            .await
    }

    /// Settle deliveries of this queue. Never blocks on a full command channel.
    pub fn settle(&self, tags: Vec<u64>, outcome: Settle, consumer: Option<ConsumerKey>) {
        if tags.is_empty() {
            return;
        }
        self.try_or_spawn(Command::Settle {
            tags,
            outcome,
            consumer,
        });
    }

    /// Return write-window credit for `count` deliveries of `bytes` body bytes written to the wire.
    pub fn written(&self, consumer: ConsumerKey, count: u32, bytes: u64) {
        self.try_or_spawn(Command::Written {
            consumer,
            count,
            bytes,
        });
    }

    /// Change how long the queue may stay unused before it deletes itself (`x-expires`); see
    /// `Session::set_queue_expires`, which also journals it.
    pub(crate) fn set_expires(&self, expires: Option<Duration>) {
        *self
            .expires
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = expires;
        self.try_or_spawn(Command::SetExpires(expires));
    }

    /// Ask the queue to retry deliveries.
    pub fn wake(&self) {
        let _ = self.tx.try_send(Command::Wake);
    }

    fn try_or_spawn(&self, cmd: Command) {
        if let Err(mpsc::error::TrySendError::Full(cmd)) = self.tx.try_send(cmd) {
            let tx = self.tx.clone();
            tokio::spawn(async move {
                let _ = tx.send(cmd).await;
            });
        }
    }

    /// Message, consumer and unacked counts, ordered after every command already sent.
    pub async fn stats(&self) -> Result<QueueStats, CoreError> {
        self.ask(|reply| Command::Stats { reply }).await
    }

    /// Drop every ready message; returns how many.
    pub async fn purge(&self) -> Result<u32, CoreError> {
        self.ask(|reply| Command::Purge { reply }).await
    }

    /// Stop the actor: cancels consumers, drops messages. Returns the number of ready messages dropped.
    pub(crate) async fn delete(&self, if_unused: bool, if_empty: bool) -> Result<u32, CoreError> {
        self.ask(|reply| Command::Delete {
            if_unused,
            if_empty,
            reply,
        })
        .await?
    }

    /// Stop the actor without waiting (replay of a journaled deletion).
    pub(crate) fn wake_stop(&self) {
        let (reply, _) = oneshot::channel();
        self.try_or_spawn(Command::Delete {
            if_unused: false,
            if_empty: false,
            reply,
        });
    }

    pub(crate) async fn restore(&self, messages: RecoveredQueue) {
        let _ = self.send(Command::Restore { messages }).await;
    }
}
