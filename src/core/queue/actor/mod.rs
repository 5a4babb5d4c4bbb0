//! The queue actor: owns ready messages (per priority level, in publish order), unacked deliveries, leases,
//! consumers and timers (TTL, x-expires, lease expiry). It processes commands in batches and then hands out
//! as many messages as consumers have credit for, so a burst of publishes costs one delivery pass.
//! Dead-lettering routes through the vhost without ever blocking on another queue's channel.
//!
//! Paging. A queue keeps at most [`PAGE_BUDGET_MESSAGES`] ready bodies or [`PAGE_BUDGET_BYTES`] of them in
//! memory, whichever comes first. Each ready level (`level`) is a loaded head, from which consumers are served,
//! followed by a paged tail (`tail`): beyond the budget, a newly enqueued message that has a copy in a store
//! that can read it back ([`Store::pages`]: the journal) goes to the tail without its body, in a compact form
//! of about 8 bytes (store id and size), and so does every such message behind it while the tail is not empty,
//! so that order is kept. Transient messages and messages of non-durable queues are never paged (the memory
//! alarm bounds them); one that arrives while a tail exists waits in the tail, loaded, in its place.
//!
//! Read-ahead. When the head of the level consumers are served from runs low ([`READ_LOW_MESSAGES`] /
//! [`READ_LOW_BYTES`]) and its tail is not empty, the actor hands the ids of the next paged messages (up to
//! [`READ_BATCH_MESSAGES`] / [`READ_BATCH_BYTES`], within the budget) to a blocking task that reads them with
//! [`Store::read`], and keeps serving consumers from the head meanwhile; the bodies come back to the actor's
//! loop and join the head. At most one batch is in flight per queue. When the head is empty, consumers and
//! `get`s wait for the batch (gets are answered in order once it arrives). The store serves a publish that is
//! not yet synced by waiting for its group commit, so paging starts right after the publish is journaled.
//!
//! A paged message that cannot be read back is dropped from the queue with an error but not settled in the
//! store, so it comes back after a restart instead of being lost. TTL expiry needs no body: an expired paged
//! message is settled as it is, unless it is to be dead-lettered, in which case it waits for its read like a
//! delivery. Drop-head overflow dead-letters a paged message after reading it in the actor (the queue must
//! shrink at once). Purge settles paged messages without reading them. The memory gauge counts loaded bodies
//! only, and no-ack deliveries until their connection reports them written (see [`WRITE_WINDOW_BYTES`]).
//!
//! Files: this one owns the state, the loop and the commands; `dispatch` hands messages to consumers, `paging`
//! reads paged bodies back, `dead_letter` makes dead-lettered copies, `timers` expiry and idle deadlines,
//! `receive` leased receives with long polling (SQS), `delay` messages held until their delivery time.

mod dead_letter;
mod delay;
mod dispatch;
mod paging;
mod receive;
mod recent;
mod timers;

use self::paging::load;
use self::timers::sleep_until;

use std::cell::Cell;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, warn};

use super::entry::{Deadline, Entry, StoreRef, Tags};
use super::level::Level;
use super::{
    ChannelLimit, Command, ConsumerKey, ConsumerSpec, Delivery, Enqueued, Overflow, QueueHandle,
    QueueHost, QueueStats, SinkEvent, WRITE_WINDOW, WRITE_WINDOW_BYTES,
};
use crate::core::CoreError;
use crate::core::error::Entity;
use crate::core::memory::{MESSAGE_OVERHEAD, MemoryGauge};
use crate::core::message::{Death, DeathReason, DeathSite, Message, now_ms};
use crate::core::persist;
use crate::store::{MsgId, RecoveredQueue, Store, StoreError, SyncPoint};

/// Commands handled per batch before a delivery pass.
const BATCH: usize = 256;
/// At most this many ready bodies are kept in memory per queue (see the module docs on paging).
pub(crate) const PAGE_BUDGET_MESSAGES: usize = 4096;
/// At most this many bytes of ready bodies are kept in memory per queue.
pub(crate) const PAGE_BUDGET_BYTES: u64 = 8 * 1024 * 1024;
/// A level's loaded head is low (a read-ahead batch starts) below this many messages and [`READ_LOW_BYTES`].
const READ_LOW_MESSAGES: usize = 1024;
const READ_LOW_BYTES: u64 = 2 * 1024 * 1024;
/// A read-ahead batch reads at most this many messages, and past the first at most [`READ_BATCH_BYTES`].
const READ_BATCH_MESSAGES: usize = 512;
const READ_BATCH_BYTES: u64 = 1024 * 1024;
/// A level whose head is empty reads this many messages even when other levels hold the whole budget.
pub(crate) const READ_STARVED_MESSAGES: usize = 64;

pub(super) fn spawn(
    me: QueueHandle,
    rx: mpsc::Receiver<Command>,
    vhost: Weak<dyn QueueHost>,
    store: Arc<dyn Store>,
    memory: Arc<MemoryGauge>,
) {
    let levels = me.args.max_priority.map_or(1, |p| p as usize + 1);
    let expires = me.args.expires;
    let pages = store.pages();
    let actor = Actor {
        me,
        vhost,
        store,
        memory: Held::new(memory),
        levels: new_levels(levels),
        tags: Tags::new(levels),
        ready_count: 0,
        ready_bytes: 0,
        loaded: 0,
        loaded_bytes: 0,
        pages,
        reading: None,
        gets: VecDeque::new(),
        receives: VecDeque::new(),
        receive_counts: HashMap::new(),
        groups: receive::Groups::default(),
        delayed: delay::Delayed::default(),
        outstanding: HashMap::new(),
        leases: BTreeSet::new(),
        consumers: Vec::new(),
        rr: 0,
        last_used: Instant::now(),
        expires,
        had_consumers: false,
        stopped: false,
        handed_out: 0,
        flow_seen: 0,
        last_handout: Instant::now(),
    };
    tokio::spawn(actor.run(rx));
}

fn new_levels(n: usize) -> Vec<Level> {
    (0..n)
        .map(|l| Level::new(u8::try_from(l).unwrap_or(u8::MAX)))
        .collect()
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
    /// Deliveries handed to the sink and not yet reported written, and their body bytes.
    unwritten: u32,
    unwritten_bytes: u64,
}

impl Consumer {
    fn has_credit(&self) -> bool {
        self.unwritten < WRITE_WINDOW
            && self.unwritten_bytes < WRITE_WINDOW_BYTES
            && (self.spec.no_ack || self.spec.prefetch == 0 || self.unacked < self.spec.prefetch)
    }

    /// What the memory gauge still counts for this consumer's no-ack deliveries in `count` deliveries of
    /// `bytes` (acked deliveries are counted as unacked entries instead).
    fn unwritten_cost(&self, count: u32, bytes: u64) -> u64 {
        if self.spec.no_ack {
            bytes + u64::from(count) * MESSAGE_OVERHEAD
        } else {
            0
        }
    }
}

/// A basic.get waiting for its answer (the message it would get is being read back).
struct PendingGet {
    no_ack: bool,
    lease: Option<Duration>,
    reply: oneshot::Sender<Option<Delivery>>,
}

/// What a read-ahead batch answers: each tag with its body or why it could not be read.
type ReadResults = Vec<(u64, Result<Message, StoreError>)>;

/// The read-ahead batch in flight.
struct Reading {
    level: usize,
    /// Tags and store ids asked for (to report them if the task dies without answering).
    asked: Vec<(u64, MsgId)>,
    rx: oneshot::Receiver<ReadResults>,
}

/// What woke the actor up.
enum Event {
    Command(Command),
    Read(Result<ReadResults, oneshot::error::RecvError>),
    Timer,
}

/// The actor's share of the memory gauge: what it adds and takes away is summed here and reported once per
/// turn of its loop, so a batch of messages costs the shared gauge one update instead of two per message.
pub(super) struct Held {
    gauge: Arc<MemoryGauge>,
    delta: Cell<i64>,
}

impl Held {
    fn new(gauge: Arc<MemoryGauge>) -> Self {
        Self {
            gauge,
            delta: Cell::new(0),
        }
    }

    pub(super) fn add(&self, bytes: u64) {
        let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
        self.delta.set(self.delta.get().saturating_add(bytes));
    }

    pub(super) fn sub(&self, bytes: u64) {
        let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
        self.delta.set(self.delta.get().saturating_sub(bytes));
    }

    /// Tells the gauge what changed since the last report.
    fn report(&self) {
        match self.delta.replace(0) {
            d if d > 0 => self.gauge.add(d.unsigned_abs()),
            d if d < 0 => self.gauge.sub(d.unsigned_abs()),
            _ => {}
        }
    }
}

struct Actor {
    me: QueueHandle,
    vhost: Weak<dyn QueueHost>,
    store: Arc<dyn Store>,
    memory: Held,
    levels: Vec<Level>,
    tags: Tags,
    ready_count: usize,
    ready_bytes: u64,
    /// Ready entries whose body is loaded, and their bytes: what the paging budget bounds.
    loaded: usize,
    loaded_bytes: u64,
    /// Whether the store can read bodies back (only then are entries paged).
    pages: bool,
    reading: Option<Reading>,
    /// Gets waiting for a read, answered in order.
    gets: VecDeque<PendingGet>,
    /// Leased receives waiting for messages (long polling), and how often messages were received.
    receives: VecDeque<receive::PendingReceive>,
    receive_counts: HashMap<u64, receive::ReceiveCount>,
    /// Locked message groups of leased receives.
    groups: receive::Groups,
    /// Messages not to be delivered yet (see `delay`).
    delayed: delay::Delayed,
    outstanding: HashMap<u64, Outstanding>,
    leases: BTreeSet<(Instant, u64)>,
    consumers: Vec<Consumer>,
    rr: usize,
    last_used: Instant,
    /// `x-expires`, as declared or as changed since (`Command::SetExpires`).
    expires: Option<Duration>,
    had_consumers: bool,
    stopped: bool,
    /// Messages handed out (to consumers, gets and receives) so far, the count when flow was last looked at,
    /// and when it last grew: whether consumers are draining the queue (see `queue::flow`).
    handed_out: u64,
    flow_seen: u64,
    last_handout: Instant,
}

/// Closes a stopped queue's command channel and drops what is still in it, including commands whose sender
/// took its slot before the close and writes them after: dropping the receiver instead would drain it only
/// once, and such a late command (holding an `ask`'s reply) would then live as long as the channel, which the
/// asking `QueueHandle` itself keeps alive: the ask would never be answered. Dropping a command drops its
/// reply, so every pending ask learns at once that the queue is gone.
async fn drain_after_stop(mut rx: mpsc::Receiver<Command>) {
    rx.close();
    while let Some(cmd) = rx.recv().await {
        drop(cmd);
    }
}

impl Actor {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        while !self.stopped {
            // One `now` for both: an expiry that falls due between them would otherwise be skipped by the
            // timer as waiting for a read that was not started.
            let now = Instant::now();
            self.read_ahead(now);
            let deadline = self.next_deadline(now);
            let event = tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(cmd) => Event::Command(cmd),
                    None => break,
                },
                done = read_done(&mut self.reading) => Event::Read(done),
                _ = sleep_until(deadline) => Event::Timer,
            };
            self.on_timers(Instant::now());
            match event {
                Event::Command(cmd) => {
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
                Event::Read(done) => {
                    self.on_read(done);
                    self.on_timers(Instant::now());
                }
                Event::Timer => {}
            }
            if !self.stopped {
                self.serve_gets();
                self.serve_receives(Instant::now());
                self.deliver();
                self.update_flow(Instant::now());
            }
            self.memory.report();
        }
        self.memory.report();
        self.me.mark_deleted();
        drain_after_stop(rx).await;
        debug!(queue = %self.me.name, vhost = %self.me.vhost, "queue actor stopped");
    }

    // ---- commands ----

    fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Publish(batch) => {
                for e in batch {
                    let outcome = self.enqueue(e.message, e.store_id);
                    if let Some(reply) = e.reply {
                        let _ = reply.send(outcome);
                    }
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
                self.gets.push_back(PendingGet {
                    no_ack,
                    lease,
                    reply,
                });
                self.serve_gets();
            }
            Command::Settle {
                tags,
                outcome,
                consumer,
            } => self.settle(tags, outcome, consumer),
            Command::Written {
                consumer,
                count,
                bytes,
            } => self.written(consumer, count, bytes),
            Command::Wake => {}
            Command::SetExpires(expires) => self.expires = expires,
            Command::Stats { reply } => {
                self.last_used = Instant::now();
                self.memory.report(); // the gauge, too, is current when the counts are
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
            Command::Restore { messages } => self.restore(messages),
            Command::Receive { request, reply } => self.receive(request, reply),
            Command::ChangeLease {
                tag,
                lease,
                receive,
                reply,
            } => {
                let _ = reply.send(self.change_lease(tag, lease, receive));
            }
            Command::PurgeReceived { reply } => {
                let _ = reply.send(self.purge_received());
            }
            Command::DeleteReceived { tags, reply } => {
                self.delete_received(tags);
                let _ = reply.send(());
            }
            Command::ShiftDeadlines {
                before_ms,
                delta_ms,
            } => self.shift_deadlines(timers::instant_at(before_ms), delta_ms),
            Command::Recent {
                after_ms,
                max,
                reply,
            } => self.recent(timers::instant_at(after_ms), max, reply),
        }
    }

    /// A message entering the queue: given its expiry and counted by the memory gauge until [`Actor::retire`]
    /// lets it go. `tag` is from [`Actor::take_tag`] if it is to be queued, 0 if it is turned away at once.
    fn new_entry(
        &mut self,
        message: Arc<Message>,
        store_id: Option<MsgId>,
        tag: u64,
        redelivered: bool,
        published_at_ms: Option<u64>,
    ) -> Entry {
        let deadline = message.properties.expiry.map(|e| e.at_ms);
        let entry = Entry {
            tag,
            expires_at: Deadline::new(self.expiry_of(deadline, published_at_ms)),
            size: u32::try_from(message.body.len()).unwrap_or(u32::MAX),
            priority: message.properties.priority.unwrap_or(0),
            message: Some(message),
            store_id: StoreRef::new(store_id),
            redelivered,
        };
        self.memory.add(entry.cost());
        entry
    }

    /// The next tag of the level a message of `priority` goes to.
    fn take_tag(&mut self, priority: u8) -> u64 {
        let level = self.level_of(priority);
        self.tags.take(level)
    }

    /// Recovered messages, in publish order: loaded if recovery loaded them (and the budget allows), straight
    /// into the paged tail otherwise.
    fn restore(&mut self, mut recovered: RecoveredQueue) {
        let messages = std::mem::take(&mut recovered.messages);
        // Deadlines come back as they were journaled with each message: the queue's lengthenings since apply.
        let shifts = self.me.deadline_shifts();
        let lengthened = |at: Option<u64>| {
            at.map(|mut at| {
                for &(before, delta) in &shifts {
                    if at < before {
                        at = at.saturating_add_signed(delta);
                    }
                }
                at
            })
        };
        for m in messages {
            let published = recovered.published_at_ms(&m);
            // Only the first few thousand messages of a backlog come with a body: no hash look-up for the rest.
            let body = if recovered.bodies.is_empty() {
                None
            } else {
                recovered.bodies.remove(&m.id)
            };
            let loaded = body.and_then(|stored| {
                let stored = Arc::try_unwrap(stored).unwrap_or_else(|a| (*a).clone());
                persist::restore(stored)
                    .inspect_err(|e| error!(queue = %self.me.name, id = m.id, error = %e, "recovered message unreadable; left on disk"))
                    .ok()
            });
            let loaded = loaded.map(Arc::new);
            let deadline_ms = lengthened(recovered.expires_at_ms(&m));
            if let Some(message) = &loaded
                && let Some(until) = delay::delayed_until(message)
            {
                let mut entry = self.new_entry(message.clone(), Some(m.id), 0, true, published);
                entry.expires_at = Deadline::new(self.expiry_of(deadline_ms, published));
                self.hold(entry, until);
                continue;
            }
            let tag = self.take_tag(m.priority);
            let entry = match loaded {
                Some(message) => {
                    let mut entry = self.new_entry(message, Some(m.id), tag, true, published);
                    entry.expires_at = Deadline::new(self.expiry_of(deadline_ms, published));
                    entry
                }
                None => Entry {
                    tag,
                    message: None,
                    store_id: StoreRef::new(Some(m.id)),
                    expires_at: Deadline::new(self.expiry_of(deadline_ms, published)),
                    size: m.size,
                    priority: m.priority,
                    redelivered: true,
                },
            };
            self.push_ready(entry);
        }
    }

    fn enqueue(&mut self, message: Arc<Message>, store_id: Option<MsgId>) -> Enqueued {
        let size = message.body.len() as u64;
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
            // Turned away without a tag: a refused publish leaves no gap in its level's tags (see `tail`).
            match me.args.overflow {
                Overflow::DropHead => {}
                Overflow::RejectPublish => {
                    let entry = self.new_entry(message, store_id, 0, false, None);
                    return Enqueued::Rejected(self.retire_refused(&entry));
                }
                Overflow::RejectPublishDlx => {
                    let entry = self.new_entry(message, store_id, 0, false, None);
                    return Enqueued::Rejected(self.dead_letter_refused(entry));
                }
            }
        }
        if let Some(until) = delay::delayed_until(&message) {
            let entry = self.new_entry(message, store_id, 0, false, None);
            self.hold(entry, until);
            return Enqueued::Accepted;
        }
        let tag = self.take_tag(message.properties.priority.unwrap_or(0));
        let entry = self.new_entry(message, store_id, tag, false, None);
        self.push_ready(entry);
        if self.me.args.overflow == Overflow::DropHead {
            while self.ready_count > 0 && self.exceeds_limits() {
                if let Some(head) = self.pop_ready_lowest() {
                    self.dead_letter(head, DeathReason::Maxlen);
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
        if let Some(limit) = self.me.args.max_consumers
            && self.consumers.len() >= limit
        {
            return Err(CoreError::LimitExceeded(format!(
                "cannot consume from queue '{}' in vhost '{}': consumer limit ({limit}) is reached",
                self.me.name, self.me.vhost
            )));
        }
        self.last_used = Instant::now();
        self.had_consumers = true;
        self.consumers.push(Consumer {
            spec,
            unacked: 0,
            unwritten: 0,
            unwritten_bytes: 0,
        });
        Ok(())
    }

    /// A consumer's connection wrote `count` deliveries of `bytes` out: window credit back, and no-ack
    /// deliveries leave the memory gauge.
    fn written(&mut self, consumer: ConsumerKey, count: u32, bytes: u64) {
        let Some(c) = self.consumers.iter_mut().find(|c| c.spec.key == consumer) else {
            return; // removed: what it still held was released then
        };
        let count = count.min(c.unwritten);
        let bytes = bytes.min(c.unwritten_bytes);
        c.unwritten -= count;
        c.unwritten_bytes -= bytes;
        let cost = c.unwritten_cost(count, bytes);
        self.memory.sub(cost);
    }

    /// A consumer leaves: its no-ack deliveries not yet reported written leave the memory gauge with it.
    fn release_unwritten(&self, c: &Consumer) {
        self.memory
            .sub(c.unwritten_cost(c.unwritten, c.unwritten_bytes));
    }

    /// Remove a consumer. When its sink is gone (`lost`), its unacked deliveries are requeued here; otherwise
    /// they stay with the channel, which settles them.
    fn remove_consumer(&mut self, key: ConsumerKey, lost: bool) {
        let Some(pos) = self.consumers.iter().position(|c| c.spec.key == key) else {
            return;
        };
        let consumer = self.consumers.remove(pos);
        self.release_unwritten(&consumer);
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

    fn get(
        &mut self,
        entry: Entry,
        message: Arc<Message>,
        no_ack: bool,
        lease: Option<Duration>,
    ) -> Delivery {
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
        delivery
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
            self.groups.release(tag);
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
                super::Settle::Reject => self.dead_letter(out.entry, DeathReason::Rejected),
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
            delayed: self.delayed.len() as u32,
        }
    }

    /// Drops every ready and delayed message, settling each in the store (paged ones without reading them
    /// back).
    fn purge(&mut self) -> u32 {
        let count = (self.ready_count + self.delayed.len()) as u32;
        for entry in self.delayed.drain() {
            self.retire(&entry);
        }
        let mut levels = std::mem::replace(&mut self.levels, new_levels(0));
        self.levels = new_levels(levels.len());
        self.ready_count = 0;
        self.ready_bytes = 0;
        self.loaded = 0;
        self.loaded_bytes = 0;
        for level in &mut levels {
            for entry in level.drain() {
                self.retire(&entry);
            }
        }
        self.serve_gets();
        count
    }

    fn delete(&mut self, if_unused: bool, if_empty: bool) -> Result<u32, CoreError> {
        if if_unused && !self.consumers.is_empty() {
            return Err(CoreError::InUse {
                kind: Entity::Queue,
                vhost: self.me.vhost.clone(),
                name: self.me.name.clone(),
            });
        }
        if if_empty && self.ready_count + self.delayed.len() > 0 {
            return Err(CoreError::NotEmpty {
                vhost: self.me.vhost.clone(),
                queue: self.me.name.clone(),
            });
        }
        Ok(self.stop())
    }

    /// Cancel every consumer and stop; returns the ready count at the time.
    fn stop(&mut self) -> u32 {
        for c in std::mem::take(&mut self.consumers) {
            self.release_unwritten(&c);
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
            .levels
            .iter()
            .flat_map(Level::loaded)
            .chain(self.delayed.entries())
            .chain(self.outstanding.values().map(|o| &o.entry))
            .map(Entry::cost)
            .sum();
        self.memory.sub(held);
        self.gets.clear();
        self.receives.clear();
        self.me.mark_deleted();
        self.me.flow.set(false);
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

    // ---- flow control ----

    /// Tells publishers whether the queue is congested (see `queue::flow`): deep, and drained by consumers
    /// slower than it fills.
    fn update_flow(&mut self, now: Instant) {
        use super::flow::{FLOW_ACTIVE, FLOW_HIGH, FLOW_LOW};
        if self.handed_out != self.flow_seen {
            self.flow_seen = self.handed_out;
            self.last_handout = now;
        }
        let draining = now.duration_since(self.last_handout) < FLOW_ACTIVE;
        let was = self.me.flow.is_congested();
        let deep = self.ready_count >= FLOW_HIGH || (was && self.ready_count >= FLOW_LOW);
        self.me.flow.set(draining && deep);
    }

    /// When a congested queue stops counting as drained, if nothing is handed out before.
    pub(super) fn flow_deadline(&self) -> Option<Instant> {
        self.me
            .flow
            .is_congested()
            .then(|| self.last_handout + super::flow::FLOW_ACTIVE)
    }

    // ---- ready lists ----

    fn level_of(&self, priority: u8) -> usize {
        let top = self.levels.len() - 1;
        (priority as usize).min(top)
    }

    /// The level the next message comes from: the highest non-empty one.
    fn top_level(&self) -> Option<usize> {
        (0..self.levels.len())
            .rev()
            .find(|l| !self.levels[*l].is_empty())
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
        if !entry.is_paged() {
            self.loaded += 1;
            self.loaded_bytes += u64::from(entry.size);
        }
    }

    /// Counts an entry leaving the ready lists.
    fn count_out(&mut self, entry: &Entry) {
        self.ready_count -= 1;
        self.ready_bytes -= u64::from(entry.size);
        if !entry.is_paged() {
            self.loaded -= 1;
            self.loaded_bytes -= u64::from(entry.size);
        }
    }

    /// Appends an entry to its level, paging its body out if the store has a copy to read back and either the
    /// queue is over its budget or the level already has a paged tail (which it must queue behind).
    fn push_ready(&mut self, mut entry: Entry) {
        let level = self.level_of(entry.priority);
        if self.pages
            && !entry.is_paged()
            && entry.store_id.get().is_some()
            && (!self.levels[level].tail().is_empty() || self.over_budget(entry.size))
        {
            self.memory.sub(entry.cost());
            entry.message = None;
        }
        self.count_in(&entry);
        self.levels[level].push_back(entry);
    }

    /// Puts an unacked entry back at its original position (it stays loaded: unacked entries are bounded by
    /// prefetch, and it is usually delivered again soon).
    fn requeue(&mut self, mut entry: Entry) {
        entry.redelivered = true;
        let level = self.level_of(entry.priority);
        self.count_in(&entry);
        self.levels[level].requeue(entry);
    }

    /// The next message to hand out, highest priority first, with its body. `None` when the queue is empty or
    /// its next message is still being read back.
    fn pop_ready(&mut self) -> Option<(Entry, Arc<Message>)> {
        loop {
            let level = self.top_level()?;
            let entry = self.levels[level].pop_loaded()?;
            self.count_out(&entry);
            if let Some(message) = entry.message.clone() {
                if let Some(until) = delay::delayed_until(&message) {
                    self.hold(entry, until); // recovered before it was due (see `delay`)
                    continue;
                }
                self.handed_out += 1;
                return Some((entry, message));
            }
            // Cannot happen (heads hold loaded entries only); kept in the store like an unreadable one.
            error!(queue = %self.me.name, vhost = %self.me.vhost, id = ?entry.store_id.get(),
                "ready message without a body; dropped from the queue until the next restart");
        }
    }

    /// Lowest priority first (what drop-head drops), possibly paged.
    fn pop_ready_lowest(&mut self) -> Option<Entry> {
        let level = (0..self.levels.len()).find(|l| !self.levels[*l].is_empty())?;
        let entry = self.levels[level].pop_front()?;
        self.count_out(&entry);
        Some(entry)
    }

    // ---- read-ahead ----

    // ---- settlement ----

    /// A message leaves the queue for good: its settlement is journaled and its memory released.
    fn retire(&mut self, entry: &Entry) {
        self.forget_receives(entry.tag);
        self.memory.sub(entry.cost());
        self.settle_in_store(entry);
    }

    /// Journals that a message left the queue; its memory is released by the caller.
    fn settle_in_store(&self, entry: &Entry) {
        if let Some(id) = entry.store_id.get()
            && let Err(e) = self.store.settle(&self.me.key, id)
        {
            warn!(queue = %self.me.name, error = %e, "could not journal settlement");
        }
    }

    /// A message refused on publish leaves at once, its settlement synced (see [`Enqueued::Rejected`]).
    pub(super) fn retire_refused(&self, entry: &Entry) -> Option<SyncPoint> {
        self.memory.sub(entry.cost());
        let id = entry.store_id.get()?;
        match self.store.settle_synced(&self.me.key, id) {
            Ok(point) => Some(point),
            Err(e) => {
                warn!(queue = %self.me.name, error = %e, "could not journal settlement");
                None
            }
        }
    }

    fn drop_entry(&mut self, entry: Entry) {
        self.retire(&entry);
    }

    // ---- delivery ----

    // ---- timers ----
}

/// Waits for the read-ahead batch in flight; never resolves when there is none.
async fn read_done(
    reading: &mut Option<Reading>,
) -> Result<ReadResults, oneshot::error::RecvError> {
    match reading {
        Some(r) => (&mut r.rx).await,
        None => std::future::pending().await,
    }
}
