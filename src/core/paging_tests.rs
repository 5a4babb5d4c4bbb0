//! Core-level tests of queue paging against a store double that pages like the journal but keeps bodies in a
//! map and counts reads and settlements: paged backlogs read back in order (gets wait for read-ahead), purge
//! settling without reading, requeue and transient messages keeping their place, unreadable messages dropped
//! but not settled, and recovered messages restored straight into the paged tail.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;

use super::message::Headers;
use super::persist;
use super::queue::Settle;
use super::session::QueueOptions;
use super::{Broker, Message, Session};
use crate::store::{
    Definition, MemoryStore, MsgId, QueueKey, Recovered, RecoveredQueue, Store, StoreError,
    StoredMessage, SyncPoint, SyncState,
};

/// The per-queue budget of loaded bodies (`queue::actor::PAGE_BUDGET_MESSAGES`).
const BUDGET: usize = 4096;

/// Pages like the journal (bodies can be read back by id), in memory.
#[derive(Debug, Default)]
struct PagingStore {
    inner: MemoryStore,
    bodies: Mutex<HashMap<MsgId, StoredMessage>>,
    settled: Mutex<Vec<MsgId>>,
    reads: AtomicUsize,
    unreadable: Mutex<HashSet<MsgId>>,
    recovered: Mutex<Option<Recovered>>,
}

impl PagingStore {
    fn settled(&self) -> Vec<MsgId> {
        self.settled.lock().unwrap().clone()
    }
    fn reads(&self) -> usize {
        self.reads.load(Ordering::Relaxed)
    }
    fn id_of(&self, body: &[u8]) -> MsgId {
        let bodies = self.bodies.lock().unwrap();
        *bodies.iter().find(|(_, m)| m.body == body).unwrap().0
    }
}

impl Store for PagingStore {
    fn publish(
        &self,
        id: MsgId,
        queues: &[QueueKey],
        message: &StoredMessage,
    ) -> Result<SyncPoint, StoreError> {
        self.bodies.lock().unwrap().insert(id, message.clone());
        self.inner.publish(id, queues, message)
    }
    fn settle(&self, _queue: &QueueKey, id: MsgId) -> Result<(), StoreError> {
        self.settled.lock().unwrap().push(id);
        Ok(())
    }
    fn define(&self, definition: &Definition) -> Result<SyncPoint, StoreError> {
        self.inner.define(definition)
    }
    fn sync_state(&self) -> watch::Receiver<SyncState> {
        self.inner.sync_state()
    }
    fn recover(&self) -> Result<Recovered, StoreError> {
        Ok(self.recovered.lock().unwrap().take().unwrap_or_default())
    }
    fn read(&self, id: MsgId) -> Result<StoredMessage, StoreError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        if self.unreadable.lock().unwrap().contains(&id) {
            return Err(StoreError::NotFound(id));
        }
        self.bodies
            .lock()
            .unwrap()
            .get(&id)
            .cloned()
            .ok_or(StoreError::NotFound(id))
    }
    fn pages(&self) -> bool {
        true
    }
    fn healthy(&self) -> Result<(), String> {
        Ok(())
    }
    fn blocked(&self) -> watch::Receiver<bool> {
        self.inner.blocked()
    }
    fn close(&self) {}
}

async fn start(store: Arc<PagingStore>) -> (Broker, Session) {
    super::tests::session_on(store).await
}

async fn durable_queue(s: &Session, name: &str) {
    s.declare_queue(name, QueueOptions::flags(true, false, false))
        .await
        .unwrap();
}

fn body(i: usize) -> Bytes {
    Bytes::from(format!("m{i:06}"))
}

async fn publish(s: &Session, queue: &str, i: usize, persistent: bool) {
    let mut message = Message::new("", queue, body(i));
    message.properties.durable = persistent;
    super::tests::publish(s, message).await;
}

/// Takes every message with no-ack gets until the queue says it is empty.
async fn get_all(s: &Session, queue: &str) -> Vec<(Bytes, bool)> {
    let mut out = Vec::new();
    while let Some(d) = tokio::time::timeout(Duration::from_secs(10), s.get(queue, true, None))
        .await
        .expect("a get is answered")
        .unwrap()
    {
        out.push((d.message.body.clone(), d.redelivered));
    }
    out
}

fn bodies(range: impl Iterator<Item = usize>) -> Vec<Bytes> {
    range.map(body).collect()
}

#[tokio::test]
async fn gets_drain_a_paged_backlog_in_order_reading_each_paged_body_once() {
    let store = Arc::new(PagingStore::default());
    let (broker, s) = start(store.clone()).await;
    durable_queue(&s, "q").await;
    let n = 6000;
    for i in 0..n {
        publish(&s, "q", i, true).await;
    }
    let (q, stats) = s.queue_exists("q").await.unwrap();
    assert_eq!(stats.messages as usize, n);
    assert_eq!(stats.loaded as usize, BUDGET);
    assert!(broker.memory().used() <= BUDGET as u64 * (7 + 256));
    assert_eq!(store.reads(), 0, "nothing is read back while nobody asks");
    let got = get_all(&s, "q").await;
    let want = bodies(0..n);
    assert!(got.iter().map(|g| &g.0).eq(want.iter()), "out of order");
    assert_eq!(store.reads(), n - BUDGET, "each paged body read once");
    assert_eq!(store.settled().len(), n);
    assert_eq!(q.stats().await.unwrap().messages, 0);
    assert_eq!(broker.memory().used(), 0);
}

#[tokio::test]
async fn purging_a_paged_backlog_settles_every_message_without_reading_it() {
    let store = Arc::new(PagingStore::default());
    let (broker, s) = start(store.clone()).await;
    durable_queue(&s, "q").await;
    let n = 10_000;
    for i in 0..n {
        publish(&s, "q", i, true).await;
    }
    assert_eq!(s.purge_queue("q").await.unwrap() as usize, n);
    assert_eq!(store.reads(), 0);
    let mut settled = store.settled();
    settled.sort_unstable();
    let mut all: Vec<MsgId> = store.bodies.lock().unwrap().keys().copied().collect();
    all.sort_unstable();
    assert_eq!(settled, all);
    assert_eq!(broker.memory().used(), 0);
    assert!(s.get("q", true, None).await.unwrap().is_none());
}

#[tokio::test]
async fn requeued_messages_go_back_before_the_paged_tail() {
    let store = Arc::new(PagingStore::default());
    let (_broker, s) = start(store.clone()).await;
    durable_queue(&s, "q").await;
    let n = 5000;
    for i in 0..n {
        publish(&s, "q", i, true).await;
    }
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(s.get("q", false, None).await.unwrap().unwrap());
    }
    // Requeue out of order: they still go back to their places, ahead of everything paged.
    for d in held.iter().rev() {
        d.queue.settle(vec![d.tag], Settle::Requeue, None);
    }
    let got = get_all(&s, "q").await;
    assert!(got.iter().map(|g| &g.0).eq(bodies(0..n).iter()));
    assert!(got[..3].iter().all(|g| g.1) && !got[3].1);
}

#[tokio::test]
async fn a_transient_message_behind_a_paged_tail_keeps_its_place() {
    let store = Arc::new(PagingStore::default());
    let (_broker, s) = start(store.clone()).await;
    durable_queue(&s, "q").await;
    for i in 0..5000 {
        publish(&s, "q", i, true).await;
    }
    publish(&s, "q", 5000, false).await;
    for i in 5001..6000 {
        publish(&s, "q", i, true).await;
    }
    let got = get_all(&s, "q").await;
    assert!(got.iter().map(|g| &g.0).eq(bodies(0..6000).iter()));
    assert_eq!(store.reads(), 6000 - BUDGET - 1);
}

#[tokio::test]
async fn a_paged_message_that_cannot_be_read_is_dropped_but_not_settled() {
    let store = Arc::new(PagingStore::default());
    let (_broker, s) = start(store.clone()).await;
    durable_queue(&s, "q").await;
    for i in 0..5000 {
        publish(&s, "q", i, true).await;
    }
    let lost = store.id_of(&body(4500));
    store.unreadable.lock().unwrap().insert(lost);
    let got = get_all(&s, "q").await;
    let want: Vec<Bytes> = bodies((0..5000).filter(|i| *i != 4500));
    assert!(got.iter().map(|g| &g.0).eq(want.iter()));
    assert_eq!(store.settled().len(), 4999);
    assert!(
        !store.settled().contains(&lost),
        "kept for the next restart"
    );
}

#[tokio::test]
async fn a_get_on_a_queue_whose_messages_all_fail_to_read_says_empty() {
    let store = Arc::new(PagingStore::default());
    let (_broker, s) = start(store.clone()).await;
    durable_queue(&s, "q").await;
    for i in 0..BUDGET + 10 {
        publish(&s, "q", i, true).await;
    }
    // The paged ones (past the budget) all fail.
    for i in BUDGET..BUDGET + 10 {
        let id = store.id_of(&body(i));
        store.unreadable.lock().unwrap().insert(id);
    }
    let got = get_all(&s, "q").await;
    assert_eq!(got.len(), BUDGET, "the loaded ones, then an empty answer");
}

#[tokio::test]
async fn recovered_messages_without_bodies_are_restored_paged_in_order() {
    let store = Arc::new(PagingStore::default());
    let n = 20_000u64;
    let mut messages = RecoveredQueue::default();
    for id in 1..=n {
        let mut message = Message::new("", "q", body(id as usize));
        message.properties.durable = true;
        let message = persist::stored(&message, true, false);
        store.bodies.lock().unwrap().insert(id, message.clone());
        // Recovery loaded the first hundred bodies only.
        messages.push_message(id, Arc::new(message), id <= 100);
    }
    let mut recovered = Recovered {
        definitions: vec![Definition::Queue {
            vhost: "/".into(),
            name: "q".into(),
            auto_delete: false,
            arguments: persist::args_out(&Headers::new()),
        }],
        next_id: n + 1,
        ..Recovered::default()
    };
    recovered.messages.insert(QueueKey::new("/", "q"), messages);
    *store.recovered.lock().unwrap() = Some(recovered);
    let (_broker, s) = start(store.clone()).await;
    let (_, stats) = s.queue_exists("q").await.unwrap();
    assert_eq!((stats.messages, stats.loaded), (n as u32, 100));
    let got = get_all(&s, "q").await;
    assert!(got.iter().map(|g| &g.0).eq(bodies(1..=n as usize).iter()));
    assert!(
        got.iter().all(|g| g.1),
        "recovered messages are redelivered"
    );
    assert_eq!(store.reads(), n as usize - 100);
}

/// Publishes persistent message `i` (message id `id-<i>`) to queue `q`, expiring `ttl_ms` after `now`.
async fn publish_expiring(s: &Session, i: usize, now: u64, ttl_ms: u64) {
    let mut message = Message::new("", "q", body(i));
    message.properties.durable = true;
    message.properties.set_text(super::message::TextProperties {
        message_id: Some(format!("id-{i:06}")),
        ..Default::default()
    });
    message.properties.expiry = Some(super::message::Expiry {
        at_ms: now + ttl_ms,
        ttl_ms,
    });
    super::tests::publish(s, message).await;
}

fn id_of(m: &Message) -> String {
    let text = m.properties.text.as_ref().expect("text properties");
    text.message_id.clone().expect("message id")
}

#[tokio::test]
async fn recent_finds_late_deadlines_in_the_paged_tail_loaded_head_and_leases_reading_only_those() {
    use super::message::now_ms;
    use super::queue::ReceiveRequest;
    let store = Arc::new(PagingStore::default());
    let (_broker, s) = start(store.clone()).await;
    durable_queue(&s, "q").await;
    let now = now_ms();
    // Odd messages expire in an hour ("recent"), even ones in a minute ("old"); past the budget they are paged.
    let n = BUDGET + 600;
    for i in 0..n {
        let ttl_ms = if i % 2 == 1 { 3_600_000 } else { 60_000 };
        publish_expiring(&s, i, now, ttl_ms).await;
    }
    // The first two go out under a lease: one recent, one old.
    let request = ReceiveRequest {
        max: 2,
        lease: Duration::from_secs(60),
        wait: Duration::ZERO,
        group_by: None,
    };
    assert_eq!(s.receive("q", request).await.unwrap().len(), 2);
    let (q, _) = s.queue_exists("q").await.unwrap();
    let reads_before = store.reads();
    let recent = q.recent(now + 600_000, usize::MAX).await.unwrap();
    // Paged ones come back without their bodies: tell them by their message id.
    let mut got: Vec<String> = recent.iter().map(|m| id_of(m)).collect();
    got.sort();
    let want: Vec<String> = (1..n).step_by(2).map(|i| format!("id-{i:06}")).collect();
    assert_eq!(got, want, "every odd message and no even one");
    assert!(
        recent.iter().any(|m| m.body.is_empty()),
        "paged bodies are not kept"
    );
    assert_eq!(
        store.reads() - reads_before,
        (BUDGET..n).filter(|i| i % 2 == 1).count(),
        "only the recent paged bodies are read"
    );
    let newest = q.recent(now + 600_000, 10).await.unwrap();
    let ids: Vec<String> = newest.iter().map(|m| id_of(m)).collect();
    let want: Vec<String> = (n - 20..n)
        .filter(|i| i % 2 == 1)
        .map(|i| format!("id-{i:06}"))
        .collect();
    // The leased one (message 1) is visited last, so it is among the ten kept; the rest are the newest.
    assert_eq!(ids.len(), 10, "max holds");
    assert!(ids.contains(&"id-000001".to_owned()));
    assert!(
        ids.iter().all(|i| i == "id-000001" || want.contains(i)),
        "{ids:?}"
    );
    assert!(
        q.recent(now + 7_200_000, usize::MAX)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn shifted_deadlines_hold_for_paged_and_loaded_messages_alike() {
    use super::message::now_ms;
    let store = Arc::new(PagingStore::default());
    let (_broker, s) = start(store.clone()).await;
    durable_queue(&s, "q").await;
    let now = now_ms();
    let n = BUDGET + 100;
    for i in 0..n {
        publish_expiring(&s, i, now, 1_000).await;
    }
    let (q, _) = s.queue_exists("q").await.unwrap();
    // Every deadline is before now + 1 min: all move an hour later, so none expires at its first deadline.
    q.shift_deadlines(now + 60_000, 3_600_000);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(q.stats().await.unwrap().messages as usize, n);
    // Moved back before now, they all expire on the next turn.
    q.shift_deadlines(now + 7_200_000, -3_600_000);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while q.stats().await.unwrap().messages != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "expired messages stayed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
