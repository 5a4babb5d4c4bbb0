//! Core-level tests that need no protocol: leases (the SQS visibility mechanism), memory accounting, the
//! persistence seam as seen from a queue, and a publisher's outbox.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::publish::Publisher;
use super::queue::Settle;
use super::session::QueueOptions;
use super::{Broker, BrokerOptions, Message, Session};
use crate::store::MemoryStore;

async fn session() -> (Broker, Session) {
    session_on(Arc::new(MemoryStore::default())).await
}

/// A broker on `store` with default options, and a session of guest on "/".
pub(super) async fn session_on(store: Arc<dyn crate::store::Store>) -> (Broker, Session) {
    let broker = Broker::start(BrokerOptions::default(), store)
        .await
        .unwrap();
    let user = broker
        .authenticate("guest", "guest", "127.0.0.1".parse().unwrap())
        .unwrap();
    let session = broker
        .open_session(user, "/", broker.next_conn_id())
        .unwrap();
    (broker, session)
}

pub(super) async fn publish(s: &Session, message: Message) {
    Publisher::new(s.clone())
        .publish(message, false)
        .await
        .unwrap();
}

fn message(queue: &str, body: &'static [u8]) -> Message {
    Message::new("", queue, Bytes::from_static(body))
}

#[tokio::test]
async fn a_leased_message_returns_when_its_lease_runs_out() {
    let (_broker, s) = session().await;
    s.declare_queue("lease", QueueOptions::flags(false, false, false))
        .await
        .unwrap();
    publish(&s, message("lease", b"m")).await;
    let first = s
        .get("lease", false, Some(Duration::from_millis(100)))
        .await
        .unwrap()
        .expect("message");
    assert!(!first.redelivered);
    assert!(
        s.get("lease", false, None).await.unwrap().is_none(),
        "invisible while leased"
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    let again = s
        .get("lease", false, None)
        .await
        .unwrap()
        .expect("visible again after the lease");
    assert!(again.redelivered);
    assert_eq!(again.message.body, first.message.body);
}

#[tokio::test]
async fn acking_within_the_lease_removes_the_message() {
    let (_broker, s) = session().await;
    s.declare_queue("lease-ack", QueueOptions::flags(false, false, false))
        .await
        .unwrap();
    publish(&s, message("lease-ack", b"m")).await;
    let d = s
        .get("lease-ack", false, Some(Duration::from_millis(100)))
        .await
        .unwrap()
        .unwrap();
    d.queue.settle(vec![d.tag], Settle::Ack, None);
    tokio::time::sleep(Duration::from_millis(250)).await;
    let stats = d.queue.stats().await.unwrap();
    assert_eq!((stats.messages, stats.unacked), (0, 0));
}

#[tokio::test]
async fn a_settle_from_a_consumer_that_does_not_hold_the_delivery_is_ignored() {
    let (_broker, s) = session().await;
    s.declare_queue("stale", QueueOptions::flags(false, false, false))
        .await
        .unwrap();
    publish(&s, message("stale", b"m")).await;
    let d = s.get("stale", false, None).await.unwrap().unwrap();
    d.queue.settle(vec![d.tag], Settle::Ack, Some(999));
    let stats = d.queue.stats().await.unwrap();
    assert_eq!(stats.unacked, 1, "still held by the get");
}

#[tokio::test]
async fn memory_gauge_counts_held_messages_and_releases_them() {
    let (broker, s) = session().await;
    s.declare_queue("mem", QueueOptions::flags(false, false, false))
        .await
        .unwrap();
    for _ in 0..10 {
        publish(&s, message("mem", b"0123456789")).await;
    }
    let (q, stats) = s.queue_exists("mem").await.unwrap();
    assert_eq!(stats.messages, 10);
    assert!(broker.memory().used() >= 100);
    q.purge().await.unwrap();
    assert_eq!(broker.memory().used(), 0);
}

/// A message only the neutral model can carry (binary correlation id, a header name repeated with values of
/// several types, a type label, a 64 KiB value) goes through the journal and a restart unchanged.
#[tokio::test]
async fn neutral_properties_and_repeated_headers_survive_the_journal() {
    use crate::core::message::{Expiry, Value};
    use crate::store::journal::{self, JournalOptions, SyncMode};

    let dir = tempfile::tempdir().unwrap();
    let open = || {
        journal::open(JournalOptions {
            dir: dir.path().to_path_buf(),
            segment_size: 1 << 20,
            sync: SyncMode::Always,
            disk_low_water: 0,
        })
        .unwrap()
    };
    let mut sent = Message::new("", "neutral", Bytes::from_static(b"body"));
    sent.properties.durable = true;
    sent.properties.text_mut().correlation_id = Some(Bytes::from_static(b"\x00\xff\x80binary"));
    sent.properties.expiry = Some(Expiry::from_now(3_600_000));
    sent.headers.push("k", Value::text("first"));
    sent.headers.push("other", Value::U64(u64::MAX));
    sent.headers.push("k", Value::I16(-2));
    sent.headers
        .push_labeled("price", Value::text("1.50"), Some("Number.float".into()));
    sent.headers
        .push("big", Value::Binary(Bytes::from(vec![7u8; 64 * 1024])));
    {
        let store = open();
        let (broker, s) = session_on(store.clone()).await;
        s.declare_queue("neutral", QueueOptions::flags(true, false, false))
            .await
            .unwrap();
        let mut publisher = Publisher::new(s.clone());
        let receipt = publisher.publish(sent.clone(), true).await.unwrap();
        let super::publish::Receipt::Routed(confirmation) = receipt else {
            panic!("routed");
        };
        let mut view = broker.sync_view();
        assert_eq!(
            confirmation.outcome(&mut view).await,
            super::publish::Outcome::Accepted
        );
        broker.shutdown().await;
    }
    let (_broker, s) = session_on(open()).await;
    let got = s
        .get("neutral", true, None)
        .await
        .unwrap()
        .expect("recovered");
    assert_eq!(
        got.message.headers, sent.headers,
        "order, types and labels kept"
    );
    assert_eq!(got.message.properties, sent.properties);
    assert_eq!(got.message.body, sent.body);
}

/// A memory store that records, in order, what the core asked of it.
#[derive(Debug, Default)]
struct RecordingStore {
    inner: crate::store::MemoryStore,
    log: std::sync::Mutex<Vec<Op>>,
}

#[derive(Debug, Clone, PartialEq)]
enum Op {
    Publish(crate::store::MsgId),
    Settle(crate::store::MsgId),
    SettleSynced(crate::store::MsgId),
    Define(crate::store::Definition),
}

impl RecordingStore {
    fn log(&self) -> Vec<Op> {
        self.log.lock().unwrap().clone()
    }

    /// Whether the last definition journaled for queue `name` declared it (`Some(true)`) or deleted it.
    fn last_word_on(&self, name: &str) -> Option<bool> {
        use crate::store::Definition;
        self.log
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find_map(|op| match op {
                Op::Define(Definition::Queue { name: n, .. }) if n == name => Some(true),
                Op::Define(Definition::DeleteQueue { name: n, .. }) if n == name => Some(false),
                _ => None,
            })
    }
}

impl crate::store::Store for RecordingStore {
    fn publish(
        &self,
        id: crate::store::MsgId,
        queues: &[crate::store::QueueKey],
        message: &crate::store::StoredMessage,
    ) -> Result<crate::store::SyncPoint, crate::store::StoreError> {
        self.log.lock().unwrap().push(Op::Publish(id));
        self.inner.publish(id, queues, message)
    }
    fn settle(
        &self,
        _queue: &crate::store::QueueKey,
        id: crate::store::MsgId,
    ) -> Result<(), crate::store::StoreError> {
        self.log.lock().unwrap().push(Op::Settle(id));
        Ok(())
    }
    fn settle_synced(
        &self,
        queue: &crate::store::QueueKey,
        id: crate::store::MsgId,
    ) -> Result<crate::store::SyncPoint, crate::store::StoreError> {
        self.log.lock().unwrap().push(Op::SettleSynced(id));
        self.inner.define(&crate::store::Definition::DeleteQueue {
            vhost: queue.vhost.clone(),
            name: "sync marker".into(),
        })
    }
    fn define(
        &self,
        definition: &crate::store::Definition,
    ) -> Result<crate::store::SyncPoint, crate::store::StoreError> {
        self.log
            .lock()
            .unwrap()
            .push(Op::Define(definition.clone()));
        self.inner.define(definition)
    }
    fn sync_state(&self) -> tokio::sync::watch::Receiver<crate::store::SyncState> {
        self.inner.sync_state()
    }
    fn recover(&self) -> Result<crate::store::Recovered, crate::store::StoreError> {
        Ok(crate::store::Recovered::default())
    }
    fn healthy(&self) -> Result<(), String> {
        Ok(())
    }
    fn blocked(&self) -> tokio::sync::watch::Receiver<bool> {
        self.inner.blocked()
    }
    fn close(&self) {}
}

/// A delete racing a re-declare of the same durable queue: whatever memory ends with, the journal's last word
/// on the queue says the same (definitions are journaled under the lock that orders them), so a restart
/// recovers what was there. It also catches a lost answer: a counts request sent while the deleted queue's
/// actor dropped its channel used to wait forever (see `drain_after_stop`), so every wait here is bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_racing_a_redeclare_is_journaled_in_memory_order() {
    let store = Arc::new(RecordingStore::default());
    let (_broker, s) = session_on(store.clone()).await;
    let durable = || QueueOptions::flags(true, false, false);
    s.declare_queue("x", durable()).await.unwrap();
    for _ in 0..500 {
        let (a, b) = (s.clone(), s.clone());
        let delete = tokio::spawn(async move { a.delete_queue("x", false, false).await });
        let declare = tokio::spawn(async move { b.declare_queue("x", durable()).await });
        let bound = Duration::from_secs(10);
        let answered = "answered (no lost reply)";
        let deleted = tokio::time::timeout(bound, delete).await.expect(answered);
        deleted.unwrap().unwrap();
        let declared = tokio::time::timeout(bound, declare).await.expect(answered);
        declared.unwrap().unwrap();
        let journaled = store.last_word_on("x");
        let exists = tokio::time::timeout(bound, s.queue_exists("x")).await;
        let in_memory = exists.expect(answered).is_ok();
        assert_eq!(journaled, Some(in_memory), "the journal agrees with memory");
        if !in_memory {
            s.declare_queue("x", durable()).await.unwrap();
        }
    }
}

/// Requests racing a queue's deletion are all answered (with counts, or with "not found"), never left waiting:
/// a request whose sender took a channel slot just before the stopped actor closed its channel used to stay in
/// the channel, kept alive by the asking handle itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_racing_a_queue_deletion_is_answered() {
    let (_broker, s) = session_on(Arc::new(MemoryStore::default())).await;
    for round in 0..300 {
        let name = format!("q{round}");
        let (q, _) = s
            .declare_queue(&name, QueueOptions::flags(false, false, false))
            .await
            .unwrap();
        let asks: Vec<_> = (0..8)
            .map(|_| {
                let q = q.clone();
                tokio::spawn(async move { q.stats().await.is_ok() })
            })
            .collect();
        let deleter = s.clone();
        let delete = tokio::spawn(async move { deleter.delete_queue(&name, false, false).await });
        for ask in asks {
            let answer = tokio::time::timeout(Duration::from_secs(10), ask).await;
            answer
                .expect("a request racing the deletion is answered")
                .unwrap();
        }
        delete.await.unwrap().unwrap();
        assert!(q.stats().await.is_err(), "the deleted queue is gone");
    }
}

/// Dead-lettering journals the copy before it settles the original: a crash between the two brings the
/// original back rather than losing both.
#[tokio::test]
async fn a_dead_lettered_copy_is_journaled_before_the_original_is_settled() {
    use crate::core::message::Value;
    let store = Arc::new(RecordingStore::default());
    let (_broker, s) = session_on(store.clone()).await;
    let with_dlx = QueueOptions::flags(true, false, false)
        .with_argument("x-dead-letter-exchange", Value::text(""))
        .with_argument("x-dead-letter-routing-key", Value::text("dlq"));
    s.declare_queue("src", with_dlx).await.unwrap();
    s.declare_queue("dlq", QueueOptions::flags(true, false, false))
        .await
        .unwrap();
    let mut m = message("src", b"doomed");
    m.properties.durable = true;
    publish(&s, m).await;
    let d = s.get("src", false, None).await.unwrap().expect("message");
    d.queue.settle(vec![d.tag], Settle::Reject, None);
    let copy = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(d) = s.get("dlq", true, None).await.unwrap() {
                return d;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the copy arrives");
    assert_eq!(copy.message.body, Bytes::from_static(b"doomed"));
    let log = store.log();
    let publishes: Vec<_> = log
        .iter()
        .filter_map(|op| match op {
            Op::Publish(id) => Some(*id),
            _ => None,
        })
        .collect();
    let [original, copy_id] = publishes[..] else {
        panic!("two journaled publishes, got {log:?}");
    };
    let at = |op: Op| log.iter().position(|o| *o == op).expect("in the log");
    assert!(
        at(Op::Publish(copy_id)) < at(Op::Settle(original)),
        "{log:?}"
    );
}

/// A publish refused by `reject-publish` is settled with a synced record, and its nack waits for that sync: a
/// crash cannot bring back a message its publisher was told was not taken.
#[tokio::test]
async fn a_refused_publish_is_settled_durably_before_its_nack() {
    use crate::core::message::Value;
    use crate::core::publish::{Outcome, Receipt, Settling};
    let store = Arc::new(RecordingStore::default());
    let (broker, s) = session_on(store.clone()).await;
    let full = QueueOptions::flags(true, false, false)
        .with_argument("x-max-length", Value::I64(1))
        .with_argument("x-overflow", Value::text("reject-publish"));
    s.declare_queue("full", full).await.unwrap();
    let mut publisher = Publisher::new(s.clone());
    let mut settlings = Vec::new();
    for body in [&b"kept"[..], b"refused"] {
        let mut m = Message::new("", "full", Bytes::copy_from_slice(body));
        m.properties.durable = true;
        let Receipt::Routed(c) = publisher.publish(m, true).await.unwrap() else {
            panic!("routed");
        };
        settlings.push(c.queues_answered().await);
    }
    assert!(matches!(settlings[0], Settling::AfterSync(_)));
    assert!(
        matches!(settlings[1], Settling::RefusedAfterSync(_)),
        "{:?}",
        settlings[1]
    );
    let mut view = broker.sync_view();
    assert_eq!(view.settled(settlings[1]).await, Outcome::Refused);
    let log = store.log();
    let refused_id = log
        .iter()
        .filter_map(|op| match op {
            Op::Publish(id) => Some(*id),
            _ => None,
        })
        .nth(1)
        .expect("two publishes");
    assert!(log.contains(&Op::SettleSynced(refused_id)), "{log:?}");
}

/// One publisher feeding more queues than its outbox finds by a linear search (a fanout to 20 queues): each
/// queue gets every message once, in publish order, when the outbox is flushed.
#[tokio::test]
async fn a_publisher_feeding_many_queues_hands_each_its_messages_in_order() {
    use super::DestinationKind;
    use super::message::Headers;
    use super::vhost::{BindOp, BindingSpec, ExchangeSpec};

    let (_broker, s) = session().await;
    let fanout = ExchangeSpec {
        name: "fan".into(),
        kind: "fanout".into(),
        durable: false,
        auto_delete: false,
        internal: false,
        arguments: Headers::new(),
    };
    s.declare_exchange(fanout, false).unwrap();
    let queues: Vec<String> = (0..20).map(|i| format!("fan-{i}")).collect();
    for q in &queues {
        s.declare_queue(q, QueueOptions::default()).await.unwrap();
        let binding = BindingSpec {
            source: "fan".into(),
            destination: q.clone(),
            destination_kind: DestinationKind::Queue,
            routing_key: String::new(),
            arguments: Headers::new(),
        };
        s.bind(&binding, BindOp::Bind).unwrap();
    }
    let mut publisher = Publisher::new(s.clone());
    for n in 0..10u8 {
        let m = Message::new("fan", "", Bytes::from(vec![n]));
        publisher.publish_buffered(m, false).unwrap();
    }
    assert!(publisher.has_pending());
    publisher.flush().await;
    assert!(!publisher.has_pending());
    for q in &queues {
        for n in 0..10u8 {
            let got = s.get(q, true, None).await.unwrap().expect("a message");
            assert_eq!(&got.message.body[..], &[n], "queue {q}, message {n}");
        }
        assert!(s.get(q, true, None).await.unwrap().is_none(), "queue {q}");
    }
}

fn receive_request(
    max: usize,
    wait_ms: u64,
    group_by: Option<&'static str>,
) -> super::ReceiveRequest {
    super::ReceiveRequest {
        max,
        lease: Duration::from_secs(30),
        wait: Duration::from_millis(wait_ms),
        group_by,
    }
}

#[tokio::test]
async fn a_waiting_receive_is_answered_by_the_next_publish_and_counts_receives() {
    let (_broker, s) = session().await;
    s.declare_queue("poll", QueueOptions::flags(false, false, false))
        .await
        .unwrap();
    let waiting = {
        let s = s.clone();
        tokio::spawn(async move { s.receive("poll", receive_request(10, 10_000, None)).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    publish(&s, message("poll", b"m")).await;
    let got = waiting.await.unwrap().unwrap();
    assert_eq!(got.len(), 1, "answered by the publish, not the wait's end");
    assert_eq!(got[0].receive_count, 1);
    let d = &got[0].delivery;
    assert!(
        d.queue
            .change_lease(d.tag, Duration::ZERO, None)
            .await
            .unwrap()
    );
    let again = s
        .receive("poll", receive_request(10, 0, None))
        .await
        .unwrap();
    assert_eq!(again[0].receive_count, 2);
    // Visible again, a received message is still deleted by its tag.
    assert!(
        d.queue
            .change_lease(d.tag, Duration::ZERO, Some(2))
            .await
            .unwrap()
    );
    d.queue.delete_received(vec![d.tag]).await.unwrap();
    let stats = d.queue.stats().await.unwrap();
    assert_eq!((stats.messages, stats.unacked), (0, 0));
}

#[tokio::test]
async fn a_group_with_a_message_out_is_locked_until_it_is_settled() {
    let (_broker, s) = session().await;
    s.declare_queue("groups", QueueOptions::flags(false, false, false))
        .await
        .unwrap();
    for (group, body) in [("a", &b"a1"[..]), ("a", b"a2"), ("b", b"b1")] {
        let mut m = Message::new("", "groups", Bytes::from_static(body));
        m.headers.push("g", super::message::Value::text(group));
        publish(&s, m).await;
    }
    let first = s
        .receive("groups", receive_request(1, 0, Some("g")))
        .await
        .unwrap();
    assert_eq!(&first[0].delivery.message.body[..], b"a1");
    let others = s
        .receive("groups", receive_request(10, 0, Some("g")))
        .await
        .unwrap();
    let bodies: Vec<&[u8]> = others
        .iter()
        .map(|r| &r.delivery.message.body[..])
        .collect();
    assert_eq!(bodies, vec![&b"b1"[..]], "a2 waits while a1 is out");
    let d = &first[0].delivery;
    d.queue.settle(vec![d.tag], Settle::Ack, None);
    let next = s
        .receive("groups", receive_request(10, 0, Some("g")))
        .await
        .unwrap();
    assert_eq!(&next[0].delivery.message.body[..], b"a2");
}
