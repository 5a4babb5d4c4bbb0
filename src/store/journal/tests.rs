//! Tests of the journal through the `Store` API, on the real file system and through the fault-injecting file
//! layer: round trips, torn tails, damaged and missing segments, format versions, a model-based property test,
//! fault injection, group commit, compaction and the disk-free watch.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use proptest::prelude::*;

use super::fs::{Fault, FaultyFs, RealFs};
use super::index::Index;
use super::segment;
use super::simfs::SimDisk;
use super::writer::Tuning;
use super::{JournalOptions, JournalStore, SyncMode, open_tuned};
use crate::store::{
    Binding, Definition, DestinationKind, MsgId, Opaque, QueueKey, Recovered, Store, StoreError,
    StoredMessage, SyncPoint, SyncStatus,
};

pub(super) type TestResult = Result<(), Box<dyn std::error::Error>>;

pub(super) fn options(dir: &Path, segment_size: u64) -> JournalOptions {
    JournalOptions {
        dir: dir.to_path_buf(),
        segment_size,
        sync: SyncMode::Always,
        disk_low_water: 0,
    }
}

/// Housekeeping after every batch, so tests need not sleep for it; compactions in small passes.
pub(super) fn eager() -> Tuning {
    Tuning {
        maintenance_every: Duration::from_millis(1),
        disk_check_every: Duration::from_millis(10),
        compact_after: Duration::ZERO,
        compact_per_pass: 4096,
    }
}

pub(super) fn open_real(dir: &Path, segment_size: u64) -> Result<Arc<JournalStore>, StoreError> {
    open_tuned(options(dir, segment_size), Arc::new(RealFs), eager())
}

/// A message as the store sees it: opaque metadata, a body, and the fields the store reads.
pub(super) fn message(body: &[u8]) -> StoredMessage {
    StoredMessage {
        meta: Opaque::current(Bytes::from_static(b"core metadata")),
        body: Bytes::copy_from_slice(body),
        priority: 0,
        expires_at_ms: None,
        published_at_ms: 1_700_000_000_000,
        recover_publish_time: false,
    }
}

pub(super) fn q(name: &str) -> QueueKey {
    QueueKey::new("/", name)
}

pub(super) fn queue_def(name: &str) -> Definition {
    Definition::Queue {
        vhost: "/".into(),
        name: name.into(),
        auto_delete: false,
        arguments: Opaque::default(),
    }
}

/// Waits until `point` is durable or failed.
pub(super) fn wait(store: &JournalStore, point: SyncPoint) -> SyncStatus {
    let rx = store.sync_state();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = rx.borrow().status(point);
        if status != SyncStatus::Pending || Instant::now() > deadline {
            return status;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

pub(super) fn publish_synced(
    store: &JournalStore,
    id: MsgId,
    queues: &[QueueKey],
    body: &[u8],
) -> Result<(), StoreError> {
    let p = store.publish(id, queues, &message(body))?;
    assert_eq!(wait(store, p), SyncStatus::Durable);
    Ok(())
}

/// Recovered messages as queue -> [(id, body)].
pub(super) fn summary(r: &Recovered) -> BTreeMap<QueueKey, Vec<(MsgId, Bytes)>> {
    r.messages
        .iter()
        .filter(|(_, v)| !v.messages.is_empty())
        .map(|(k, v)| {
            (
                k.clone(),
                v.messages
                    .iter()
                    .map(|m| {
                        let body = v.bodies.get(&m.id).map(|m| m.body.clone());
                        (
                            m.id,
                            body.expect("small stores are recovered with their bodies"),
                        )
                    })
                    .collect(),
            )
        })
        .collect()
}

pub(super) fn segments(dir: &Path) -> Vec<u64> {
    let mut v: Vec<u64> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str().and_then(segment::parse_name))
                .collect()
        })
        .unwrap_or_default();
    v.sort_unstable();
    v
}

pub(super) fn segment_path(dir: &Path, n: u64) -> PathBuf {
    segment::path(dir, n)
}

pub(super) fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    for e in std::fs::read_dir(from)? {
        let e = e?;
        std::fs::copy(e.path(), to.join(e.file_name()))?;
    }
    Ok(())
}

pub(super) fn fold(defs: &[Definition]) -> Vec<Definition> {
    let mut ix = Index::default();
    for d in defs {
        ix.define(0, d);
    }
    ix.definitions()
}

#[test]
fn publish_settle_and_define_survive_a_restart() -> TestResult {
    let dir = tempfile::tempdir()?;
    let defs = vec![
        queue_def("a"),
        queue_def("b"),
        Definition::Exchange {
            vhost: "/".into(),
            name: "e".into(),
            kind: "fanout".into(),
            auto_delete: false,
            internal: false,
            arguments: Opaque::default(),
        },
        Definition::Bind(Binding {
            vhost: "/".into(),
            source: "e".into(),
            destination: "a".into(),
            destination_kind: DestinationKind::Queue,
            routing_key: "".into(),
            arguments: Opaque::default(),
        }),
    ];
    {
        let store = open_real(dir.path(), 1 << 20)?;
        assert_eq!(store.recover()?.next_id, 0);
        for d in &defs {
            let p = store.define(d)?;
            assert_eq!(wait(&store, p), SyncStatus::Durable);
        }
        publish_synced(&store, 1, &[q("a"), q("b")], b"one")?;
        publish_synced(&store, 2, &[q("a")], b"two")?;
        publish_synced(&store, 3, &[q("b")], b"three")?;
        store.settle(&q("a"), 1)?;
        store.settle(&q("b"), 3)?;
        store.close();
        assert!(
            store.publish(4, &[q("a")], &message(b"late")).is_err(),
            "closed store accepted an append"
        );
    }
    let store = open_real(dir.path(), 1 << 20)?;
    let r = store.recover()?;
    assert_eq!(r.definitions, defs);
    assert_eq!(r.next_id, 4);
    let want: BTreeMap<_, _> = [
        (q("a"), vec![(2, Bytes::from_static(b"two"))]),
        (q("b"), vec![(1, Bytes::from_static(b"one"))]),
    ]
    .into_iter()
    .collect();
    assert_eq!(summary(&r), want);
    let a = &r.messages[&q("a")];
    let m = a.bodies.get(&a.messages[0].id);
    assert_eq!(m.map(|m| &**m), Some(&message(b"two")));
    assert!(store.recover().is_err(), "recover() must run once");
    Ok(())
}

#[test]
fn a_second_journal_on_the_same_directory_is_refused() -> TestResult {
    let dir = tempfile::tempdir()?;
    let _first = open_real(dir.path(), 1 << 20)?;
    let second = open_real(dir.path(), 1 << 20);
    assert!(matches!(second, Err(StoreError::Io(_))), "{second:?}");
    Ok(())
}

/// Writes `n` messages (ids 1..=n), each synced on its own, into `dir` and leaves the files as a crash right
/// after the last sync would (a copy taken while the writer still runs: the head is not sealed). Returns, for the
/// last segment, where the last record starts and ends.
pub(super) fn write_then_measure_last(
    dir: &Path,
    n: u64,
) -> Result<(u64, u64, u64), Box<dyn std::error::Error>> {
    let live = tempfile::tempdir()?;
    let store = open_real(live.path(), 1 << 20)?;
    store.recover()?;
    for id in 1..n {
        publish_synced(&store, id, &[q("a")], format!("message {id}").as_bytes())?;
    }
    let head = *segments(live.path()).last().ok_or("no segment")?;
    let start = std::fs::metadata(segment_path(live.path(), head))?.len();
    publish_synced(&store, n, &[q("a")], format!("message {n}").as_bytes())?;
    crash_copy(live.path(), dir)?;
    let end = std::fs::metadata(segment_path(dir, head))?.len();
    Ok((head, start, end))
}

/// Copies the journal's files as they are now (some may vanish while copying: a deleted segment).
pub(super) fn snapshot(from: &Path, to: &Path) -> std::io::Result<()> {
    for e in std::fs::read_dir(from)? {
        let e = e?;
        match std::fs::copy(e.path(), to.join(e.file_name())) {
            Ok(_) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

/// What a crash (`kill -9`) leaves in `from`, copied into `to`: the files as they are, without the lock.
pub(super) fn crash_copy(from: &Path, to: &Path) -> std::io::Result<()> {
    snapshot(from, to)?;
    match std::fs::remove_file(to.join("LOCK")) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[test]
fn a_torn_last_record_is_cut_at_every_byte_offset_and_earlier_records_survive() -> TestResult {
    let base = tempfile::tempdir()?;
    let (head, start, end) = write_then_measure_last(base.path(), 5)?;
    assert!(end > start);
    for cut in start..end {
        let dir = tempfile::tempdir()?;
        copy_dir(base.path(), dir.path())?;
        let path = segment_path(dir.path(), head);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)?
            .set_len(cut)?;
        let store = open_real(dir.path(), 1 << 20)?;
        let r = store.recover()?;
        let ids: Vec<MsgId> = r.messages[&q("a")].messages.iter().map(|m| m.id).collect();
        assert_eq!(ids, vec![1, 2, 3, 4], "cut at {cut}");
        assert_eq!(
            std::fs::metadata(&path)?.len(),
            start,
            "torn tail not truncated at {cut}"
        );
    }
    Ok(())
}

#[test]
fn a_flipped_bit_in_the_last_record_drops_it_and_only_it() -> TestResult {
    let base = tempfile::tempdir()?;
    let (head, start, end) = write_then_measure_last(base.path(), 3)?;
    // Bit 0 of: a CRC byte, a payload byte near the start, the last byte of the body.
    for offset in [start + 5, start + 9, end - 1] {
        let dir = tempfile::tempdir()?;
        copy_dir(base.path(), dir.path())?;
        flip_bit(&segment_path(dir.path(), head), offset)?;
        let store = open_real(dir.path(), 1 << 20)?;
        let ids: Vec<MsgId> = store.recover()?.messages[&q("a")]
            .messages
            .iter()
            .map(|m| m.id)
            .collect();
        assert_eq!(ids, vec![1, 2], "flip at {offset}");
    }
    Ok(())
}

pub(super) fn flip_bit(path: &Path, offset: u64) -> std::io::Result<()> {
    let mut bytes = std::fs::read(path)?;
    if let Some(b) = bytes.get_mut(usize::try_from(offset).unwrap_or(usize::MAX)) {
        *b ^= 1;
    }
    std::fs::write(path, bytes)
}

/// Three segments, each holding one live message: 1, 2, 3.
pub(super) fn three_segments(dir: &Path) -> TestResult {
    for id in 1..=3 {
        let store = open_real(dir, 1 << 20)?;
        store.recover()?;
        publish_synced(&store, id, &[q("a")], b"payload")?;
        store.close();
    }
    Ok(())
}

#[test]
fn a_flipped_bit_in_an_older_segment_is_corruption_not_a_torn_tail() -> TestResult {
    let dir = tempfile::tempdir()?;
    three_segments(dir.path())?;
    assert_eq!(segments(dir.path()), vec![1, 2, 3]);
    let first = segment_path(dir.path(), 1);
    let len = std::fs::metadata(&first)?.len();
    flip_bit(&first, len - 2)?;
    let err = open_real(dir.path(), 1 << 20).expect_err("damaged middle segment accepted");
    let text = err.to_string();
    assert!(matches!(err, StoreError::Damaged { .. }), "{text}");
    assert!(
        text.contains(&segment::file_name(1)) && text.contains("CRC") && text.contains("SALVAGE"),
        "{text}"
    );
    Ok(())
}

#[test]
fn a_missing_segment_in_the_middle_is_reported_by_name() -> TestResult {
    let dir = tempfile::tempdir()?;
    three_segments(dir.path())?;
    std::fs::remove_file(segment_path(dir.path(), 2))?;
    let err = open_real(dir.path(), 1 << 20).expect_err("missing segment accepted");
    let text = err.to_string();
    assert!(matches!(err, StoreError::Corrupt(_)), "{text}");
    assert!(
        text.contains(&segment::file_name(2)) && text.contains("missing"),
        "{text}"
    );
    Ok(())
}

#[test]
fn a_segment_from_a_future_format_version_is_refused() -> TestResult {
    let dir = tempfile::tempdir()?;
    three_segments(dir.path())?;
    let path = segment_path(dir.path(), 2);
    let mut bytes = std::fs::read(&path)?;
    bytes[4..8].copy_from_slice(&3u32.to_le_bytes());
    std::fs::write(&path, bytes)?;
    match open_real(dir.path(), 1 << 20) {
        Err(StoreError::FutureVersion {
            found: 3,
            supported: 2,
        }) => Ok(()),
        other => Err(format!("expected FutureVersion, got {other:?}").into()),
    }
}

#[test]
fn a_last_segment_with_a_torn_header_is_removed() -> TestResult {
    let dir = tempfile::tempdir()?;
    three_segments(dir.path())?;
    std::fs::write(segment_path(dir.path(), 4), &segment::header(4, 0)[..7])?;
    let store = open_real(dir.path(), 1 << 20)?;
    let ids: Vec<MsgId> = store.recover()?.messages[&q("a")]
        .messages
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(ids, vec![1, 2, 3]);
    Ok(())
}

#[test]
fn a_length_field_larger_than_the_file_is_a_torn_tail_not_an_allocation() -> TestResult {
    let base = tempfile::tempdir()?;
    let (head, start, _) = write_then_measure_last(base.path(), 2)?;
    let path = segment_path(base.path(), head);
    let mut bytes = std::fs::read(&path)?;
    let at = usize::try_from(start)?;
    bytes[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    std::fs::write(&path, bytes)?;
    let store = open_real(base.path(), 1 << 20)?;
    let ids: Vec<MsgId> = store.recover()?.messages[&q("a")]
        .messages
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(ids, vec![1]);
    Ok(())
}

#[test]
fn deleting_a_queue_drops_its_messages_at_recovery() -> TestResult {
    let dir = tempfile::tempdir()?;
    {
        let store = open_real(dir.path(), 1 << 20)?;
        store.recover()?;
        store.define(&queue_def("a"))?;
        publish_synced(&store, 1, &[q("a"), q("b")], b"x")?;
        publish_synced(&store, 2, &[q("a")], b"y")?;
        let p = store.define(&Definition::DeleteQueue {
            vhost: "/".into(),
            name: "a".into(),
        })?;
        assert_eq!(wait(&store, p), SyncStatus::Durable);
        store.define(&queue_def("a"))?;
        publish_synced(&store, 3, &[q("a")], b"z")?;
    }
    let store = open_real(dir.path(), 1 << 20)?;
    let r = store.recover()?;
    let want: BTreeMap<_, _> = [
        (q("a"), vec![(3, Bytes::from_static(b"z"))]),
        (q("b"), vec![(1, Bytes::from_static(b"x"))]),
    ]
    .into_iter()
    .collect();
    assert_eq!(summary(&r), want);
    assert_eq!(r.next_id, 4);
    Ok(())
}

// ---- space ----

#[test]
fn settled_segments_are_deleted_and_a_stuck_message_is_compacted_out_of_old_segments() -> TestResult
{
    let dir = tempfile::tempdir()?;
    let body = vec![7u8; 1000];
    {
        let store = open_real(dir.path(), 8192)?;
        store.recover()?;
        publish_synced(&store, 1, &[q("stuck")], b"keep me")?;
        for id in 2..400 {
            publish_synced(&store, id, &[q("busy")], &body)?;
            store.settle(&q("busy"), id)?;
        }
        // Give the writer a few more batches to finish compaction and deletion.
        for id in 400..410 {
            publish_synced(&store, id, &[q("busy")], b"tail")?;
            store.settle(&q("busy"), id)?;
        }
        let segs = segments(dir.path());
        // ~400 KB went through 8 KB segments: without deletion there would be 50 of them.
        assert!(segs.len() <= 5, "segments not reclaimed: {segs:?}");
        assert!(
            !segs.contains(&1),
            "the stuck message still pins the first segment: {segs:?}"
        );
    }
    let store = open_real(dir.path(), 8192)?;
    let r = store.recover()?;
    let want: BTreeMap<_, _> = [(q("stuck"), vec![(1, Bytes::from_static(b"keep me"))])]
        .into_iter()
        .collect();
    assert_eq!(summary(&r), want);
    assert_eq!(r.next_id, 410);
    Ok(())
}

#[test]
fn definitions_survive_the_deletion_of_the_segments_that_first_held_them() -> TestResult {
    let dir = tempfile::tempdir()?;
    let body = vec![1u8; 1000];
    {
        let store = open_real(dir.path(), 4096)?;
        store.recover()?;
        store.define(&queue_def("a"))?;
        store.define(&queue_def("gone"))?;
        store.define(&Definition::DeleteQueue {
            vhost: "/".into(),
            name: "gone".into(),
        })?;
        for id in 1..60 {
            publish_synced(&store, id, &[q("a")], &body)?;
            store.settle(&q("a"), id)?;
        }
        assert!(
            !segments(dir.path()).contains(&1),
            "{:?}",
            segments(dir.path())
        );
    }
    let store = open_real(dir.path(), 4096)?;
    let r = store.recover()?;
    assert_eq!(fold(&r.definitions), vec![queue_def("a")]);
    assert!(summary(&r).is_empty());
    assert_eq!(r.next_id, 60);
    Ok(())
}

#[test]
fn the_blocked_watch_follows_free_space_around_the_low_water_mark() -> TestResult {
    let dir = tempfile::tempdir()?;
    let fs = FaultyFs::new(Arc::new(RealFs));
    fs.set_available(Some(10));
    let mut opts = options(dir.path(), 1 << 20);
    opts.disk_low_water = 1_000_000;
    let store = open_tuned(opts, Arc::new(fs.clone()), eager())?;
    store.recover()?;
    let mut rx = store.blocked();
    assert!(
        *rx.borrow_and_update(),
        "not blocked while below the low-water mark"
    );
    fs.set_available(Some(2_000_000));
    let deadline = Instant::now() + Duration::from_secs(10);
    while *rx.borrow() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!*rx.borrow(), "still blocked after space came back");
    // Publishers are blocked, not failed: appends still work.
    publish_synced(&store, 1, &[q("a")], b"x")?;
    Ok(())
}

// ---- group commit ----

#[test]
fn group_commit_syncs_far_less_often_than_it_appends() -> TestResult {
    let dir = tempfile::tempdir()?;
    let fs = FaultyFs::new(Arc::new(RealFs));
    let store = open_tuned(
        options(dir.path(), 64 << 20),
        Arc::new(fs.clone()),
        Tuning::default(),
    )?;
    store.recover()?;
    let syncs_before = fs.syncs();
    let writes_before = fs.writes();
    const THREADS: u64 = 8;
    const PER_THREAD: u64 = 500;
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let store = &store;
            s.spawn(move || {
                let mut last = SyncPoint(0);
                for i in 0..PER_THREAD {
                    let id = t * PER_THREAD + i + 1;
                    if let Ok(p) = store.publish(id, &[q("a")], &message(&[0u8; 256])) {
                        last = p;
                    }
                }
                assert_eq!(wait(store, last), SyncStatus::Durable);
            });
        }
    });
    let appends = THREADS * PER_THREAD;
    let syncs = fs.syncs() - syncs_before;
    assert!(syncs * 4 < appends, "{syncs} syncs for {appends} appends");
    let writes = fs.writes() - writes_before;
    assert!(
        writes * 4 < appends,
        "{writes} writes for {appends} appends"
    );
    store.close();
    let store = open_real(dir.path(), 64 << 20)?;
    assert_eq!(
        store.recover()?.messages[&q("a")].messages.len() as u64,
        appends
    );
    Ok(())
}

#[test]
fn settles_ride_along_without_a_sync_of_their_own() -> TestResult {
    let dir = tempfile::tempdir()?;
    let fs = FaultyFs::new(Arc::new(RealFs));
    let store = open_tuned(
        options(dir.path(), 1 << 20),
        Arc::new(fs.clone()),
        Tuning::default(),
    )?;
    store.recover()?;
    publish_synced(&store, 1, &[q("a")], b"x")?;
    let syncs = fs.syncs();
    for _ in 0..100 {
        store.settle(&q("a"), 1)?;
    }
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(fs.syncs(), syncs, "settles forced a sync");
    Ok(())
}

#[test]
fn a_batch_window_gathers_appends_into_one_sync() -> TestResult {
    let dir = tempfile::tempdir()?;
    let fs = FaultyFs::new(Arc::new(RealFs));
    let mut opts = options(dir.path(), 1 << 20);
    opts.sync = SyncMode::BatchWindow(Duration::from_millis(200));
    let store = open_tuned(opts, Arc::new(fs.clone()), Tuning::default())?;
    store.recover()?;
    let syncs = fs.syncs();
    let mut last = SyncPoint(0);
    for id in 1..=50 {
        last = store.publish(id, &[q("a")], &message(b"x"))?;
    }
    assert_eq!(wait(&store, last), SyncStatus::Durable);
    assert_eq!(fs.syncs() - syncs, 1);
    Ok(())
}

// ---- fault injection ----

/// Publishes one message at a time, waiting for each, until the store fails; then checks the failure contract
/// and that a restart on a good file system recovers every message that was reported durable.
fn failure_is_final_and_loses_nothing_confirmed(fault: Fault) -> TestResult {
    let dir = tempfile::tempdir()?;
    let fs = FaultyFs::new(Arc::new(RealFs));
    fs.inject(fault);
    let store = open_tuned(options(dir.path(), 1 << 20), Arc::new(fs.clone()), eager())?;
    store.recover()?;
    let mut durable = Vec::new();
    let mut failed_at = None;
    for id in 1..=20 {
        let point = match store.publish(id, &[q("a")], &message(format!("m{id}").as_bytes())) {
            Ok(p) => p,
            Err(StoreError::Failed(reason)) => {
                assert!(failed_at.is_some(), "rejected before any failure: {reason}");
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        match wait(&store, point) {
            SyncStatus::Durable => {
                assert!(
                    failed_at.is_none(),
                    "message {id} reported durable after the failure"
                );
                durable.push(id);
            }
            SyncStatus::Failed => failed_at = failed_at.or(Some(id)),
            SyncStatus::Pending => return Err(format!("message {id} never settled").into()),
        }
    }
    let failed_at = failed_at.ok_or("the fault never fired")?;
    assert!(
        !durable.is_empty(),
        "the fault fired before anything was durable"
    );
    let state = store.sync_state().borrow().clone();
    let reason = state.failed.as_ref().ok_or("failed not set")?.to_string();
    assert!(
        state.synced < SyncPoint(failed_at),
        "synced point passed the failed record"
    );
    assert!(reason.contains("journal write or sync failed"), "{reason}");
    let health = store.healthy().expect_err("failed store reports healthy");
    assert!(health.contains("no further persistent writes"), "{health}");
    assert!(matches!(
        store.publish(100, &[q("a")], &message(b"no")),
        Err(StoreError::Failed(_))
    ));
    assert!(matches!(
        store.define(&queue_def("no")),
        Err(StoreError::Failed(_))
    ));
    assert!(matches!(
        store.settle(&q("a"), 1),
        Err(StoreError::Failed(_))
    ));
    store.close();
    drop(store);

    let store = open_real(dir.path(), 1 << 20)?;
    let recovered: BTreeSet<MsgId> = store
        .recover()?
        .messages
        .get(&q("a"))
        .map(|v| v.messages.iter().map(|m| m.id).collect())
        .unwrap_or_default();
    for id in &durable {
        assert!(
            recovered.contains(id),
            "confirmed message {id} lost after {fault:?}"
        );
    }
    // The journal works again on a good disk.
    publish_synced(&store, 1000, &[q("a")], b"after")?;
    Ok(())
}

#[test]
fn a_failed_fdatasync_fails_the_store_and_loses_nothing_confirmed() -> TestResult {
    // Sync 1 is the head segment's creation; 2.. are one per published message.
    failure_is_final_and_loses_nothing_confirmed(Fault::FailSync(6))
}

#[test]
fn a_short_write_fails_the_store_and_loses_nothing_confirmed() -> TestResult {
    failure_is_final_and_loses_nothing_confirmed(Fault::ShortWrite(6))
}

#[test]
fn enospc_fails_the_store_and_loses_nothing_confirmed() -> TestResult {
    failure_is_final_and_loses_nothing_confirmed(Fault::NoSpace(6))
}

#[test]
fn a_failed_sync_while_rolling_a_segment_fails_the_store() -> TestResult {
    let dir = tempfile::tempdir()?;
    let fs = FaultyFs::new(Arc::new(RealFs));
    let store = open_tuned(options(dir.path(), 4096), Arc::new(fs.clone()), eager())?;
    store.recover()?;
    publish_synced(&store, 1, &[q("a")], &[0u8; 3000])?;
    // The next publish rolls: the old head is synced first (that sync fails).
    fs.inject(Fault::FailSync(fs.syncs() + 1));
    let p = store.publish(2, &[q("a")], &message(&[0u8; 3000]))?;
    assert_eq!(wait(&store, p), SyncStatus::Failed);
    assert!(store.healthy().is_err());
    Ok(())
}

// ---- model-based property test ----

#[derive(Debug, Clone)]
enum ModelOp {
    Publish {
        queues: Vec<usize>,
        size: usize,
    },
    Settle {
        queue: usize,
        pick: usize,
    },
    Declare(usize),
    Delete(usize),
    /// Close cleanly and open again: nothing settled comes back.
    Reopen,
    /// The process dies (`kill -9`) and starts again: the page cache survives, settles that were not written
    /// yet are lost (those messages come back).
    Kill,
    /// The machine loses power and starts again: what no sync covered is lost or torn (see `simfs`).
    PowerCut(u64),
    /// The next `fdatasync` fails with EIO (its pages marked clean, never written), a publish goes with it, and
    /// the failed broker is restarted.
    FailSync,
}

const QUEUES: [&str; 3] = ["q0", "q1", "q2"];

fn model_op() -> impl Strategy<Value = ModelOp> {
    prop_oneof![
        6 => (prop::collection::vec(0..3usize, 1..3), 0..1500usize)
            .prop_map(|(queues, size)| ModelOp::Publish { queues, size }),
        5 => (0..3usize, any::<usize>()).prop_map(|(queue, pick)| ModelOp::Settle { queue, pick }),
        1 => (0..3usize).prop_map(ModelOp::Declare),
        1 => (0..3usize).prop_map(ModelOp::Delete),
        1 => Just(ModelOp::Reopen),
        1 => Just(ModelOp::Kill),
        1 => any::<u64>().prop_map(ModelOp::PowerCut),
        1 => Just(ModelOp::FailSync),
    ]
}

#[derive(Debug, Default)]
struct Model {
    /// Live messages: id -> (body, queues holding it).
    messages: BTreeMap<MsgId, (Bytes, BTreeSet<usize>)>,
    definitions: Vec<Definition>,
    /// The next id the test hands out.
    next_id: MsgId,
    /// One past the highest id ever confirmed: recovery must never hand out an id below it.
    confirmed_ids: MsgId,
    /// (message, queue) pairs settled so far: after a crash those may be back.
    settled: BTreeSet<(MsgId, usize)>,
    /// Messages published but never confirmed (the journal failed first): after a restart they may be there.
    unconfirmed: BTreeMap<MsgId, BTreeSet<usize>>,
    bodies: BTreeMap<MsgId, Bytes>,
}

impl Model {
    fn expected(&self) -> BTreeMap<QueueKey, Vec<(MsgId, Bytes)>> {
        let mut out: BTreeMap<QueueKey, Vec<(MsgId, Bytes)>> = BTreeMap::new();
        for (id, (body, queues)) in &self.messages {
            for qi in queues {
                out.entry(q(QUEUES[*qi]))
                    .or_default()
                    .push((*id, body.clone()));
            }
        }
        out
    }

    /// Whether message `id` may be in queue `qi` after a crash although the model does not hold it there.
    fn may_come_back(&self, id: MsgId, qi: usize) -> bool {
        self.settled.contains(&(id, qi))
            || self.unconfirmed.get(&id).is_some_and(|qs| qs.contains(&qi))
    }

    /// Takes what a crash brought back (settled or unconfirmed messages) as live again.
    fn absorb(&mut self, got: &BTreeMap<QueueKey, Vec<(MsgId, Bytes)>>) {
        for (i, name) in QUEUES.iter().enumerate() {
            for (id, body) in got.get(&q(name)).into_iter().flatten() {
                let entry = self
                    .messages
                    .entry(*id)
                    .or_insert_with(|| (body.clone(), BTreeSet::new()));
                entry.1.insert(i);
            }
        }
    }
}

/// Recovery after a clean close: exactly the model.
fn check_recovered(store: &JournalStore, model: &Model) -> Result<(), TestCaseError> {
    let r = store
        .recover()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(summary(&r), model.expected());
    prop_assert_eq!(fold(&r.definitions), fold(&model.definitions));
    prop_assert!(
        r.next_id >= model.confirmed_ids,
        "next_id {} < {}",
        r.next_id,
        model.confirmed_ids
    );
    Ok(())
}

/// Recovery after a crash: nothing confirmed lost, nothing back that was not settled (or never confirmed),
/// definitions intact. The model then takes what came back as live.
fn check_after_crash(store: &JournalStore, model: &mut Model) -> Result<(), TestCaseError> {
    let r = store
        .recover()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let got = summary(&r);
    let want = model.expected();
    for (i, name) in QUEUES.iter().enumerate() {
        let key = q(name);
        let got: BTreeMap<MsgId, Bytes> = got
            .get(&key)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .collect();
        let want: BTreeMap<MsgId, Bytes> = want
            .get(&key)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .collect();
        for (id, body) in &want {
            prop_assert_eq!(
                got.get(id),
                Some(body),
                "confirmed message {} lost from {} in a crash",
                id,
                name
            );
        }
        for (id, body) in &got {
            if !want.contains_key(id) {
                prop_assert!(
                    model.may_come_back(*id, i),
                    "message {} back in {} but never settled there",
                    id,
                    name
                );
                prop_assert_eq!(model.bodies.get(id), Some(body));
            }
        }
    }
    prop_assert_eq!(fold(&r.definitions), fold(&model.definitions));
    prop_assert!(r.next_id >= model.confirmed_ids);
    model.absorb(&got);
    Ok(())
}

/// Runs the ops against a journal on a simulated disk and the model side by side.
struct ModelRun {
    disk: SimDisk,
    dir: PathBuf,
    store: Arc<JournalStore>,
    model: Model,
}

impl ModelRun {
    fn open(disk: &SimDisk, dir: &Path) -> Result<Arc<JournalStore>, TestCaseError> {
        open_tuned(options(dir, 4096), disk.boot(), eager())
            .map_err(|e| TestCaseError::fail(format!("start-up failed: {e}")))
    }

    /// Stops the current process (already killed or powered off, or closing cleanly) and starts a new one.
    fn restart(&mut self) -> Result<(), TestCaseError> {
        self.store.close();
        self.store = Self::open(&self.disk, &self.dir)?;
        Ok(())
    }

    fn publish(&mut self, queues: Vec<usize>, size: usize) -> Result<SyncStatus, TestCaseError> {
        let id = self.model.next_id;
        self.model.next_id += 1;
        let set: BTreeSet<usize> = queues.into_iter().collect();
        let keys: Vec<QueueKey> = set.iter().map(|i| q(QUEUES[*i])).collect();
        let body = Bytes::from(vec![(id % 251) as u8; size]);
        self.model.bodies.insert(id, body.clone());
        let status = match self.store.publish(id, &keys, &message(&body)) {
            Ok(p) => wait(&self.store, p),
            Err(_) => SyncStatus::Failed,
        };
        match status {
            SyncStatus::Durable => {
                self.model.messages.insert(id, (body, set));
                self.model.confirmed_ids = id + 1;
            }
            _ => {
                self.model.unconfirmed.insert(id, set);
            }
        }
        Ok(status)
    }

    fn settle(&mut self, queue: usize, pick: usize) -> Result<(), TestCaseError> {
        let held: Vec<MsgId> = self
            .model
            .messages
            .iter()
            .filter(|(_, (_, qs))| qs.contains(&queue))
            .map(|(id, _)| *id)
            .collect();
        if held.is_empty() {
            return Ok(());
        }
        let id = held[pick % held.len()];
        self.store
            .settle(&q(QUEUES[queue]), id)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        self.model.settled.insert((id, queue));
        if let Some((_, qs)) = self.model.messages.get_mut(&id) {
            qs.remove(&queue);
            if qs.is_empty() {
                self.model.messages.remove(&id);
            }
        }
        Ok(())
    }

    fn define(&mut self, d: Definition) -> Result<(), TestCaseError> {
        let p = self
            .store
            .define(&d)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(wait(&self.store, p), SyncStatus::Durable);
        if let Definition::DeleteQueue { name, .. } = &d
            && let Some(i) = QUEUES.iter().position(|n| n == name)
        {
            for (_, qs) in self.model.messages.values_mut() {
                qs.remove(&i);
            }
            self.model.messages.retain(|_, (_, qs)| !qs.is_empty());
        }
        self.model.definitions.push(d);
        Ok(())
    }

    fn apply(&mut self, op: ModelOp) -> Result<(), TestCaseError> {
        match op {
            ModelOp::Publish { queues, size } => {
                prop_assert_eq!(self.publish(queues, size)?, SyncStatus::Durable);
            }
            ModelOp::Settle { queue, pick } => self.settle(queue, pick)?,
            ModelOp::Declare(i) => self.define(queue_def(QUEUES[i]))?,
            ModelOp::Delete(i) => self.define(Definition::DeleteQueue {
                vhost: "/".into(),
                name: QUEUES[i].into(),
            })?,
            ModelOp::Reopen => {
                self.restart()?;
                check_recovered(&self.store, &self.model)?;
            }
            ModelOp::Kill => {
                self.disk.kill();
                self.restart()?;
                check_after_crash(&self.store, &mut self.model)?;
            }
            ModelOp::PowerCut(seed) => {
                self.disk.power_cut(seed);
                self.restart()?;
                check_after_crash(&self.store, &mut self.model)?;
            }
            ModelOp::FailSync => {
                self.disk.fail_syncs(1);
                self.publish(vec![0], 100)?;
                self.disk.fail_syncs(0);
                self.disk.kill();
                self.restart()?;
                check_after_crash(&self.store, &mut self.model)?;
            }
        }
        Ok(())
    }
}

fn run_model(ops: Vec<ModelOp>) -> Result<(), TestCaseError> {
    let dir = PathBuf::from("/sim/store");
    let disk = SimDisk::new(&dir);
    let store = ModelRun::open(&disk, &dir)?;
    let mut run = ModelRun {
        disk,
        dir,
        store,
        model: Model::default(),
    };
    check_recovered(&run.store, &run.model)?;
    for op in ops {
        run.apply(op)?;
    }
    run.restart()?;
    check_recovered(&run.store, &run.model)?;
    // And once more after a power cut at rest: everything was synced by the clean close.
    run.disk.power_cut(7);
    run.restart()?;
    check_recovered(&run.store, &run.model)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]
    #[test]
    fn recovery_matches_an_in_memory_model_through_kills_power_cuts_and_failed_syncs(
        ops in prop::collection::vec(model_op(), 1..80)
    ) {
        run_model(ops)?;
    }
}

// ---- benchmark (run with --ignored --nocapture) ----

#[test]
#[ignore = "benchmark: prints recovery times; run with `cargo test --release --lib bench_ -- --ignored --nocapture`"]
fn bench_recovery_of_a_backlog() -> TestResult {
    let count: u64 = std::env::var("BENCH_RECOVERY_COUNT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000);
    let size: usize = std::env::var("BENCH_RECOVERY_SIZE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    // BENCH_RECOVERY_DIR keeps the filled journal for later runs (e.g. to profile recovery alone).
    let temp = tempfile::tempdir()?;
    let dir =
        std::env::var_os("BENCH_RECOVERY_DIR").map_or(temp.path().to_path_buf(), PathBuf::from);
    let open = || {
        open_tuned(
            JournalOptions::new(&dir),
            Arc::new(RealFs),
            Tuning::default(),
        )
    };
    if segments(&dir).is_empty() {
        let store = open()?;
        store.recover()?;
        let mut body = message(&vec![42u8; size]);
        // BENCH_RECOVERY_DEADLINES=1: every message has a deadline (as SQS messages have their retention).
        if std::env::var_os("BENCH_RECOVERY_DEADLINES").is_some() {
            body.expires_at_ms = Some(u64::MAX / 2);
        }
        let mut last = SyncPoint::default();
        for id in 0..count {
            last = store.publish(id, &[q("bench")], &body)?;
            if id % 100_000 == 99_999 {
                wait(&store, last);
            }
        }
        assert_eq!(wait(&store, last), SyncStatus::Durable);
    }
    // CPU time of this thread (recovery runs on it), which other load on the machine does not inflate.
    let cpu_ns = || -> u64 {
        std::fs::read_to_string("/proc/thread-self/schedstat")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    for round in 0..3 {
        let started = Instant::now();
        let cpu = cpu_ns();
        let store = open()?;
        let recovered = store.recover()?;
        let elapsed = started.elapsed();
        let cpu = cpu_ns() - cpu;
        let n: usize = recovered.messages.values().map(|q| q.messages.len()).sum();
        assert_eq!(n as u64, count);
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let kib = |key: &str| {
            status
                .lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .unwrap_or(0)
        };
        println!(
            "recovery bench round {round}: {count} x {size} B recovered in {:.0} ms, {:.0} ms of CPU ({:.0} ns a message), RSS {} MiB, peak {} MiB",
            elapsed.as_secs_f64() * 1e3,
            cpu as f64 / 1e6,
            cpu as f64 / count as f64,
            kib("VmRSS:") / 1024,
            kib("VmHWM:") / 1024
        );
        drop(recovered);
    }
    Ok(())
}

#[test]
#[ignore = "benchmark: prints appends/s; run with `cargo test --release --lib bench_ -- --ignored --nocapture`"]
fn bench_appends_per_second_sync_always_1kib_8_threads() -> TestResult {
    let dir = tempfile::tempdir()?;
    let fs = FaultyFs::new(Arc::new(RealFs));
    let store = open_tuned(
        JournalOptions::new(dir.path()),
        Arc::new(fs.clone()),
        Tuning::default(),
    )?;
    store.recover()?;
    const THREADS: u64 = 8;
    const WINDOW: u64 = 256;
    let run_for = Duration::from_secs(3);
    let started = Instant::now();
    let counts: Vec<u64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let store = &store;
                s.spawn(move || {
                    let body = message(&[42u8; 1024]);
                    let queues = [q("bench")];
                    let mut n = 0u64;
                    let mut outstanding = std::collections::VecDeque::new();
                    while started.elapsed() < run_for {
                        let id = (t << 40) | n;
                        match store.publish(id, &queues, &body) {
                            Ok(p) => outstanding.push_back(p),
                            Err(_) => break,
                        }
                        n += 1;
                        // Like a publisher with at most WINDOW unconfirmed messages.
                        if outstanding.len() as u64 >= WINDOW
                            && let Some(p) = outstanding.pop_front()
                        {
                            wait(store, p);
                        }
                    }
                    if let Some(p) = outstanding.pop_back() {
                        wait(store, p);
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).collect()
    });
    let elapsed = started.elapsed().as_secs_f64();
    let total: u64 = counts.iter().sum();
    let syncs = fs.syncs();
    println!(
        "journal bench: {total} appends of 1 KiB from {THREADS} threads (window {WINDOW}) in {elapsed:.2}s = {:.0} appends/s, \
         {syncs} fdatasyncs ({:.1} appends per sync)",
        total as f64 / elapsed,
        total as f64 / syncs.max(1) as f64
    );
    Ok(())
}

// ---- reading messages back (queues paging bodies out) ----

#[test]
fn read_returns_a_message_from_its_segment_and_waits_for_an_unwritten_publish() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = open_real(dir.path(), 1 << 20)?;
    store.recover()?;
    publish_synced(&store, 1, &[q("a")], b"synced")?;
    assert_eq!(store.read(1)?, message(b"synced"));
    // Read straight after the append, before anyone waited for its sync: the store waits for the writer.
    for id in 2..50 {
        let body = format!("fresh {id}");
        store.publish(id, &[q("a")], &message(body.as_bytes()))?;
        assert_eq!(store.read(id)?, message(body.as_bytes()));
    }
    assert!(matches!(store.read(999), Err(StoreError::NotFound(999))));
    store.settle(&q("a"), 1)?;
    publish_synced(&store, 50, &[q("a")], b"flush the settle")?;
    assert!(
        matches!(store.read(1), Err(StoreError::NotFound(1))),
        "a settled message is not readable"
    );
    Ok(())
}

#[test]
fn read_finds_a_message_after_compaction_moved_it_and_deleted_its_segment() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = open_real(dir.path(), 8192)?;
    store.recover()?;
    publish_synced(&store, 1, &[q("stuck")], b"keep me")?;
    assert_eq!(store.read(1)?, message(b"keep me"), "read before the move");
    let body = vec![7u8; 1000];
    for id in 2..400 {
        publish_synced(&store, id, &[q("busy")], &body)?;
        store.settle(&q("busy"), id)?;
        assert_eq!(store.read(1)?, message(b"keep me"), "read during churn");
    }
    let segs = segments(dir.path());
    assert!(
        !segs.contains(&1),
        "compaction should have moved message 1 out of segment 1: {segs:?}"
    );
    assert_eq!(store.read(1)?, message(b"keep me"), "read after the move");
    Ok(())
}

#[test]
fn recovery_of_a_large_store_leaves_most_bodies_on_disk_and_they_read_back() -> TestResult {
    let dir = tempfile::tempdir()?;
    let body = vec![5u8; 8 * 1024];
    let count = 3000u64;
    {
        let store = open_real(dir.path(), 4 << 20)?;
        store.recover()?;
        let mut last = SyncPoint::default();
        for id in 0..count {
            let mut b = body.clone();
            b[..8].copy_from_slice(&id.to_le_bytes());
            let mut m = message(&b);
            m.priority = (id % 3) as u8;
            m.expires_at_ms = (id % 2 == 0).then_some(60_000 + id);
            m.published_at_ms = 1_000 + id;
            m.recover_publish_time = id % 3 == 0;
            last = store.publish(id, &[q("a")], &m)?;
        }
        assert_eq!(wait(&store, last), SyncStatus::Durable);
    }
    let store = open_real(dir.path(), 4 << 20)?;
    let r = store.recover()?;
    assert_eq!(std::mem::size_of::<crate::store::RecoveredMessage>(), 16);
    let queue = &r.messages[&q("a")];
    let msgs = &queue.messages;
    assert_eq!(msgs.len() as u64, count);
    let loaded = queue.bodies.len();
    assert!(
        loaded as u64 * 8 * 1024 <= super::recovery::LOAD_BUDGET,
        "{loaded} bodies loaded"
    );
    assert!(
        loaded * 2 < msgs.len(),
        "most bodies stay on disk ({loaded} loaded)"
    );
    for (i, m) in msgs.iter().enumerate() {
        assert_eq!(m.id, i as u64, "publish order");
        assert_eq!(m.size as usize, body.len());
        assert_eq!(
            m.priority,
            (m.id % 3) as u8,
            "priority kept without the body"
        );
        let ttl = (m.id % 2 == 0).then_some(60_000 + m.id);
        assert_eq!(
            queue.expires_at_ms(m),
            ttl,
            "per-message deadline kept without the body"
        );
        assert_eq!(
            queue.published_at_ms(m),
            (m.id % 3 == 0).then_some(1_000 + m.id),
            "publish time kept, without the body, for the messages that asked for it"
        );
        let read = match queue.bodies.get(&m.id) {
            Some(message) => (**message).clone(),
            None => store.read(m.id)?,
        };
        assert_eq!(read.body[..8], m.id.to_le_bytes());
    }
    Ok(())
}
