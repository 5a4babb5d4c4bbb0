//! The one publish path every front end uses. A [`Publisher`] belongs to one session (an AMQP channel, an MQTT
//! connection, an SQS request) and keeps its caches: the exchange of the previous publish and where it routed.
//! [`Publisher::publish`] checks the publish (exchange exists and may be written, not internal, `user_id` is the
//! session's user), routes it, journals it once when it is durable and reaches a durable queue, and hands it to
//! every target queue. Messages reach their queues in batches: a publisher gathers what it routes in an outbox,
//! one batch per queue, and [`Publisher::flush`] hands each queue its batch in one command, so a publisher that
//! reads hundreds of messages at once wakes each queue once.
//!
//! What the publisher is told comes back as a [`Receipt`]: unroutable (for AMQP `mandatory` / basic.return), or
//! routed with a [`Confirmation`] that settles once every target queue has answered (a queue with
//! `x-overflow = reject-publish` may refuse) and, for a journaled message, once the store has synced the record:
//! accepted, refused (with the reason) or failed. Adapters wait on a [`SyncView`] and translate the outcome
//! into their protocol (confirm ack / nack, PUBACK, an HTTP answer); none of them imports the store.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{oneshot, watch};

use super::CoreError;
use super::error::{Access, Entity};
use super::exchange::Exchange;
use super::message::Message;
use super::queue::{Enqueue, Enqueued, Overflow, QueueHandle};
use super::session::Session;
use super::vhost::VHost;
use crate::store::{SyncPoint, SyncState, SyncStatus};

/// What became of a publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every target queue took it and, if it was journaled, the record is on disk.
    Accepted,
    /// A target queue refused it (`x-overflow = reject-publish(-dlx)` with the queue full).
    Refused,
    /// The store failed before the record was on disk.
    Failed,
}

/// The answer to [`Publisher::publish`].
#[derive(Debug)]
pub enum Receipt {
    /// No queue took the message: it is handed back (AMQP returns it to a mandatory publisher).
    Unroutable(Arc<Message>),
    /// At least one queue took it; the confirmation settles later.
    Routed(Confirmation),
}

/// The pending outcome of a routed publish (see the module docs).
#[derive(Debug)]
pub struct Confirmation {
    sync: Option<SyncPoint>,
    answers: Vec<oneshot::Receiver<Enqueued>>,
}

impl Confirmation {
    /// Waits until every target queue that could refuse the message has answered; what is left to wait for
    /// is the store (see [`Settling::check`]).
    pub async fn queues_answered(self) -> Settling {
        let mut refused = None;
        for rx in self.answers {
            if let Ok(Enqueued::Rejected(settled)) = rx.await {
                refused = Some(settled.max(refused.flatten()));
            }
        }
        if let Some(settled) = refused {
            match settled {
                Some(point) => Settling::RefusedAfterSync(point),
                None => Settling::Done(Outcome::Refused),
            }
        } else {
            Settling::after_queues(self.sync)
        }
    }

    /// Whether any target queue may still refuse the message (the adapter may then await
    /// [`Confirmation::queues_answered`] off its hot path; otherwise it returns at once).
    pub fn awaits_queues(&self) -> bool {
        !self.answers.is_empty()
    }

    /// What is left to wait for when no queue is asked to answer, without awaiting anything; the
    /// confirmation itself when queues are asked (then await [`Confirmation::queues_answered`] after the
    /// publisher's flush).
    pub fn try_settling(self) -> Result<Settling, Self> {
        if self.awaits_queues() {
            return Err(self);
        }
        Ok(Settling::after_queues(self.sync))
    }

    /// Waits for the whole outcome (for adapters that answer one publish at a time).
    pub async fn outcome(self, view: &mut SyncView) -> Outcome {
        let settling = self.queues_answered().await;
        loop {
            if let Some(outcome) = settling.check(view) {
                return outcome;
            }
            if view.changed().await.is_err() {
                return Outcome::Failed;
            }
        }
    }
}

/// A confirmation that waits only for the store, if at all: small and `Copy`, kept in publish order by
/// adapters that confirm in order (AMQP publisher confirms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settling {
    Done(Outcome),
    AfterSync(SyncPoint),
    /// Refused; reported once the settlement of the refused message is on disk (so no crash can bring back a
    /// message its publisher was told was not taken).
    RefusedAfterSync(SyncPoint),
}

impl Settling {
    /// Once every queue took the message: accepted, after the store synced it if it was journaled.
    fn after_queues(sync: Option<SyncPoint>) -> Self {
        match sync {
            Some(point) => Settling::AfterSync(point),
            None => Settling::Done(Outcome::Accepted),
        }
    }

    /// The outcome, if it is known as of `view`.
    pub fn check(&self, view: &SyncView) -> Option<Outcome> {
        match *self {
            Settling::Done(outcome) => Some(outcome),
            Settling::AfterSync(point) => match view.rx.borrow().status(point) {
                SyncStatus::Durable => Some(Outcome::Accepted),
                SyncStatus::Failed => Some(Outcome::Failed),
                SyncStatus::Pending => None,
            },
            Settling::RefusedAfterSync(point) => match view.rx.borrow().status(point) {
                SyncStatus::Durable | SyncStatus::Failed => Some(Outcome::Refused),
                SyncStatus::Pending => None,
            },
        }
    }

    /// Whether it waits for the store.
    pub fn waits_for_store(&self) -> bool {
        matches!(self, Settling::AfterSync(_) | Settling::RefusedAfterSync(_))
    }
}

/// What the store has synced so far, to check [`Settling`]s against; `changed` wakes an adapter's loop.
#[derive(Debug, Clone)]
pub struct SyncView {
    rx: watch::Receiver<SyncState>,
}

impl SyncView {
    pub(crate) fn new(rx: watch::Receiver<SyncState>) -> Self {
        Self { rx }
    }

    /// Resolves when the store synced more (or failed); an error once the store is gone.
    pub async fn changed(&mut self) -> Result<(), watch::error::RecvError> {
        self.rx.changed().await
    }

    /// Whether the store has failed (it accepts no persistent writes until a restart).
    pub fn failed(&self) -> bool {
        self.rx.borrow().failed.is_some()
    }

    /// Waits until `settling` is known.
    pub async fn settled(&mut self, settling: Settling) -> Outcome {
        loop {
            if let Some(outcome) = settling.check(self) {
                return outcome;
            }
            if self.changed().await.is_err() {
                return Outcome::Failed;
            }
        }
    }
}

/// Most messages (counting each target queue) and body bytes a [`Publisher`] gathers before it must be
/// flushed ([`Publisher::is_full`]). A queue's command channel holds whole batches, so this also bounds what
/// a queue that falls behind can have waiting in its channel.
const OUTBOX_MESSAGES: usize = 64;
const OUTBOX_BYTES: usize = 256 * 1024;
/// Batches found by a linear search; a publisher feeding more queues at once also keeps an index.
const OUTBOX_LINEAR: usize = 8;

/// See the module docs.
#[derive(Debug)]
pub struct Publisher {
    session: Session,
    exchange: Option<Arc<Exchange>>,
    route: Option<RouteCache>,
    outbox: Outbox,
}

/// The last routing result of one publisher.
#[derive(Debug)]
struct RouteCache {
    exchange: Arc<Exchange>,
    routing_key: String,
    generation: u64,
    targets: Vec<QueueHandle>,
}

/// Routed messages not yet handed to their queues: one batch per queue, in publish order.
#[derive(Debug, Default)]
struct Outbox {
    batches: Vec<(QueueHandle, Vec<Enqueue>)>,
    /// Position in `batches` by queue, once there are more than [`OUTBOX_LINEAR`].
    index: HashMap<usize, usize>,
    messages: usize,
    bytes: usize,
}

impl Outbox {
    fn push(&mut self, queue: &QueueHandle, enqueue: Enqueue) {
        self.messages += 1;
        self.bytes += enqueue.message.body.len();
        let at = self.slot(queue);
        self.batches[at].1.push(enqueue);
    }

    fn slot(&mut self, queue: &QueueHandle) -> usize {
        let linear = self.batches.iter().take(OUTBOX_LINEAR);
        if let Some(at) = linear.clone().position(|(q, _)| q == queue) {
            return at;
        }
        if let Some(&at) = self.index.get(&queue.id()) {
            return at;
        }
        let at = self.batches.len();
        if at >= OUTBOX_LINEAR {
            self.index.insert(queue.id(), at);
        }
        let batch = Vec::with_capacity(OUTBOX_MESSAGES.min(16));
        self.batches.push((queue.clone(), batch));
        at
    }

    fn take(&mut self) -> Vec<(QueueHandle, Vec<Enqueue>)> {
        self.messages = 0;
        self.bytes = 0;
        self.index.clear();
        std::mem::take(&mut self.batches)
    }
}

impl Publisher {
    pub fn new(session: Session) -> Self {
        Self {
            session,
            exchange: None,
            route: None,
            outbox: Outbox::default(),
        }
    }

    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Publishes `message` to the exchange it names and hands it to its queues at once. `want_answers`: the
    /// caller will look at the outcome (confirms), so queues that may refuse the message are asked to answer.
    pub async fn publish(
        &mut self,
        message: impl Into<Arc<Message>>,
        want_answers: bool,
    ) -> Result<Receipt, CoreError> {
        let receipt = self.publish_buffered(message, want_answers);
        self.flush().await;
        receipt
    }

    /// Checks, routes and journals `message` like [`Publisher::publish`], but leaves it in this publisher's
    /// outbox: it reaches its queues on the next [`Publisher::flush`], one command per queue for everything
    /// gathered, in publish order. A front end that reads many publishes at once flushes after the lot, when
    /// [`Publisher::is_full`], and before anything that must see the messages queued (another method, a
    /// [`Confirmation`] that waits for queues).
    pub fn publish_buffered(
        &mut self,
        message: impl Into<Arc<Message>>,
        want_answers: bool,
    ) -> Result<Receipt, CoreError> {
        let mut message = message.into();
        let exchange = check(&mut self.exchange, &self.session, &message)?;
        let targets = route(&mut self.route, self.session.vhost(), exchange, &message);
        if targets.is_empty() {
            return Ok(Receipt::Unroutable(message));
        }
        // Sender-selected distribution: BCC is not passed on (RabbitMQ).
        if message.headers.get("BCC").is_some() {
            Arc::make_mut(&mut message).headers_mut().remove("BCC");
        }
        let persisted = self.session.vhost().persist(&message, &targets)?;
        let mut answers = Vec::new();
        for q in targets.iter() {
            let store_id = persisted.filter(|_| q.durable).map(|(id, _)| id);
            let ask = want_answers
                && q.args.overflow != Overflow::DropHead
                && (q.args.max_length.is_some() || q.args.max_length_bytes.is_some());
            let reply = ask.then(|| {
                let (tx, rx) = oneshot::channel();
                answers.push(rx);
                tx
            });
            let enqueue = Enqueue {
                message: message.clone(),
                store_id,
                reply,
            };
            self.outbox.push(q, enqueue);
        }
        Ok(Receipt::Routed(Confirmation {
            sync: persisted.map(|(_, p)| p),
            answers,
        }))
    }

    /// Whether messages wait in the outbox.
    pub fn has_pending(&self) -> bool {
        !self.outbox.batches.is_empty()
    }

    /// Whether the outbox holds as much as it should before a [`Publisher::flush`].
    pub fn is_full(&self) -> bool {
        self.outbox.messages >= OUTBOX_MESSAGES || self.outbox.bytes >= OUTBOX_BYTES
    }

    /// Hands what the outbox holds to the queues (waiting while a queue's command channel is full), then waits
    /// while one of them is congested (see `queue::flow`: at most `FLOW_WAIT` a queue).
    pub async fn flush(&mut self) {
        let mut congested = Vec::new();
        for (queue, batch) in self.outbox.take() {
            queue.publish(batch).await;
            if queue.flow.is_congested() {
                congested.push(queue);
            }
        }
        for queue in congested {
            queue.flow.wait().await;
        }
    }
}

/// The publish's exchange, checked: exists, may be written, is not internal; `user_id` is the session's.
/// The exchange of the previous publish (`cached`) is reused while it has the same name and was not deleted,
/// so a steady publisher skips the vhost's map and lock (and the exchange's reference count).
fn check<'a>(
    cached: &'a mut Option<Arc<Exchange>>,
    session: &Session,
    message: &Message,
) -> Result<&'a Arc<Exchange>, CoreError> {
    let name = message.exchange.as_str();
    let ex = match cached.take() {
        Some(ex) if same(&ex.name, name) && !ex.is_deleted() => ex,
        _ => session.vhost().existing_exchange(name)?,
    };
    let ex = cached.insert(ex);
    session.check(Access::Write, Entity::Exchange, name)?;
    session.check_topic(Access::Write, name, &message.routing_key)?;
    if ex.internal {
        return Err(CoreError::AccessRefused(format!(
            "cannot publish to internal exchange '{name}' in vhost '{}'",
            session.vhost().name
        )));
    }
    if let Some(user_id) = &message.properties.text().user_id
        && *user_id != session.user().name
    {
        return Err(CoreError::PreconditionFailed(format!(
            "user_id property set to '{user_id}' but authenticated user was '{}'",
            session.user().name
        )));
    }
    Ok(ex)
}

/// Where [`route`] found the target queues.
enum Targets<'a> {
    /// The publisher's cached result, borrowed.
    Cached(&'a [QueueHandle]),
    Fresh(Vec<QueueHandle>),
}

impl std::ops::Deref for Targets<'_> {
    type Target = [QueueHandle];

    fn deref(&self) -> &[QueueHandle] {
        match self {
            Targets::Cached(queues) => queues,
            Targets::Fresh(queues) => queues,
        }
    }
}

/// The target queues. The last result (`cache`) is reused for the same exchange and routing key while the
/// vhost's topology is unchanged, for messages without headers (whose routing depends on nothing else:
/// headers exchanges, CC/BCC, also behind exchange-to-exchange bindings or an alternate exchange).
fn route<'a>(
    cache: &'a mut Option<RouteCache>,
    vhost: &VHost,
    exchange: &Arc<Exchange>,
    message: &Message,
) -> Targets<'a> {
    if !message.headers.is_empty() {
        return Targets::Fresh(vhost.route_via(exchange, message));
    }
    let generation = vhost.topology();
    let hit = cache.as_ref().is_some_and(|c| {
        c.generation == generation
            && Arc::ptr_eq(&c.exchange, exchange)
            && same(&c.routing_key, &message.routing_key)
    });
    if !hit {
        *cache = None;
    }
    let c = cache.get_or_insert_with(|| RouteCache {
        exchange: exchange.clone(),
        routing_key: message.routing_key.clone(),
        generation,
        targets: vhost.route_via(exchange, message),
    });
    Targets::Cached(&c.targets)
}

/// `a == b`, without calling `memcmp` for two empty strings: glibc's AVX-512 `memcmp` takes about 100 ns to
/// compare zero bytes at the dangling address of an empty `String` (measured here), and the default exchange
/// and fanout routing keys are empty on every publish.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && (a.is_empty() || a == b)
}

/// Confirmations without a store, for the adapters' unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// A view of a store that synced up to `synced` (and failed after it, if `failed`).
    pub(crate) fn view(synced: u64, failed: bool) -> SyncView {
        let state = SyncState {
            synced: SyncPoint(synced),
            failed: failed.then(|| Arc::new(crate::store::StoreError::Failed("test".into()))),
        };
        SyncView::new(watch::channel(state).1)
    }

    /// A confirmation waiting for the store to sync `point`.
    pub(crate) fn after(point: u64) -> Settling {
        Settling::AfterSync(SyncPoint(point))
    }
}
