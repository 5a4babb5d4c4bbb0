//! A virtual host: the namespace of exchanges and queues, and the routing that crosses them (default
//! exchange, exchange-to-exchange bindings, alternate exchanges, CC/BCC sender-selected distribution).
//! Definition changes of durable entities are journaled here, so every front end gets the same behaviour.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};

use super::message::{Headers, Value};
use super::persist;
use tracing::warn;

use super::CoreError;
use super::error::Entity;
use super::exchange::{Destination, Exchange, ExchangeKind};
use super::memory::MemoryGauge;
use super::message::Message;
use super::queue::{ConnId, QueueArgs, QueueHandle, QueueHost, QueueInit};
use super::retained::Retained;
use crate::store::{Binding, Definition, DestinationKind, MsgId, Opaque, Store, SyncPoint};

/// Exchanges every vhost has: the default exchange and the `amq.*` ones.
const PREDECLARED: [(&str, ExchangeKind); 6] = [
    ("", ExchangeKind::Direct),
    ("amq.direct", ExchangeKind::Direct),
    ("amq.fanout", ExchangeKind::Fanout),
    ("amq.topic", ExchangeKind::Topic),
    ("amq.headers", ExchangeKind::Headers),
    ("amq.match", ExchangeKind::Headers),
];

/// How many exchanges one routing pass records without allocating (see `Visited`); more are recorded too.
const VISITED_INLINE: usize = 16;

/// Arguments of exchange.declare.
#[derive(Debug, Clone)]
pub struct ExchangeSpec {
    pub name: String,
    pub kind: String,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: Headers,
}

/// Arguments of queue.declare (the name already generated when the client left it empty).
#[derive(Debug, Clone)]
pub struct QueueSpec {
    pub name: String,
    pub durable: bool,
    pub exclusive_owner: Option<ConnId>,
    pub auto_delete: bool,
    pub arguments: Headers,
}

/// The limits of one vhost (`None`: unlimited).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Queues it may hold (RabbitMQ's vhost `max-queues`).
    pub(crate) queues: Option<usize>,
    /// Consumers each of its queues may have.
    pub(crate) consumers_per_queue: Option<usize>,
}

/// Whether a declare should journal its definition (live declares do; replay at recovery does not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Journal {
    Write,
    Replay,
}

/// See the module docs.
#[derive(Debug)]
pub struct VHost {
    pub name: String,
    exchanges: RwLock<HashMap<String, Arc<Exchange>>>,
    queues: RwLock<HashMap<String, QueueHandle>>,
    store: Arc<dyn Store>,
    ids: Arc<AtomicU64>,
    memory: Arc<MemoryGauge>,
    /// Bumped by every change that can change where a message routes (exchanges, bindings, queues): routing
    /// results cached by a publisher stay valid while it is unchanged.
    topology: AtomicU64,
    limits: Limits,
    /// MQTT retained messages of this vhost.
    retained: Retained,
    me: Weak<VHost>,
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}
fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

impl VHost {
    pub(crate) fn new(
        name: String,
        store: Arc<dyn Store>,
        ids: Arc<AtomicU64>,
        memory: Arc<MemoryGauge>,
        limits: Limits,
    ) -> Arc<Self> {
        let exchanges = PREDECLARED
            .iter()
            .map(|(n, k)| {
                let ex =
                    Exchange::new((*n).to_owned(), *k, true, false, false, &Headers::default());
                ((*n).to_owned(), Arc::new(ex))
            })
            .collect();
        Arc::new_cyclic(|me| VHost {
            name,
            exchanges: RwLock::new(exchanges),
            queues: RwLock::new(HashMap::new()),
            store,
            ids,
            memory,
            topology: AtomicU64::new(0),
            limits,
            retained: Retained::default(),
            me: me.clone(),
        })
    }

    fn no_exchange(&self, name: &str) -> CoreError {
        CoreError::not_found(Entity::Exchange, &self.name, name)
    }
    fn no_queue(&self, name: &str) -> CoreError {
        CoreError::not_found(Entity::Queue, &self.name, name)
    }

    /// Journals a definition change. Callers hold the lock that orders the change they journal (the exchanges
    /// map, the queues map, or the source exchange's bindings), so the journal's order is memory's order: a
    /// delete racing a re-declare of the same name can never be journaled the other way round.
    fn journal(
        &self,
        journal: Journal,
        definition: impl FnOnce() -> Definition,
    ) -> Result<(), CoreError> {
        if journal == Journal::Write {
            self.store.define(&definition()).map_err(CoreError::store)?;
        }
        Ok(())
    }

    /// The current topology generation (see the field).
    pub fn topology(&self) -> u64 {
        self.topology.load(Ordering::Acquire)
    }

    fn topology_changed(&self) {
        self.topology.fetch_add(1, Ordering::AcqRel);
    }

    /// Look up an exchange.
    pub fn exchange(&self, name: &str) -> Option<Arc<Exchange>> {
        read(&self.exchanges).get(name).cloned()
    }

    /// Look up a queue.
    pub fn queue(&self, name: &str) -> Option<QueueHandle> {
        read(&self.queues).get(name).cloned()
    }

    /// Every queue (for connection cleanup, stats and recovery).
    pub fn queues(&self) -> Vec<QueueHandle> {
        read(&self.queues).values().cloned().collect()
    }

    /// Every exchange.
    pub fn exchanges(&self) -> Vec<Arc<Exchange>> {
        read(&self.exchanges).values().cloned().collect()
    }

    /// Retains `message` under its routing key (an empty body clears the key), journaled when `journal`
    /// says so: the sync point a publisher waits for before it answers.
    pub(crate) fn retain(
        &self,
        message: Arc<Message>,
        journal: Journal,
    ) -> Result<Option<SyncPoint>, CoreError> {
        self.retained.set(message, &self.memory, |m| {
            if journal == Journal::Replay {
                return Ok(None);
            }
            let (vhost, key) = (self.name.clone(), m.routing_key.clone());
            let definition = if m.body.is_empty() {
                Definition::DeleteRetained { vhost, key }
            } else {
                let meta = Opaque::current(super::message::codec::encode_meta(m));
                Definition::Retained {
                    vhost,
                    key,
                    meta,
                    body: m.body.clone(),
                }
            };
            self.store
                .define(&definition)
                .map(Some)
                .map_err(CoreError::store)
        })
    }

    /// The retained messages whose routing key `pattern` matches.
    pub(crate) fn retained_matching(&self, pattern: &str) -> Vec<Arc<Message>> {
        self.retained.matching(pattern)
    }

    /// Every binding whose destination is the queue `queue`: (source exchange, routing key, arguments).
    pub(crate) fn bindings_to_queue(&self, queue: &QueueHandle) -> Vec<BindingSpec> {
        let destination = Destination::Queue(queue.clone());
        self.exchanges()
            .iter()
            .flat_map(|ex| {
                ex.bindings_to(&destination)
                    .into_iter()
                    .map(|(routing_key, arguments)| BindingSpec {
                        source: ex.name.clone(),
                        destination: queue.name.clone(),
                        destination_kind: DestinationKind::Queue,
                        routing_key,
                        arguments,
                    })
            })
            .collect()
    }

    /// Changes a queue's `x-expires` (journaled for a durable queue, under the queues lock that orders its
    /// definitions: the journal then holds the queue's new arguments, which replay applies to the queue
    /// already declared).
    pub(crate) fn set_queue_expires(
        &self,
        name: &str,
        expires: Option<std::time::Duration>,
        journal: Journal,
    ) -> Result<(), CoreError> {
        let queues = write(&self.queues);
        let queue = queues.get(name).ok_or_else(|| self.no_queue(name))?;
        if queue.durable && queue.exclusive_owner.is_none() {
            let arguments = queue.arguments_with(expires, &queue.attributes());
            self.journal(journal, || Definition::Queue {
                vhost: self.name.clone(),
                name: name.to_owned(),
                auto_delete: queue.auto_delete,
                arguments: persist::args_out(&arguments),
            })?;
        }
        queue.set_expires(expires);
        Ok(())
    }

    /// Moves the deadlines of queue `name`'s messages before `before_ms` by `delta_ms`; a lengthening is
    /// journaled with the queue's definition (so recovered messages are moved again), a shortening is not (a
    /// journaled shortening could not tell the messages published before it from those published after).
    pub(crate) fn shift_queue_deadlines(
        &self,
        name: &str,
        before_ms: u64,
        delta_ms: i64,
    ) -> Result<(), CoreError> {
        let queues = write(&self.queues);
        let queue = queues.get(name).ok_or_else(|| self.no_queue(name))?;
        if delta_ms > 0 && queue.durable && queue.exclusive_owner.is_none() {
            queue.add_deadline_shift(before_ms, delta_ms);
            let journaled = self.journal(Journal::Write, || Definition::Queue {
                vhost: self.name.clone(),
                name: name.to_owned(),
                auto_delete: queue.auto_delete,
                arguments: persist::args_out(
                    &queue.arguments_with(queue.expires(), &queue.attributes()),
                ),
            });
            if let Err(e) = journaled {
                queue.forget_last_deadline_shift();
                return Err(e);
            }
        }
        queue.shift_deadlines(before_ms, delta_ms);
        Ok(())
    }

    /// Look up an exchange or fail with RabbitMQ's 404 text.
    pub fn existing_exchange(&self, name: &str) -> Result<Arc<Exchange>, CoreError> {
        self.exchange(name).ok_or_else(|| self.no_exchange(name))
    }

    /// Look up a queue or fail with RabbitMQ's 404 text.
    pub fn existing_queue(&self, name: &str) -> Result<QueueHandle, CoreError> {
        self.queue(name).ok_or_else(|| self.no_queue(name))
    }

    // ---- exchanges ----

    pub(crate) fn declare_exchange(
        &self,
        spec: ExchangeSpec,
        journal: Journal,
    ) -> Result<(), CoreError> {
        if spec.name.is_empty() {
            return Err(CoreError::AccessRefused(
                "operation not permitted on the default exchange".into(),
            ));
        }
        let kind = ExchangeKind::parse(&spec.kind)?;
        if let Some(existing) = self.exchange(&spec.name) {
            return self.check_equivalent_exchange(&existing, kind, &spec);
        }
        if spec.name.starts_with("amq.") && journal == Journal::Write {
            return Err(CoreError::AccessRefused(format!(
                "exchange name '{}' contains reserved prefix 'amq.*'",
                spec.name
            )));
        }
        let mut exchanges = write(&self.exchanges);
        if let Some(existing) = exchanges.get(&spec.name) {
            return self.check_equivalent_exchange(existing, kind, &spec); // lost a race with a declare
        }
        if spec.durable {
            self.journal(journal, || Definition::Exchange {
                vhost: self.name.clone(),
                name: spec.name.clone(),
                kind: spec.kind.clone(),
                auto_delete: spec.auto_delete,
                internal: spec.internal,
                arguments: persist::args_out(&spec.arguments),
            })?;
        }
        let exchange = Exchange::new(
            spec.name.clone(),
            kind,
            spec.durable,
            spec.auto_delete,
            spec.internal,
            &spec.arguments,
        );
        exchanges.insert(spec.name, Arc::new(exchange));
        drop(exchanges);
        self.topology_changed();
        Ok(())
    }

    fn check_equivalent_exchange(
        &self,
        ex: &Exchange,
        kind: ExchangeKind,
        spec: &ExchangeSpec,
    ) -> Result<(), CoreError> {
        if ex.kind != kind {
            return Err(inequivalent(
                Entity::Exchange,
                &ex.name,
                &self.name,
                "type",
                &spec.kind,
                ex.kind.as_str(),
            ));
        }
        let flags = [
            ("durable", spec.durable, ex.durable),
            ("auto_delete", spec.auto_delete, ex.auto_delete),
            ("internal", spec.internal, ex.internal),
        ];
        same_flags(Entity::Exchange, &ex.name, &self.name, &flags)
    }

    pub(crate) fn delete_exchange(
        &self,
        name: &str,
        if_unused: bool,
        journal: Journal,
    ) -> Result<(), CoreError> {
        if name.is_empty() || name.starts_with("amq.") {
            return Err(CoreError::AccessRefused(format!(
                "operation not permitted on the {} exchange",
                if name.is_empty() {
                    "default".to_string()
                } else {
                    format!("system exchange '{name}'")
                }
            )));
        }
        let Some(ex) = self.exchange(name) else {
            return Ok(()); // RabbitMQ: deleting a missing exchange is not an error
        };
        if if_unused && ex.binding_count() > 0 {
            return Err(CoreError::InUse {
                kind: Entity::Exchange,
                vhost: self.name.clone(),
                name: name.to_owned(),
            });
        }
        self.remove_exchange(&ex, journal)
    }

    fn remove_exchange(&self, ex: &Arc<Exchange>, journal: Journal) -> Result<(), CoreError> {
        {
            let mut exchanges = write(&self.exchanges);
            if !exchanges.get(&ex.name).is_some_and(|e| Arc::ptr_eq(e, ex)) {
                return Ok(()); // already gone (a concurrent delete)
            }
            if ex.durable {
                self.journal(journal, || Definition::DeleteExchange {
                    vhost: self.name.clone(),
                    name: ex.name.clone(),
                })?;
            }
            exchanges.remove(&ex.name);
        }
        ex.mark_deleted();
        self.topology_changed();
        let dest = Destination::Exchange(ex.name.clone());
        self.remove_destination_everywhere(&dest, journal);
        Ok(())
    }

    /// Drop every binding to `dest`; source exchanges that are auto-delete and lose their last binding go too.
    fn remove_destination_everywhere(&self, dest: &Destination, journal: Journal) {
        for source in self.exchanges() {
            if source.remove_destination(dest) > 0
                && source.auto_delete
                && source.binding_count() == 0
                && let Err(e) = self.remove_exchange(&source, journal)
            {
                warn!(exchange = %source.name, error = %e, "auto-delete of exchange failed");
            }
        }
    }

    // ---- bindings ----

    fn destination(
        &self,
        destination: &str,
        kind: DestinationKind,
    ) -> Result<Destination, CoreError> {
        match kind {
            DestinationKind::Queue => Ok(Destination::Queue(self.existing_queue(destination)?)),
            DestinationKind::Exchange => {
                self.existing_exchange(destination)?;
                Ok(Destination::Exchange(destination.to_owned()))
            }
        }
    }

    fn durable(&self, dest: &Destination) -> bool {
        match dest {
            Destination::Queue(q) => q.durable && q.exclusive_owner.is_none(),
            Destination::Exchange(name) => self.exchange(name).is_some_and(|e| e.durable),
        }
    }

    /// exchange.bind / queue.bind, or their unbind: change the binding, journal it when both ends are
    /// durable, and drop an auto-delete source that lost its last binding.
    pub(crate) fn change_binding(
        &self,
        op: BindOp,
        b: &BindingSpec,
        journal: Journal,
    ) -> Result<(), CoreError> {
        let dest = self.destination(&b.destination, b.destination_kind)?;
        let src = self.existing_exchange(&b.source)?;
        if b.source.is_empty() {
            return Err(CoreError::AccessRefused(format!(
                "operation not permitted on the default exchange (binding '{}')",
                b.destination
            )));
        }
        let durable = src.durable && self.durable(&dest);
        // Journaled by the exchange while it holds its bindings lock, only if the binding really changes.
        let record = || {
            if !durable {
                return Ok(());
            }
            self.journal(journal, || {
                let stored = b.to_store(&self.name);
                match op {
                    BindOp::Bind => Definition::Bind(stored),
                    BindOp::Unbind => Definition::Unbind(stored),
                }
            })
        };
        let changed = match op {
            BindOp::Bind => src.bind(dest, &b.routing_key, &b.arguments, record)?,
            BindOp::Unbind => src.unbind(&dest, &b.routing_key, &b.arguments, record)?,
        };
        if !changed {
            return Ok(());
        }
        self.topology_changed();
        if op == BindOp::Unbind && src.auto_delete && src.binding_count() == 0 {
            self.remove_exchange(&src, journal)?;
        }
        Ok(())
    }

    /// Journals a binding of the current topology again (replacing a format 1 record at recovery).
    pub(crate) fn journal_binding(&self, op: BindOp, b: &BindingSpec) -> Result<(), CoreError> {
        let stored = b.to_store(&self.name);
        self.journal(Journal::Write, || match op {
            BindOp::Bind => Definition::Bind(stored),
            BindOp::Unbind => Definition::Unbind(stored),
        })
    }

    // ---- queues ----

    /// Replaces the front-end attributes of `queue`, journaled (when durable) under the queues lock as its
    /// definition with the new `x-attributes` argument, so a restart brings them back.
    pub(crate) fn set_queue_attributes(
        &self,
        queue: &QueueHandle,
        attributes: Headers,
    ) -> Result<(), CoreError> {
        let queues = write(&self.queues);
        let current = queues
            .get(&queue.name)
            .filter(|q| *q == queue && !q.is_deleted());
        if current.is_none() {
            return Err(CoreError::not_found(Entity::Queue, &self.name, &queue.name));
        }
        if queue.durable && queue.exclusive_owner.is_none() {
            self.journal(Journal::Write, || Definition::Queue {
                vhost: self.name.clone(),
                name: queue.name.clone(),
                auto_delete: queue.auto_delete,
                arguments: persist::args_out(&queue.arguments_with(queue.expires(), &attributes)),
            })?;
        }
        queue.set_attributes(attributes);
        drop(queues);
        Ok(())
    }

    /// Declare (or find an equivalent) queue. Returns the queue and whether it was created.
    pub(crate) fn declare_queue(
        &self,
        spec: QueueSpec,
        journal: Journal,
    ) -> Result<(QueueHandle, bool), CoreError> {
        if let Some(existing) = self.queue(&spec.name).filter(|q| !q.is_deleted()) {
            self.check_exclusive_access(&existing, spec.exclusive_owner)?;
            self.check_equivalent_queue(&existing, &spec)?;
            return Ok((existing, false));
        }
        let mut args = QueueArgs::parse(&spec.arguments, &spec.name, &self.name)?;
        args.max_consumers = self.limits.consumers_per_queue;
        let me = self
            .me
            .upgrade()
            .ok_or_else(|| CoreError::not_found(Entity::VHost, &self.name, &self.name))?;
        let mut queues = write(&self.queues);
        if let Some(existing) = queues.get(&spec.name).cloned() {
            if !existing.is_deleted() {
                drop(queues);
                self.check_exclusive_access(&existing, spec.exclusive_owner)?;
                self.check_equivalent_queue(&existing, &spec)?;
                return Ok((existing, false)); // lost a race with a declare
            }
            // A queue being deleted whose delete has not reached the namespace yet: its end is journaled now,
            // before the new incarnation, so its messages do not come back into the new queue at a restart.
            if existing.durable && existing.exclusive_owner.is_none() {
                self.journal(journal, || Definition::DeleteQueue {
                    vhost: self.name.clone(),
                    name: existing.name.clone(),
                })?;
            }
            queues.remove(&spec.name);
        }
        if let Some(limit) = self.limits.queues
            && journal == Journal::Write
            && queues.len() >= limit
        {
            return Err(CoreError::LimitExceeded(format!(
                "cannot declare queue '{}': queue limit in vhost '{}' ({limit}) is reached",
                spec.name, self.name
            )));
        }
        if spec.durable && spec.exclusive_owner.is_none() {
            self.journal(journal, || Definition::Queue {
                vhost: self.name.clone(),
                name: spec.name.clone(),
                auto_delete: spec.auto_delete,
                arguments: persist::args_out(&spec.arguments),
            })?;
        }
        let init = QueueInit {
            name: spec.name.clone(),
            durable: spec.durable,
            auto_delete: spec.auto_delete,
            exclusive_owner: spec.exclusive_owner,
            arguments: spec.arguments,
            args,
        };
        let host: Arc<dyn QueueHost> = me;
        let handle = QueueHandle::spawn(init, Arc::downgrade(&host), self.store.clone())
            .ok_or_else(|| CoreError::not_found(Entity::VHost, &self.name, &self.name))?;
        self.topology_changed();
        queues.insert(spec.name, handle.clone());
        Ok((handle, true))
    }

    /// RabbitMQ: 405 RESOURCE_LOCKED when another connection owns an exclusive queue.
    pub fn check_exclusive_access(
        &self,
        queue: &QueueHandle,
        conn: Option<ConnId>,
    ) -> Result<(), CoreError> {
        match queue.exclusive_owner {
            Some(owner) if Some(owner) != conn => Err(CoreError::ResourceLocked {
                vhost: self.name.clone(),
                queue: queue.name.clone(),
            }),
            _ => Ok(()),
        }
    }

    fn check_equivalent_queue(&self, q: &QueueHandle, spec: &QueueSpec) -> Result<(), CoreError> {
        let flags = [
            ("durable", spec.durable, q.durable),
            ("auto_delete", spec.auto_delete, q.auto_delete),
            (
                "exclusive",
                spec.exclusive_owner.is_some(),
                q.exclusive_owner.is_some(),
            ),
        ];
        same_flags(Entity::Queue, &q.name, &self.name, &flags)?;
        for key in [
            "x-message-ttl",
            "x-expires",
            "x-max-length",
            "x-max-length-bytes",
            "x-overflow",
            "x-dead-letter-exchange",
            "x-dead-letter-routing-key",
            "x-max-priority",
            "x-single-active-consumer",
        ] {
            let (got, have) = (spec.arguments.get(key), q.arguments.get(key));
            let same = match (got, have) {
                (Some(a), Some(b)) => a.same_as(b),
                (None, None) => true,
                _ => false,
            };
            if !same {
                return Err(inequivalent(
                    Entity::Queue,
                    &q.name,
                    &self.name,
                    key,
                    &show(got),
                    &show(have),
                ));
            }
        }
        Ok(())
    }

    /// Remove a deleted queue from the namespace: its bindings go, and its definition is journaled away.
    pub(crate) fn forget_queue(&self, queue: &QueueHandle) {
        self.forget(queue, Journal::Write);
    }

    /// The same while replaying the journal: nothing is written back.
    pub(crate) fn forget_queue_replay(&self, queue: &QueueHandle) {
        self.forget(queue, Journal::Replay);
        queue.wake_stop();
    }

    fn forget(&self, queue: &QueueHandle, journal: Journal) {
        {
            let mut queues = write(&self.queues);
            if queues.get(&queue.name) != Some(queue) {
                return;
            }
            if queue.durable && queue.exclusive_owner.is_none() {
                let journaled = self.journal(journal, || Definition::DeleteQueue {
                    vhost: self.name.clone(),
                    name: queue.name.clone(),
                });
                if let Err(e) = journaled {
                    warn!(queue = %queue.name, error = %e, "could not journal queue deletion");
                }
            }
            queues.remove(&queue.name);
        }
        queue.mark_deleted();
        self.topology_changed();
        self.remove_destination_everywhere(&Destination::Queue(queue.clone()), journal);
    }

    /// Delete a queue (queue.delete). Returns the number of messages it held.
    pub(crate) async fn delete_queue(
        &self,
        name: &str,
        if_unused: bool,
        if_empty: bool,
    ) -> Result<u32, CoreError> {
        let Some(queue) = self.queue(name) else {
            return Ok(0); // RabbitMQ: deleting a missing queue is not an error
        };
        let count = queue.delete(if_unused, if_empty).await?;
        self.forget_queue(&queue);
        Ok(count)
    }

    /// Delete every exclusive queue owned by a connection that closed.
    pub(crate) async fn drop_exclusive(&self, conn: ConnId) {
        let owned: Vec<QueueHandle> = self
            .queues()
            .into_iter()
            .filter(|q| q.exclusive_owner == Some(conn))
            .collect();
        for queue in owned {
            let _ = queue.delete(false, false).await;
            self.forget_queue(&queue);
        }
    }

    // ---- routing ----

    /// The queues a message published to `exchange` reaches (deduplicated); none for a missing exchange.
    pub fn route(&self, exchange: &str, message: &Message) -> Vec<QueueHandle> {
        match self.exchange(exchange) {
            Some(ex) => self.route_via(&ex, message),
            None => Vec::new(),
        }
    }

    /// [`VHost::route`] from an exchange already looked up (the publish path checks it first).
    pub fn route_via(&self, ex: &Arc<Exchange>, message: &Message) -> Vec<QueueHandle> {
        let mut out = Vec::new();
        let headers = &message.headers;
        self.route_from(
            ex,
            &message.routing_key,
            headers,
            &mut out,
            &mut Visited::default(),
        );
        // Sender-selected distribution (RabbitMQ): CC and BCC headers add routing keys.
        for name in ["CC", "BCC"] {
            if let Some(Value::Array(items)) = headers.get(name) {
                for key in items.iter().filter_map(|v| v.as_str()) {
                    self.route_from(ex, key, headers, &mut out, &mut Visited::default());
                }
            }
        }
        out
    }

    fn route_from(
        &self,
        ex: &Arc<Exchange>,
        key: &str,
        headers: &Headers,
        out: &mut Vec<QueueHandle>,
        visited: &mut Visited,
    ) {
        if !visited.enter(ex) {
            return;
        }
        let before = out.len();
        if ex.name.is_empty() {
            if let Some(q) = self.queue(key) {
                push_unique(out, q);
            }
            return;
        }
        let mut next: Vec<String> = Vec::new();
        ex.route(key, headers, &mut |dest| match dest {
            Destination::Queue(q) => push_unique(out, q.clone()),
            Destination::Exchange(name) => next.push(name.clone()),
        });
        let mut routed_via_exchange = false;
        for name in next {
            if let Some(e) = self.exchange(&name) {
                let mark = out.len();
                self.route_from(&e, key, headers, out, visited);
                routed_via_exchange |= out.len() > mark;
            }
        }
        if out.len() == before
            && !routed_via_exchange
            && let Some(alternate) = ex.alternate.as_deref().and_then(|a| self.exchange(a))
        {
            self.route_from(&alternate, key, headers, out, visited);
        }
    }

    /// Allocate a message id for the store.
    pub(crate) fn next_message_id(&self) -> MsgId {
        self.ids.fetch_add(1, Ordering::Relaxed)
    }

    /// Which of `targets` journal a message and the store id to use; journals it when any does.
    pub(crate) fn persist(
        &self,
        message: &Message,
        targets: &[QueueHandle],
    ) -> Result<Option<(MsgId, SyncPoint)>, CoreError> {
        if !message.is_persistent() {
            return Ok(None);
        }
        let mut durable = targets.iter().filter(|q| q.durable);
        let Some(first) = durable.next() else {
            return Ok(None);
        };
        let id = self.next_message_id();
        let timed = targets
            .iter()
            .any(|q| q.durable && q.args.message_ttl.is_some());
        let stored = persist::stored(message, self.store.pages(), timed);
        // The common single durable target needs no list of its own.
        let point = match durable.next() {
            None => self
                .store
                .publish(id, std::slice::from_ref(&first.key), &stored),
            Some(_) => {
                let keys: Vec<_> = targets
                    .iter()
                    .filter(|q| q.durable)
                    .map(|q| q.key.clone())
                    .collect();
                self.store.publish(id, &keys, &stored)
            }
        };
        Ok(Some((id, point.map_err(CoreError::store)?)))
    }

    /// Enqueue a message produced inside the broker (dead-lettering) without waiting on any queue.
    pub(crate) fn enqueue_detached(&self, message: Arc<Message>, targets: &[QueueHandle]) {
        let id = match self.persist(&message, targets) {
            Ok(id) => id.map(|(id, _)| id),
            Err(e) => {
                warn!(error = %e, "dead-lettered message could not be journaled; dropped");
                return;
            }
        };
        for q in targets {
            q.publish_detached(message.clone(), if q.durable { id } else { None });
        }
    }
}

/// Bind or unbind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindOp {
    Bind,
    Unbind,
}

/// A binding as the core handles it (exchange.bind / queue.bind, MQTT subscriptions, SNS subscriptions).
#[derive(Debug, Clone, PartialEq)]
pub struct BindingSpec {
    pub source: String,
    pub destination: String,
    pub destination_kind: DestinationKind,
    pub routing_key: String,
    pub arguments: Headers,
}

impl BindingSpec {
    /// The store's record of this binding in `vhost`.
    fn to_store(&self, vhost: &str) -> Binding {
        Binding {
            vhost: vhost.to_owned(),
            source: self.source.clone(),
            destination: self.destination.clone(),
            destination_kind: self.destination_kind,
            routing_key: self.routing_key.clone(),
            arguments: persist::args_out(&self.arguments),
        }
    }

    /// A binding the store kept.
    pub(crate) fn from_store(b: &Binding) -> Result<Self, CoreError> {
        Ok(Self {
            source: b.source.clone(),
            destination: b.destination.clone(),
            destination_kind: b.destination_kind,
            routing_key: b.routing_key.clone(),
            arguments: persist::args_in(&b.arguments)?,
        })
    }
}

/// The exchanges one routing pass went through, so that each is visited once however many there are:
/// exchange-to-exchange bindings and alternate exchanges may form cycles (cut here) and diamonds (the second
/// path adds nothing). Exchanges are identified by address; the first [`VISITED_INLINE`] live in a fixed
/// array, so the usual publish allocates nothing, and any more spill into a set. No depth limit: a fanout to
/// twenty fanouts reaches all twenty (it used to stop silently after sixteen exchanges).
#[derive(Default)]
struct Visited {
    inline: [usize; VISITED_INLINE],
    len: usize,
    spill: std::collections::HashSet<usize>,
}

impl Visited {
    /// Record `ex`; false when this pass has visited it already.
    fn enter(&mut self, ex: &Arc<Exchange>) -> bool {
        let id = Arc::as_ptr(ex) as usize;
        if self.inline[..self.len].contains(&id) || self.spill.contains(&id) {
            return false;
        }
        if self.len < VISITED_INLINE {
            self.inline[self.len] = id;
            self.len += 1;
        } else {
            self.spill.insert(id);
        }
        true
    }
}

/// RabbitMQ's 406 for a redeclare that differs from the existing entity.
fn inequivalent(
    kind: Entity,
    name: &str,
    vhost: &str,
    field: &str,
    got: &str,
    have: &str,
) -> CoreError {
    CoreError::Inequivalent {
        kind,
        vhost: vhost.to_owned(),
        name: name.to_owned(),
        field: field.to_owned(),
        received: got.to_owned(),
        current: have.to_owned(),
    }
}

/// The first of `(field, received, current)` flags that differ, as [`inequivalent`].
fn same_flags(
    kind: Entity,
    name: &str,
    vhost: &str,
    flags: &[(&str, bool, bool)],
) -> Result<(), CoreError> {
    match flags.iter().find(|(_, got, have)| got != have) {
        Some((field, got, have)) => Err(inequivalent(
            kind,
            name,
            vhost,
            field,
            &got.to_string(),
            &have.to_string(),
        )),
        None => Ok(()),
    }
}

fn push_unique(out: &mut Vec<QueueHandle>, q: QueueHandle) {
    if !out.contains(&q) {
        out.push(q);
    }
}

fn show(v: Option<&Value>) -> String {
    match v {
        None => "none".into(),
        Some(v) => v
            .as_str()
            .map(str::to_owned)
            .or_else(|| v.as_i64().map(|n| n.to_string()))
            .unwrap_or_else(|| format!("{v:?}")),
    }
}

impl QueueHost for VHost {
    fn name(&self) -> &str {
        &self.name
    }

    fn memory(&self) -> &Arc<MemoryGauge> {
        &self.memory
    }

    fn route(&self, exchange: &str, message: &Message) -> Vec<QueueHandle> {
        VHost::route(self, exchange, message)
    }

    fn enqueue_detached(&self, message: Arc<Message>, targets: &[QueueHandle]) {
        VHost::enqueue_detached(self, message, targets)
    }

    fn forget_queue(&self, queue: &QueueHandle) {
        VHost::forget_queue(self, queue)
    }
}
