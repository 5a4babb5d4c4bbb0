//! The queue actor: owns ready messages (per priority level, in publish order), unacked deliveries, leases,
//! consumers and timers (TTL, x-expires, lease expiry). It processes commands in batches and then hands out
//! as many messages as consumers have credit for, so a burst of publishes costs one delivery pass.
//! Dead-lettering routes through the vhost without ever blocking on another queue's channel.
//!
//! Paging. A queue keeps at most [`PAGE_BUDGET_MESSAGES`] ready bodies or [`PAGE_BUDGET_BYTES`] of them in
//! memory, whichever comes first. Beyond it, a newly enqueued message that has a copy in a store that can read
//! it back ([`Store::pages`]: the journal) is kept as a paged entry: only its tag, store id, size, priority,
//! expiry and flags (an [`Entry`] without its `Arc<Message>`). When a paged entry reaches the head of its ready
//! list, it and the paged entries right behind it (up to [`READ_AHEAD`]) are read back with [`Store::read`]
//! (synchronously, in the actor: one positional read each, usually from the page cache). The store serves a
//! publish that is not yet synced by waiting for its group commit, so paging starts right after the publish is
//! journaled. Transient messages and messages of non-durable queues are never paged (the memory alarm bounds
//! them). TTL expiry needs no body; dead-lettering reads it back first. The memory gauge counts loaded bodies
//! only. A paged message that cannot be read back is dropped from the queue with an error but not settled in
//! the store, so it comes back after a restart instead of being lost.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::num::NonZeroU64;
use std::sync::{Arc, LazyLock, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use ferrymq_amqp_codec::{FieldTable, FieldValue};
use tokio::sync::mpsc;
use tracing::{debug, error, warn};

use super::{
    ChannelLimit, Command, ConsumerKey, ConsumerSpec, Delivery, Enqueued, Overflow, QueueHandle,
    QueueStats, SinkEvent, WRITE_WINDOW,
};
use crate::core::CoreError;
use crate::core::memory::{MESSAGE_OVERHEAD, MemoryGauge};
use crate::core::message::Message;
use crate::core::vhost::VHost;
use crate::store::{MsgId, RecoveredMessage, Store, message_ttl_ms};

/// Commands handled per batch before a delivery pass.
const BATCH: usize = 256;
/// At most this many ready bodies are kept in memory per queue (see the module docs on paging).
pub(crate) const PAGE_BUDGET_MESSAGES: usize = 4096;
/// At most this many bytes of ready bodies are kept in memory per queue.
pub(crate) const PAGE_BUDGET_BYTES: u64 = 8 * 1024 * 1024;
/// Paged entries read back at once when one reaches the head of its ready list.
const READ_AHEAD: usize = 64;

pub(super) fn spawn(
    me: QueueHandle,
    rx: mpsc::Receiver<Command>,
    vhost: Weak<VHost>,
    store: Arc<dyn Store>,
    memory: Arc<MemoryGauge>,
) {
    let levels = me.args.max_priority.map_or(1, |p| p as usize + 1);
    let pages = store.pages();
    let actor = Actor {
        me,
        vhost,
        store,
        memory,
        ready: (0..levels).map(|_| VecDeque::new()).collect(),
        ready_count: 0,
        ready_bytes: 0,
        loaded: 0,
        loaded_bytes: 0,
        pages,
        outstanding: HashMap::new(),
        leases: BTreeSet::new(),
        consumers: Vec::new(),
        rr: 0,
        next_tag: 1,
        last_used: Instant::now(),
        had_consumers: false,
        stopped: false,
    };
    tokio::spawn(actor.run(rx));
}

/// One message in the queue, ready or unacked. Kept small (40 bytes) because a backlog is millions of these:
/// the store id and the expiry are niche-packed, and the body is optional (`None`: paged out to the store).
struct Entry {
    tag: u64,
    /// The message, or `None` while it is paged out (then `store_id` is set).
    message: Option<Arc<Message>>,
    store_id: StoreRef,
    expires_at: Deadline,
    /// Body length (what `x-max-length-bytes` and the memory gauge count).
    size: u32,
    /// The message's priority property, for its ready list while paged.
    priority: u8,
    redelivered: bool,
}

/// A store id in 8 bytes: `id + 1`, so `None` takes no extra space. (The one id that cannot be stored this way,
/// `u64::MAX`, is never reached.)
#[derive(Clone, Copy)]
struct StoreRef(Option<NonZeroU64>);

impl StoreRef {
    fn new(id: Option<MsgId>) -> Self {
        Self(id.and_then(|id| NonZeroU64::new(id.checked_add(1)?)))
    }
    fn get(self) -> Option<MsgId> {
        self.0.map(|n| n.get() - 1)
    }
}

/// The process-wide instant expiry deadlines are counted from.
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// An optional deadline in 8 bytes: nanoseconds after [`EPOCH`] (at least 1).
#[derive(Clone, Copy)]
struct Deadline(Option<NonZeroU64>);

impl Deadline {
    fn new(at: Option<Instant>) -> Self {
        Self(at.and_then(|t| {
            let nanos = u64::try_from(t.saturating_duration_since(*EPOCH).as_nanos()).ok()?;
            NonZeroU64::new(nanos.max(1))
        }))
    }
    fn get(self) -> Option<Instant> {
        self.0.map(|n| *EPOCH + Duration::from_nanos(n.get()))
    }
}

impl Entry {
    /// What the entry counts for in the memory gauge: its body while loaded, nothing while paged.
    fn cost(&self) -> u64 {
        if self.message.is_some() {
            u64::from(self.size) + MESSAGE_OVERHEAD
        } else {
            0
        }
    }
}

struct Outstanding {
    entry: Entry,
    holder: Option<ConsumerKey>,
    lease_until: Option<Instant>,
    channel_limit: Option<Arc<ChannelLimit>>,
}

struct Consumer {
    spec: ConsumerSpec,
    unacked: u32,
    unwritten: u32,
}

impl Consumer {
    fn has_credit(&self) -> bool {
        self.unwritten < WRITE_WINDOW
            && (self.spec.no_ack || self.spec.prefetch == 0 || self.unacked < self.spec.prefetch)
    }
}

struct Actor {
    me: QueueHandle,
    vhost: Weak<VHost>,
    store: Arc<dyn Store>,
    memory: Arc<MemoryGauge>,
    ready: Vec<VecDeque<Entry>>,
    ready_count: usize,
    ready_bytes: u64,
    /// Ready entries whose body is loaded, and their bytes: what the paging budget bounds.
    loaded: usize,
    loaded_bytes: u64,
    /// Whether the store can read bodies back (only then are entries paged).
    pages: bool,
    outstanding: HashMap<u64, Outstanding>,
    leases: BTreeSet<(Instant, u64)>,
    consumers: Vec<Consumer>,
    rr: usize,
    next_tag: u64,
    last_used: Instant,
    had_consumers: bool,
    stopped: bool,
}

impl Actor {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        while !self.stopped {
            let deadline = self.next_deadline();
            let first = tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(cmd) => Some(cmd),
                    None => break,
                },
                _ = sleep_until(deadline) => None,
            };
            self.on_timers(Instant::now());
            if let Some(cmd) = first {
                self.handle(cmd);
                for _ in 1..BATCH {
                    if self.stopped {
                        break;
                    }
                    match rx.try_recv() {
                        Ok(cmd) => self.handle(cmd),
                        Err(_) => break,
                    }
                }
            }
            if !self.stopped {
                self.deliver();
            }
        }
        self.me.mark_deleted();
        debug!(queue = %self.me.name, vhost = %self.me.vhost, "queue actor stopped");
    }

    // ---- commands ----

    fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Publish {
                message,
                store_id,
                reply,
            } => {
                let outcome = self.enqueue(message, store_id);
                if let Some(reply) = reply {
                    let _ = reply.send(outcome);
                }
            }
            Command::Consume { spec, reply } => {
                let _ = reply.send(self.add_consumer(spec));
            }
            Command::Cancel { consumer, reply } => {
                self.remove_consumer(consumer, false);
                if let Some(reply) = reply {
                    let _ = reply.send(());
                }
            }
            Command::Get {
                no_ack,
                lease,
                reply,
            } => {
                self.last_used = Instant::now();
                let delivery = self.get(no_ack, lease);
                let _ = reply.send(delivery);
            }
            Command::Settle {
                tags,
                outcome,
                consumer,
            } => self.settle(tags, outcome, consumer),
            Command::Written { consumer, count } => {
                if let Some(c) = self.consumers.iter_mut().find(|c| c.spec.key == consumer) {
                    c.unwritten = c.unwritten.saturating_sub(count);
                }
            }
            Command::Wake => {}
            Command::Stats { reply } => {
                self.last_used = Instant::now();
                let _ = reply.send(self.stats());
            }
            Command::Purge { reply } => {
                let _ = reply.send(self.purge());
            }
            Command::Delete {
                if_unused,
                if_empty,
                reply,
            } => {
                let _ = reply.send(self.delete(if_unused, if_empty));
            }
            Command::Restore { mut messages } => {
                if let [only] = self.ready.as_mut_slice() {
                    only.reserve_exact(messages.messages.len());
                }
                for m in messages.messages {
                    let body = messages.bodies.remove(&m.id);
                    self.restore(m, body);
                }
            }
        }
    }

    /// A message entering the queue: numbered, given its expiry, and counted by the memory gauge until
    /// [`Actor::retire`] lets it go.
    fn new_entry(
        &mut self,
        message: Arc<Message>,
        store_id: Option<MsgId>,
        redelivered: bool,
    ) -> Entry {
        let tag = self.next_tag;
        self.next_tag += 1;
        let entry = Entry {
            tag,
            expires_at: Deadline::new(self.expiry_of(message_ttl_ms(&message))),
            size: u32::try_from(message.body.len()).unwrap_or(u32::MAX),
            priority: message.properties.priority.unwrap_or(0),
            message: Some(message),
            store_id: StoreRef::new(store_id),
            redelivered,
        };
        self.memory.add(entry.cost());
        entry
    }

    /// A recovered message: loaded if recovery loaded it, paged otherwise.
    fn restore(&mut self, m: RecoveredMessage, body: Option<Arc<Message>>) {
        let entry = match body {
            Some(message) => self.new_entry(message, Some(m.id), true),
            None => {
                let tag = self.next_tag;
                self.next_tag += 1;
                Entry {
                    tag,
                    message: None,
                    store_id: StoreRef::new(Some(m.id)),
                    expires_at: Deadline::new(self.expiry_of(m.expiration_ms())),
                    size: m.size,
                    priority: m.priority,
                    redelivered: true,
                }
            }
        };
        self.push_ready(entry);
    }

    fn expiry_of(&self, per_message: Option<u64>) -> Option<Instant> {
        let ttl_ms = match (
            self.me.args.message_ttl.map(|d| d.as_millis() as u64),
            per_message,
        ) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }?;
        Some(Instant::now() + Duration::from_millis(ttl_ms))
    }

    fn enqueue(&mut self, message: Arc<Message>, store_id: Option<MsgId>) -> Enqueued {
        let size = message.body.len() as u64;
        let entry = self.new_entry(message, store_id, false);
        let me = self.me.clone();
        let over = me
            .args
            .max_length
            .is_some_and(|max| self.ready_count as u64 + 1 > max)
            || me
                .args
                .max_length_bytes
                .is_some_and(|max| self.ready_bytes + size > max);
        if over {
            match me.args.overflow {
                Overflow::DropHead => {}
                Overflow::RejectPublish => {
                    self.drop_entry(entry);
                    return Enqueued::Rejected;
                }
                Overflow::RejectPublishDlx => {
                    self.dead_letter(entry, "maxlen");
                    return Enqueued::Rejected;
                }
            }
        }
        self.push_ready(entry);
        if self.me.args.overflow == Overflow::DropHead {
            while self.ready_count > 0 && self.exceeds_limits() {
                if let Some(head) = self.pop_ready_lowest() {
                    self.dead_letter(head, "maxlen");
                }
            }
        }
        Enqueued::Accepted
    }

    fn exceeds_limits(&self) -> bool {
        let args = &self.me.args;
        args.max_length
            .is_some_and(|max| self.ready_count as u64 > max)
            || args
                .max_length_bytes
                .is_some_and(|max| self.ready_bytes > max)
    }

    fn add_consumer(&mut self, spec: ConsumerSpec) -> Result<(), CoreError> {
        let exclusive_taken = self.consumers.iter().any(|c| c.spec.exclusive);
        if exclusive_taken || (spec.exclusive && !self.consumers.is_empty()) {
            return Err(CoreError::AccessRefused(format!(
                "queue '{}' in vhost '{}' in exclusive use",
                self.me.name, self.me.vhost
            )));
        }
        self.last_used = Instant::now();
        self.had_consumers = true;
        self.consumers.push(Consumer {
            spec,
            unacked: 0,
            unwritten: 0,
        });
        Ok(())
    }

    /// Remove a consumer. When its sink is gone (`lost`), its unacked deliveries are requeued here; otherwise
    /// they stay with the channel, which settles them.
    fn remove_consumer(&mut self, key: ConsumerKey, lost: bool) {
        let Some(pos) = self.consumers.iter().position(|c| c.spec.key == key) else {
            return;
        };
        self.consumers.remove(pos);
        self.last_used = Instant::now();
        if lost {
            let tags: Vec<u64> = self
                .outstanding
                .iter()
                .filter(|(_, o)| o.holder == Some(key))
                .map(|(t, _)| *t)
                .collect();
            self.settle(tags, super::Settle::Requeue, Some(key));
        }
        if self.consumers.is_empty() && self.had_consumers && self.me.auto_delete {
            self.self_delete("auto-delete: last consumer gone");
        }
    }

    fn get(&mut self, no_ack: bool, lease: Option<Duration>) -> Option<Delivery> {
        let (entry, message) = self.pop_ready()?;
        let remaining = self.ready_count as u32;
        let delivery = Delivery {
            consumer: 0,
            queue: self.me.clone(),
            tag: entry.tag,
            message,
            redelivered: entry.redelivered,
            remaining,
        };
        if no_ack {
            self.drop_entry(entry);
        } else {
            let lease_until = lease.map(|d| Instant::now() + d);
            if let Some(until) = lease_until {
                self.leases.insert((until, entry.tag));
            }
            self.outstanding.insert(
                entry.tag,
                Outstanding {
                    entry,
                    holder: None,
                    lease_until,
                    channel_limit: None,
                },
            );
        }
        Some(delivery)
    }

    fn settle(&mut self, tags: Vec<u64>, outcome: super::Settle, consumer: Option<ConsumerKey>) {
        let mut released = 0u32;
        for tag in tags {
            let Some(out) = self.outstanding.get(&tag) else {
                continue;
            };
            if out.holder != consumer {
                continue; // stale settle from a channel that no longer holds this delivery
            }
            let Some(out) = self.outstanding.remove(&tag) else {
                continue;
            };
            if let Some(until) = out.lease_until {
                self.leases.remove(&(until, tag));
            }
            if let Some(limit) = &out.channel_limit {
                limit.release(1);
            }
            released += 1;
            match outcome {
                super::Settle::Ack => self.drop_entry(out.entry),
                super::Settle::Requeue => self.requeue(out.entry),
                super::Settle::Reject => self.dead_letter(out.entry, "rejected"),
            }
        }
        if let Some(key) = consumer
            && let Some(c) = self.consumers.iter_mut().find(|c| c.spec.key == key)
        {
            c.unacked = c.unacked.saturating_sub(released);
        }
    }

    fn stats(&self) -> QueueStats {
        QueueStats {
            messages: self.ready_count as u32,
            consumers: self.consumers.len() as u32,
            unacked: self.outstanding.len() as u32,
            loaded: self.loaded as u32,
        }
    }

    fn purge(&mut self) -> u32 {
        let count = self.ready_count as u32;
        let levels = std::mem::take(&mut self.ready);
        self.ready = (0..levels.len()).map(|_| VecDeque::new()).collect();
        self.ready_count = 0;
        self.ready_bytes = 0;
        self.loaded = 0;
        self.loaded_bytes = 0;
        for entry in levels.into_iter().flatten() {
            self.retire(&entry);
        }
        count
    }

    fn delete(&mut self, if_unused: bool, if_empty: bool) -> Result<u32, CoreError> {
        if if_unused && !self.consumers.is_empty() {
            return Err(CoreError::PreconditionFailed(format!(
                "queue '{}' in vhost '{}' in use",
                self.me.name, self.me.vhost
            )));
        }
        if if_empty && self.ready_count > 0 {
            return Err(CoreError::PreconditionFailed(format!(
                "queue '{}' in vhost '{}' is not empty",
                self.me.name, self.me.vhost
            )));
        }
        Ok(self.stop())
    }

    /// Cancel every consumer and stop; returns the ready count at the time.
    fn stop(&mut self) -> u32 {
        for c in self.consumers.drain(..) {
            let _ = c.spec.sink.send(SinkEvent::Cancelled {
                consumer: c.spec.key,
            });
        }
        for out in self.outstanding.values() {
            if let Some(limit) = &out.channel_limit {
                limit.release(1);
            }
        }
        let held: u64 = self
            .ready
            .iter()
            .flatten()
            .chain(self.outstanding.values().map(|o| &o.entry))
            .map(Entry::cost)
            .sum();
        self.memory.sub(held);
        self.me.mark_deleted();
        self.stopped = true;
        self.ready_count as u32
    }

    /// Delete this queue on its own initiative (x-expires, auto-delete).
    fn self_delete(&mut self, why: &str) {
        debug!(queue = %self.me.name, vhost = %self.me.vhost, why, "queue deleting itself");
        if let Some(vhost) = self.vhost.upgrade() {
            vhost.forget_queue(&self.me);
        }
        self.stop();
    }

    // ---- ready list ----

    fn level_of(&self, priority: u8) -> usize {
        let top = self.ready.len() - 1;
        (priority as usize).min(top)
    }

    /// Whether the loaded ready bodies are at the paging budget.
    fn over_budget(&self, size: u32) -> bool {
        self.loaded >= PAGE_BUDGET_MESSAGES
            || self.loaded_bytes + u64::from(size) > PAGE_BUDGET_BYTES
    }

    /// Counts an entry entering the ready lists.
    fn count_in(&mut self, entry: &Entry) {
        self.ready_count += 1;
        self.ready_bytes += u64::from(entry.size);
        if entry.message.is_some() {
            self.loaded += 1;
            self.loaded_bytes += u64::from(entry.size);
        }
    }

    /// Appends an entry to its ready list, paging its body out if the queue is over its budget and the store
    /// has a copy to read back.
    fn push_ready(&mut self, mut entry: Entry) {
        if self.pages
            && entry.message.is_some()
            && entry.store_id.get().is_some()
            && self.over_budget(entry.size)
        {
            self.memory.sub(entry.cost());
            entry.message = None;
        }
        let level = self.level_of(entry.priority);
        self.count_in(&entry);
        self.ready[level].push_back(entry);
    }

    /// Puts an unacked entry back at its original position (it stays loaded: unacked entries are bounded by
    /// prefetch, and it is usually delivered again soon).
    fn requeue(&mut self, mut entry: Entry) {
        entry.redelivered = true;
        let level = self.level_of(entry.priority);
        self.count_in(&entry);
        let list = &mut self.ready[level];
        let at = list.partition_point(|e| e.tag < entry.tag);
        list.insert(at, entry);
    }

    /// Takes the head of a ready list as it is (possibly paged).
    fn take_from(&mut self, level: usize) -> Option<Entry> {
        let list = &mut self.ready[level];
        let entry = list.pop_front()?;
        // Give memory back after a backlog drained: a deque keeps its largest capacity otherwise.
        if list.capacity() > 8192 && list.len() * 4 < list.capacity() {
            list.shrink_to(list.len() * 2);
        }
        self.ready_count -= 1;
        self.ready_bytes -= u64::from(entry.size);
        if entry.message.is_some() {
            self.loaded -= 1;
            self.loaded_bytes -= u64::from(entry.size);
        }
        Some(entry)
    }

    /// If the head of `level` is paged, reads it and the paged entries right behind it (up to [`READ_AHEAD`]
    /// entries) back from the store. An entry that cannot be read stays paged.
    fn read_ahead(&mut self, level: usize) {
        if self.ready[level]
            .front()
            .is_none_or(|e| e.message.is_some())
        {
            return;
        }
        let (store, memory, queue) = (&self.store, &self.memory, &self.me);
        for entry in self.ready[level].iter_mut().take(READ_AHEAD) {
            if entry.message.is_some() {
                continue;
            }
            if load(store.as_ref(), memory, queue, entry) {
                self.loaded += 1;
                self.loaded_bytes += u64::from(entry.size);
            }
        }
    }

    /// The next message to hand out, highest priority first, with its body loaded. A paged entry that cannot
    /// be read back is dropped from the queue (not settled in the store: it returns after a restart).
    fn pop_ready(&mut self) -> Option<(Entry, Arc<Message>)> {
        loop {
            let level = (0..self.ready.len())
                .rev()
                .find(|l| !self.ready[*l].is_empty())?;
            self.read_ahead(level);
            let entry = self.take_from(level)?;
            if let Some(message) = entry.message.clone() {
                return Some((entry, message));
            }
            error!(queue = %self.me.name, vhost = %self.me.vhost, id = ?entry.store_id.get(),
                "paged message could not be read back; dropped from the queue until the next restart");
        }
    }

    /// Lowest priority first (what drop-head drops), possibly paged.
    fn pop_ready_lowest(&mut self) -> Option<Entry> {
        let level = (0..self.ready.len()).find(|l| !self.ready[*l].is_empty())?;
        self.take_from(level)
    }

    // ---- settlement ----

    /// A message leaves the queue for good: its settlement is journaled and its memory released.
    fn retire(&self, entry: &Entry) {
        self.memory.sub(entry.cost());
        if let Some(id) = entry.store_id.get()
            && let Err(e) = self.store.settle(&self.me.key, id)
        {
            warn!(queue = %self.me.name, error = %e, "could not journal settlement");
        }
    }

    fn drop_entry(&mut self, entry: Entry) {
        self.retire(&entry);
    }

    fn dead_letter(&mut self, mut entry: Entry, reason: &'static str) {
        let dlx = self.me.args.dead_letter_exchange.clone();
        let Some((dlx, vhost)) = dlx.zip(self.vhost.upgrade()) else {
            self.retire(&entry);
            return;
        };
        // A paged body is read back before the settlement lets the store forget it.
        if !load(self.store.as_ref(), &self.memory, &self.me, &mut entry) {
            return;
        }
        self.retire(&entry);
        let Some(original) = entry.message.as_deref() else {
            return;
        };
        let message = dead_lettered(original, &self.me, &dlx, reason);
        let mut targets = vhost.route(&dlx, &message);
        // Cycle: a message dead-lettered back into this queue for a reason other than rejection is dropped.
        if reason != "rejected" {
            targets.retain(|q| q != &self.me);
        }
        vhost.enqueue_detached(Arc::new(message), &targets);
    }

    // ---- delivery ----

    fn deliver(&mut self) {
        if self.consumers.is_empty() {
            return;
        }
        let mut blocked: Vec<ConsumerKey> = Vec::new();
        while self.ready_count > 0 {
            let Some(index) = self.pick_consumer(&mut blocked) else {
                break;
            };
            let Some((entry, message)) = self.pop_ready() else {
                // Nothing readable was left: give back the channel credit the pick took.
                let spec = &self.consumers[index].spec;
                if let Some(limit) = spec.channel_limit.as_ref().filter(|_| !spec.no_ack) {
                    limit.release(1);
                }
                break;
            };
            self.hand_to(index, entry, message);
        }
    }

    fn pick_consumer(&mut self, blocked: &mut Vec<ConsumerKey>) -> Option<usize> {
        loop {
            let eligible = |c: &Consumer| c.has_credit() && !blocked.contains(&c.spec.key);
            let n = self.consumers.len();
            let index = if self.me.args.single_active_consumer {
                eligible(&self.consumers[0]).then_some(0)?
            } else {
                let best = self
                    .consumers
                    .iter()
                    .filter(|c| eligible(c))
                    .map(|c| c.spec.priority)
                    .max()?;
                (0..n).map(|i| (self.rr + i) % n).find(|&i| {
                    eligible(&self.consumers[i]) && self.consumers[i].spec.priority == best
                })?
            };
            let consumer = &self.consumers[index];
            let channel_ok = consumer.spec.no_ack
                || consumer
                    .spec
                    .channel_limit
                    .as_ref()
                    .is_none_or(|l| l.try_acquire());
            if channel_ok {
                self.rr = index + 1;
                return Some(index);
            }
            blocked.push(consumer.spec.key);
        }
    }

    fn hand_to(&mut self, index: usize, entry: Entry, message: Arc<Message>) {
        let consumer = &mut self.consumers[index];
        let delivery = Delivery {
            consumer: consumer.spec.key,
            queue: self.me.clone(),
            tag: entry.tag,
            message,
            redelivered: entry.redelivered,
            remaining: 0,
        };
        let key = consumer.spec.key;
        let no_ack = consumer.spec.no_ack;
        let limit = if no_ack {
            None
        } else {
            consumer.spec.channel_limit.clone()
        };
        if consumer
            .spec
            .sink
            .send(SinkEvent::Deliver(delivery))
            .is_err()
        {
            if let Some(limit) = limit {
                limit.release(1);
            }
            self.requeue(entry);
            self.remove_consumer(key, true);
            return;
        }
        consumer.unwritten += 1;
        if no_ack {
            self.drop_entry(entry);
        } else {
            consumer.unacked += 1;
            self.outstanding.insert(
                entry.tag,
                Outstanding {
                    entry,
                    holder: Some(key),
                    lease_until: None,
                    channel_limit: limit,
                },
            );
        }
    }

    // ---- timers ----

    fn next_deadline(&self) -> Option<Instant> {
        let heads = self
            .ready
            .iter()
            .filter_map(|l| l.front().and_then(|e| e.expires_at.get()));
        let lease = self.leases.first().map(|(t, _)| *t);
        let idle = match (self.me.args.expires, self.consumers.is_empty()) {
            (Some(d), true) => Some(self.last_used + d),
            _ => None,
        };
        heads.chain(lease).chain(idle).min()
    }

    fn on_timers(&mut self, now: Instant) {
        for level in 0..self.ready.len() {
            while self.ready[level]
                .front()
                .and_then(|e| e.expires_at.get())
                .is_some_and(|t| t <= now)
            {
                if let Some(entry) = self.take_from(level) {
                    self.dead_letter(entry, "expired");
                }
            }
        }
        while let Some(&(until, tag)) = self.leases.first() {
            if until > now {
                break;
            }
            self.leases.pop_first();
            if let Some(out) = self.outstanding.remove(&tag) {
                self.requeue(out.entry);
            }
        }
        if let Some(d) = self.me.args.expires
            && self.consumers.is_empty()
            && now >= self.last_used + d
        {
            self.self_delete("x-expires: unused");
        }
    }
}

/// Reads a paged entry's body back from the store (counting it in the memory gauge); true if it is loaded.
fn load(store: &dyn Store, memory: &MemoryGauge, queue: &QueueHandle, entry: &mut Entry) -> bool {
    if entry.message.is_some() {
        return true;
    }
    let Some(id) = entry.store_id.get() else {
        return false;
    };
    match store.read(id) {
        Ok(message) => {
            entry.message = Some(Arc::new(message));
            memory.add(entry.cost());
            true
        }
        Err(e) => {
            error!(queue = %queue.name, vhost = %queue.vhost, id, error = %e, "could not read a paged message back");
            false
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

fn long_str(s: &str) -> FieldValue {
    FieldValue::LongStr(Bytes::copy_from_slice(s.as_bytes()))
}

/// The copy of `original` that goes to the dead-letter exchange: RabbitMQ's x-death bookkeeping
/// (one entry per queue and reason, most recent first, with a count), x-first-death-* and x-last-death-*,
/// the per-message expiration moved to `original-expiration`.
fn dead_lettered(original: &Message, queue: &QueueHandle, dlx: &str, reason: &str) -> Message {
    let mut message = original.clone();
    let routing_key = queue
        .args
        .dead_letter_routing_key
        .clone()
        .unwrap_or_else(|| original.routing_key.clone());
    let mut headers = message.properties.headers.take().unwrap_or_default();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut deaths = match headers.remove("x-death") {
        Some(FieldValue::Array(items)) => items,
        _ => Vec::new(),
    };
    let same = |v: &FieldValue| match v {
        FieldValue::Table(t) => {
            t.get("queue").and_then(|q| q.as_str()) == Some(queue.name.as_str())
                && t.get("reason").and_then(|r| r.as_str()) == Some(reason)
        }
        _ => false,
    };
    let previous = deaths.iter().position(same).map(|i| deaths.remove(i));
    let count = match &previous {
        Some(FieldValue::Table(t)) => t.get("count").and_then(|c| c.as_i64()).unwrap_or(0) + 1,
        _ => 1,
    };
    let mut death = FieldTable::default();
    death.insert("count", FieldValue::I64(count));
    death.insert("reason", long_str(reason));
    death.insert("queue", long_str(&queue.name));
    death.insert("time", FieldValue::Timestamp(now));
    death.insert("exchange", long_str(&original.exchange));
    death.insert(
        "routing-keys",
        FieldValue::Array(vec![long_str(&original.routing_key)]),
    );
    if let Some(expiration) = message.properties.expiration.take() {
        death.insert("original-expiration", long_str(&expiration));
    }
    deaths.insert(0, FieldValue::Table(death));
    if headers.get("x-first-death-reason").is_none() {
        headers.insert("x-first-death-reason", long_str(reason));
        headers.insert("x-first-death-queue", long_str(&queue.name));
        headers.insert("x-first-death-exchange", long_str(&original.exchange));
    }
    headers.insert("x-last-death-reason", long_str(reason));
    headers.insert("x-last-death-queue", long_str(&queue.name));
    headers.insert("x-last-death-exchange", long_str(&original.exchange));
    headers.insert("x-death", FieldValue::Array(deaths));
    message.properties.headers = Some(headers);
    message.exchange = dlx.to_string();
    message.routing_key = routing_key;
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backlog of 10 million messages is 10 million entries: keep them at 40 bytes.
    #[test]
    fn an_entry_is_forty_bytes() {
        assert_eq!(std::mem::size_of::<Entry>(), 40);
    }

    #[test]
    fn store_refs_and_deadlines_round_trip() {
        assert_eq!(StoreRef::new(Some(0)).get(), Some(0));
        assert_eq!(StoreRef::new(Some(41)).get(), Some(41));
        assert_eq!(StoreRef::new(None).get(), None);
        let at = Instant::now() + Duration::from_secs(5);
        let back = Deadline::new(Some(at)).get().map(|t| t.duration_since(at));
        assert_eq!(back, Some(Duration::ZERO));
        assert!(Deadline::new(None).get().is_none());
    }
}
