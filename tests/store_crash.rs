//! Crash test of the durability contract (shared design §5): the real `ferrymq` binary is SIGKILLed
//! at random points while lapin publishes persistent messages with confirms to a durable queue (and a consumer
//! acks some of them), then restarted on the same data dir, over and over. At the end every message the broker
//! confirmed must have been delivered at least once: duplicates (acks lost in the crash) are allowed and
//! counted, losses must be zero.
//!
//! Small journal segments (64 KiB) make segment rolls, deletions and compaction happen during the run, so the
//! crash points also land in those.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::BrokerProcess;
use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use tokio::sync::Semaphore;

const QUEUE: &str = "crash-test";
const CYCLES: usize = 12;
/// Unconfirmed messages a publisher keeps in flight.
const WINDOW: usize = 128;
const BODY_LEN: usize = 512;

type Seen = Arc<Mutex<BTreeMap<u64, u32>>>;

fn body(seq: u64) -> Vec<u8> {
    let mut b = seq.to_be_bytes().to_vec();
    b.resize(BODY_LEN, (seq % 251) as u8);
    b
}

fn seq_of(data: &[u8]) -> Option<u64> {
    let head: [u8; 8] = data.get(..8)?.try_into().ok()?;
    let seq = u64::from_be_bytes(head);
    (data == body(seq).as_slice()).then_some(seq)
}

/// A test mutex, even if a task panicked while holding it.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn record(seen: &Seen, data: &[u8]) {
    let seq =
        seq_of(data).unwrap_or_else(|| panic!("a delivered body is damaged: {} bytes", data.len()));
    *lock(seen).entry(seq).or_default() += 1;
}

async fn channel(url: &str) -> Option<(Connection, Channel)> {
    let conn = Connection::connect(url, ConnectionProperties::default())
        .await
        .ok()?;
    let ch = conn.create_channel().await.ok()?;
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    ch.queue_declare(QUEUE.into(), durable, FieldTable::default())
        .await
        .ok()?;
    Some((conn, ch))
}

/// Publishes persistent messages with confirms until the connection breaks; records every sequence number
/// the broker acked.
async fn publish_until_killed(
    url: String,
    next: Arc<Mutex<u64>>,
    confirmed: Arc<Mutex<BTreeSet<u64>>>,
) {
    let Some((_conn, ch)) = channel(&url).await else {
        return;
    };
    if ch
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .is_err()
    {
        return;
    }
    let window = Arc::new(Semaphore::new(WINDOW));
    loop {
        let Ok(permit) = window.clone().acquire_owned().await else {
            return;
        };
        let seq = {
            let mut n = lock(&next);
            *n += 1;
            *n
        };
        let persistent = BasicProperties::default().with_delivery_mode(2);
        let published = ch
            .basic_publish(
                "".into(),
                QUEUE.into(),
                BasicPublishOptions::default(),
                &body(seq),
                persistent,
            )
            .await;
        let Ok(confirm) = published else {
            return;
        };
        let confirmed = confirmed.clone();
        tokio::spawn(async move {
            if let Ok(c) = confirm.await
                && c.is_ack()
            {
                lock(&confirmed).insert(seq);
            }
            drop(permit);
        });
    }
}

/// Consumes with manual acks until the connection breaks; records what it received.
async fn consume_until_killed(url: String, seen: Seen) {
    let Some((_conn, ch)) = channel(&url).await else {
        return;
    };
    if ch.basic_qos(64, BasicQosOptions::default()).await.is_err() {
        return;
    }
    let options = BasicConsumeOptions::default();
    let Ok(mut consumer) = ch
        .basic_consume(
            QUEUE.into(),
            "crash-consumer".into(),
            options,
            FieldTable::default(),
        )
        .await
    else {
        return;
    };
    while let Some(Ok(delivery)) = consumer.next().await {
        record(&seen, &delivery.data);
        if delivery.ack(BasicAckOptions::default()).await.is_err() {
            return;
        }
    }
}

/// Takes everything left in the queue with basic.get.
async fn drain(url: &str, seen: &Seen) -> usize {
    let (_conn, ch) = channel(url).await.expect("connect after the last restart");
    let mut n = 0;
    while let Some(msg) = ch
        .basic_get(QUEUE.into(), BasicGetOptions { no_ack: true })
        .await
        .expect("basic.get")
    {
        record(seen, &msg.delivery.data);
        n += 1;
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_never_loses_a_confirmed_message() {
    let config_dir = tempfile::tempdir().expect("config dir");
    let config = config_dir.path().join("ferrymq.toml");
    std::fs::write(
        &config,
        "[store]\nkind = \"journal\"\nsegment_size = 65536\nsync = \"always\"\n",
    )
    .expect("write config");
    let config_arg = config.to_str().expect("utf-8 temp path").to_owned();
    let mut broker = BrokerProcess::start_with(&["--config", &config_arg]);

    let next = Arc::new(Mutex::new(0u64));
    let confirmed = Arc::new(Mutex::new(BTreeSet::new()));
    let seen: Seen = Arc::new(Mutex::new(BTreeMap::new()));
    let started = Instant::now();
    for cycle in 0..CYCLES {
        let url = broker.amqp_url();
        let publisher = tokio::spawn(publish_until_killed(
            url.clone(),
            next.clone(),
            confirmed.clone(),
        ));
        // Every other cycle a consumer acks messages too, so settles, segment deletion and compaction race
        // with the kill as well.
        let consumer =
            (cycle % 2 == 1).then(|| tokio::spawn(consume_until_killed(url, seen.clone())));
        let before = confirmed.lock().unwrap().len();
        tokio::time::sleep(Duration::from_millis(rand::random_range(150..900))).await;
        broker.kill9();
        // The clients notice the dead socket by themselves, usually; a confirm future lapin never resolves
        // must not hang the test (a confirm that never arrived is simply not counted).
        for task in [Some(publisher), consumer].into_iter().flatten() {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(2), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        let after = confirmed.lock().unwrap().len();
        eprintln!(
            "cycle {cycle}: {} messages confirmed before SIGKILL",
            after - before
        );
        broker.restart();
    }
    let drained = drain(&broker.amqp_url(), &seen).await;

    let confirmed = confirmed.lock().unwrap().clone();
    let seen = seen.lock().unwrap().clone();
    let lost: Vec<u64> = confirmed
        .iter()
        .copied()
        .filter(|s| !seen.contains_key(s))
        .collect();
    let duplicates: u32 = seen.values().map(|n| n - 1).sum();
    eprintln!(
        "{CYCLES} SIGKILL cycles in {:.1}s: {} published, {} confirmed, {} delivered ({} drained at the end), \
         {duplicates} duplicates, {} lost",
        started.elapsed().as_secs_f64(),
        *next.lock().unwrap(),
        confirmed.len(),
        seen.len(),
        drained,
        lost.len()
    );
    let logs = broker.logs();
    let segments = std::fs::read_dir(broker.data_dir().join("store"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
                .count()
        })
        .unwrap_or(0);
    eprintln!(
        "journal: {} torn tails cut, {} segments compacted, {segments} segment files left",
        logs.matches("truncating the torn tail").count(),
        logs.matches("compacted journal segment").count(),
    );
    assert!(
        confirmed.len() > CYCLES,
        "too few confirmed messages to say anything: {}",
        confirmed.len()
    );
    assert!(
        lost.is_empty(),
        "{} confirmed messages lost, first: {:?}\nlogs:\n{}",
        lost.len(),
        &lost[..lost.len().min(20)],
        broker.logs()
    );
}
