//! Regression tests for crash consistency, bounded recovery and disk headroom:
//! one test per sequence that used to lose confirmed data, resurrect a settled message, refuse to start, fill
//! the disk, or hold confirms back; plus version 1 segments (the previous release's format) and segment
//! summaries. The model-based property test that drives kills and power cuts at random is in `tests`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::fs::{Fault, FaultyFs, RealFs, StoreFs};
use super::record::{self, Checkpoint};
use super::recovery::{SALVAGE_FILE, SYNC_FAILED_FILE};
use super::segment;
use super::simfs::SimDisk;
use super::tests::{
    TestResult, crash_copy, eager, flip_bit, message, open_real, options, publish_synced, q,
    queue_def, segment_path, segments, summary, three_segments, wait, write_then_measure_last,
};
use super::writer::Tuning;
use super::{JournalOptions, JournalStore, open_tuned};
use crate::store::{MsgId, Store, StoreError, SyncStatus};

fn ids(store: &JournalStore) -> Result<Vec<MsgId>, StoreError> {
    Ok(store
        .recover()?
        .messages
        .get(&q("a"))
        .map(|v| v.messages.iter().map(|m| m.id).collect())
        .unwrap_or_default())
}

fn file_len(path: &Path) -> std::io::Result<u64> {
    Ok(std::fs::metadata(path)?.len())
}

/// Polls `done` for up to 20 s (a deadline for a slow machine, not a timing target).
fn eventually(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    done()
}

// ---- damage in the last segment ----

/// Publishes messages 1..=n to `a`, each synced on its own (one write batch each), and leaves the files as a
/// crash right after the last sync would, in `dir`. Returns where each record starts in segment 1, and its end.
fn fifty_batches(dir: &Path, n: u64) -> Result<Vec<u64>, Box<dyn std::error::Error>> {
    let live = tempfile::tempdir()?;
    let store = open_real(live.path(), 1 << 20)?;
    store.recover()?;
    let mut offsets = Vec::new();
    for id in 1..=n {
        offsets.push(file_len(&segment_path(live.path(), 1))?);
        publish_synced(&store, id, &[q("a")], format!("message {id}").as_bytes())?;
    }
    offsets.push(file_len(&segment_path(live.path(), 1))?);
    crash_copy(live.path(), dir)?;
    Ok(offsets)
}

#[test]
fn a_flipped_bit_in_the_second_of_fifty_confirmed_records_refuses_to_start_and_salvage_cuts_there()
-> TestResult {
    let dir = tempfile::tempdir()?;
    let offsets = fifty_batches(dir.path(), 50)?;
    let seg = segment_path(dir.path(), 1);
    flip_bit(&seg, offsets[2] - 1)?;
    match open_real(dir.path(), 1 << 20) {
        Err(StoreError::Damaged {
            segment,
            offset,
            detail,
        }) => {
            assert_eq!(segment, segment::file_name(1));
            assert_eq!(offset, offsets[1], "the damaged record is the second one");
            assert!(detail.contains("later batch"), "{detail}");
        }
        other => return Err(format!("expected Damaged, got {other:?}").into()),
    }
    assert_eq!(
        file_len(&seg)?,
        offsets[50],
        "a refused start changes nothing"
    );

    std::fs::write(dir.path().join(SALVAGE_FILE), b"")?;
    let store = open_real(dir.path(), 1 << 20)?;
    assert_eq!(
        ids(&store)?,
        vec![1],
        "salvage keeps what precedes the damage"
    );
    let kept = dir
        .path()
        .join(format!("{}.damaged-{}", segment::file_name(1), offsets[1]));
    assert_eq!(
        file_len(&kept)?,
        offsets[50] - offsets[1],
        "the cut bytes are kept"
    );
    assert!(
        !dir.path().join(SALVAGE_FILE).exists(),
        "salvage is one-shot"
    );
    store.close();
    drop(store);
    let store = open_real(dir.path(), 1 << 20)?;
    assert_eq!(ids(&store)?, vec![1]);
    Ok(())
}

#[test]
fn damage_to_a_body_in_a_sealed_segment_is_reported_when_read_and_loses_nothing_else() -> TestResult
{
    let dir = tempfile::tempdir()?;
    let mut offsets = Vec::new();
    {
        let store = open_real(dir.path(), 1 << 20)?;
        store.recover()?;
        for id in 1..=50 {
            offsets.push(file_len(&segment_path(dir.path(), 1))?);
            publish_synced(&store, id, &[q("a")], format!("message {id}").as_bytes())?;
        }
        offsets.push(file_len(&segment_path(dir.path(), 1))?);
    }
    // The clean close sealed segment 1 with its summary: recovery reads that, not the bodies.
    flip_bit(&segment_path(dir.path(), 1), offsets[2] - 1)?;
    let store = open_real(dir.path(), 1 << 20)?;
    assert_eq!(ids(&store)?, (1..=50).collect::<Vec<_>>());
    assert!(matches!(store.read(2), Err(StoreError::Corrupt(_))));
    assert_eq!(store.read(1)?, message(b"message 1"));
    assert_eq!(store.read(3)?, message(b"message 3"));
    Ok(())
}

#[test]
fn a_valid_frame_of_an_earlier_file_with_the_same_number_is_not_replayed() -> TestResult {
    // Incarnation A of segment 1 held messages 1 to 7 (settled since, say).
    let a = tempfile::tempdir()?;
    write_then_measure_last(a.path(), 7)?;
    let old = std::fs::read(segment_path(a.path(), 1))?;
    // Incarnation B of segment 1 holds message 1 only; after a crash the file system shows A's old blocks
    // where B's file never had data, at the same offsets: valid frames of A, batch offsets and all.
    let dir = tempfile::tempdir()?;
    let (_, _, b_end) = write_then_measure_last(dir.path(), 1)?;
    let seg = segment_path(dir.path(), 1);
    let mut bytes = std::fs::read(&seg)?;
    assert!(old.len() > bytes.len());
    bytes.extend_from_slice(&old[bytes.len()..]);
    std::fs::write(&seg, bytes)?;
    let store = open_real(dir.path(), 1 << 20)?;
    assert_eq!(
        ids(&store)?,
        vec![1],
        "records of the earlier file came back"
    );
    assert_eq!(
        file_len(&seg)?,
        b_end,
        "the stale frames are cut as a torn tail"
    );
    Ok(())
}

// ---- refusing to start after a crash ----

#[test]
fn a_kill_between_a_write_and_its_sync_then_a_power_cut_after_the_restart_starts_and_loses_nothing()
-> TestResult {
    let dir = PathBuf::from("/sim/store");
    for seed in 0..16 {
        let disk = SimDisk::new(&dir);
        let open = || open_tuned(options(&dir, 1 << 20), disk.boot(), eager());
        let store = open()?;
        store.recover()?;
        publish_synced(&store, 1, &[q("a")], b"confirmed before")?;
        disk.kill_at_next_sync();
        let p = store.publish(2, &[q("a")], &message(b"written, never synced"))?;
        assert_eq!(wait(&store, p), SyncStatus::Failed);
        store.close();
        let store = open()?;
        store.recover()?;
        publish_synced(&store, 3, &[q("a")], b"confirmed after the restart")?;
        disk.power_cut(seed);
        store.close();
        let store = open().map_err(|e| format!("seed {seed}: start-up failed: {e}"))?;
        let got = ids(&store)?;
        assert!(got.contains(&1) && got.contains(&3), "seed {seed}: {got:?}");
    }
    Ok(())
}

#[test]
fn recovery_opens_one_segment_at_a_time() -> TestResult {
    let dir = tempfile::tempdir()?;
    {
        let store = open_real(dir.path(), 4096)?;
        store.recover()?;
        for id in 1..=200 {
            publish_synced(&store, id, &[q("a")], &[7u8; 3000])?;
        }
    }
    assert!(segments(dir.path()).len() >= 200);
    let fs = FaultyFs::new(Arc::new(RealFs));
    fs.limit_open_files(16);
    let store = open_tuned(options(dir.path(), 4096), Arc::new(fs.clone()), eager())?;
    assert_eq!(ids(&store)?, (1..=200).collect::<Vec<_>>());
    assert!(fs.peak_open_files() <= 16, "{}", fs.peak_open_files());
    Ok(())
}

#[test]
fn a_last_segment_with_an_all_zero_header_is_removed_unless_data_follows() -> TestResult {
    let dir = tempfile::tempdir()?;
    three_segments(dir.path())?;
    std::fs::write(segment_path(dir.path(), 4), vec![0u8; 4096])?;
    let store = open_real(dir.path(), 1 << 20)?;
    assert_eq!(ids(&store)?, vec![1, 2, 3]);
    drop(store);

    let dir = tempfile::tempdir()?;
    three_segments(dir.path())?;
    let mut bytes = vec![0u8; segment::HEADER_LEN as usize];
    bytes.extend_from_slice(b"not zeros: a damaged header, not an unfinished one");
    std::fs::write(segment_path(dir.path(), 4), bytes)?;
    let err = open_real(dir.path(), 1 << 20).expect_err("zeroed header before data accepted");
    assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
    assert!(err.to_string().contains("all-zero"), "{err}");
    std::fs::write(dir.path().join(SALVAGE_FILE), b"")?;
    let store = open_real(dir.path(), 1 << 20)?;
    assert_eq!(ids(&store)?, vec![1, 2, 3]);
    Ok(())
}

#[test]
fn creating_the_data_directory_syncs_each_new_directory_in_its_parent() -> TestResult {
    let base = tempfile::tempdir()?;
    let dir = base.path().join("data").join("store");
    let fs = FaultyFs::new(Arc::new(RealFs));
    let store = open_tuned(options(&dir, 1 << 20), Arc::new(fs.clone()), eager())?;
    store.recover()?;
    let synced = fs.synced_dirs();
    let first = |d: &Path| synced.iter().position(|s| s == d);
    let (parent, data) = (first(base.path()), first(&base.path().join("data")));
    assert!(
        parent.is_some() && data.is_some() && parent < data,
        "{synced:?}"
    );
    Ok(())
}

#[test]
fn a_failed_sync_of_the_last_segment_at_recovery_rewrites_it() -> TestResult {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir()?;
    let (head, _, end) = write_then_measure_last(dir.path(), 5)?;
    let seg = segment_path(dir.path(), head);
    let inode = std::fs::metadata(&seg)?.ino();
    let fs = FaultyFs::new(Arc::new(RealFs));
    fs.inject(Fault::FailSync(1));
    let store = open_tuned(options(dir.path(), 1 << 20), Arc::new(fs.clone()), eager())?;
    assert_eq!(ids(&store)?, vec![1, 2, 3, 4, 5]);
    assert_ne!(std::fs::metadata(&seg)?.ino(), inode, "not rewritten");
    assert_eq!(file_len(&seg)?, end);
    let names = RealFs.list(dir.path())?;
    assert!(
        !names.iter().any(|n| n.ends_with(segment::TEMP_SUFFIX)),
        "{names:?}"
    );
    Ok(())
}

#[test]
fn a_writer_that_failed_a_sync_leaves_a_marker_and_the_next_start_rewrites_its_head() -> TestResult
{
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir()?;
    let fs = FaultyFs::new(Arc::new(RealFs));
    let store = open_tuned(options(dir.path(), 1 << 20), Arc::new(fs.clone()), eager())?;
    store.recover()?;
    publish_synced(&store, 1, &[q("a")], b"one")?;
    fs.inject(Fault::FailSync(fs.syncs() + 1));
    let p = store.publish(2, &[q("a")], &message(b"two"))?;
    assert_eq!(wait(&store, p), SyncStatus::Failed);
    store.close();
    drop(store);
    assert!(dir.path().join(SYNC_FAILED_FILE).exists());
    let inode = std::fs::metadata(segment_path(dir.path(), 1))?.ino();
    let store = open_real(dir.path(), 1 << 20)?;
    assert!(ids(&store)?.contains(&1));
    assert_ne!(std::fs::metadata(segment_path(dir.path(), 1))?.ino(), inode);
    assert!(!dir.path().join(SYNC_FAILED_FILE).exists());
    Ok(())
}

// ---- disk headroom ----

fn disk_options(dir: &Path, low_water: u64) -> JournalOptions {
    JournalOptions {
        disk_low_water: low_water,
        ..options(dir, 1 << 20)
    }
}

/// Maintenance on every batch, but the disk looked at only once an hour unless bytes written call for it.
fn no_disk_timer() -> Tuning {
    Tuning {
        disk_check_every: Duration::from_secs(3600),
        ..eager()
    }
}

const MIB: u64 = 1 << 20;

#[test]
fn a_fast_publisher_is_blocked_by_the_bytes_it_writes_before_the_disk_fills() -> TestResult {
    let dir = PathBuf::from("/sim/store");
    let disk = SimDisk::new(&dir);
    disk.set_capacity(Some(24 * MIB));
    let store = open_tuned(disk_options(&dir, 8 * MIB), disk.boot(), no_disk_timer())?;
    store.recover()?;
    let blocked = store.blocked();
    assert!(!*blocked.borrow());
    let body = vec![1u8; 64 * 1024];
    let mut last = None;
    let mut published = 0;
    // Like a connection that stops reading once blocked: 64 MiB would not fit.
    for id in 0..1024 {
        if *blocked.borrow() {
            break;
        }
        last = Some(store.publish(id, &[q("a")], &message(&body))?);
        published += 1;
    }
    assert!(
        *blocked.borrow(),
        "never blocked after {published} messages"
    );
    let last = last.ok_or("nothing published")?;
    assert_eq!(
        wait(&store, last),
        SyncStatus::Durable,
        "an append hit the full disk"
    );
    assert!(store.sync_state().borrow().failed.is_none());
    let health = store
        .healthy()
        .expect_err("ready while publishers are blocked");
    assert!(health.contains("disk"), "{health}");
    assert!(disk.used() + 4 * MIB <= 24 * MIB, "used {}", disk.used());

    for id in 0..published {
        store.settle(&q("a"), id)?;
    }
    publish_synced(&store, 5000, &[q("b")], b"flush the settles")?;
    assert!(
        eventually(|| !*blocked.borrow()),
        "still blocked after the backlog was consumed"
    );
    assert!(store.healthy().is_ok());
    Ok(())
}

#[test]
fn a_journal_on_a_full_disk_releases_its_reserve_to_start_and_consumers_drain_it() -> TestResult {
    let dir = PathBuf::from("/sim/store");
    let disk = SimDisk::new(&dir);
    disk.set_capacity(Some(32 * MIB));
    let open = || open_tuned(disk_options(&dir, 4 * MIB), disk.boot(), eager());
    {
        let store = open()?;
        store.recover()?;
        assert!(
            disk.names().iter().any(|n| n == "RESERVE"),
            "{:?}",
            disk.names()
        );
        for id in 0..200 {
            publish_synced(&store, id, &[q("a")], &[2u8; 64 * 1024])?;
        }
    }
    // Something else takes every free byte.
    disk.set_capacity(Some(disk.used()));
    let store = open()?;
    assert_eq!(ids(&store)?.len(), 200);
    assert!(!disk.names().iter().any(|n| n == "RESERVE"));
    assert!(*store.blocked().borrow());
    assert!(store.healthy().is_err());
    for id in 0..200 {
        store.settle(&q("a"), id)?;
    }
    let blocked = store.blocked();
    assert!(
        eventually(|| !*blocked.borrow()),
        "consuming the backlog did not free the disk"
    );
    assert!(store.sync_state().borrow().failed.is_none());
    Ok(())
}

#[test]
fn a_journal_with_no_room_for_a_segment_starts_read_only_and_resumes_when_space_returns()
-> TestResult {
    let dir = PathBuf::from("/sim/store");
    let disk = SimDisk::new(&dir);
    let open = || open_tuned(options(&dir, 1 << 20), disk.boot(), eager());
    {
        let store = open()?;
        store.recover()?;
        for id in 1..=10 {
            publish_synced(&store, id, &[q("a")], b"queued")?;
        }
    }
    disk.set_capacity(Some(disk.used()));
    let store = open()?;
    assert_eq!(ids(&store)?, (1..=10).collect::<Vec<_>>());
    let health = store
        .healthy()
        .expect_err("a read-only journal reports ready");
    assert!(health.contains("read-only"), "{health}");
    assert!(*store.blocked().borrow());
    let p = store.publish(11, &[q("a")], &message(b"waits for room"))?;
    store.settle(&q("a"), 1)?;
    assert_eq!(store.sync_state().borrow().status(p), SyncStatus::Pending);
    disk.set_capacity(None);
    assert_eq!(wait(&store, p), SyncStatus::Durable);
    assert_eq!(store.healthy(), Ok(()));
    assert!(!*store.blocked().borrow());
    store.close();
    drop(store);
    let store = open()?;
    assert_eq!(ids(&store)?, (2..=11).collect::<Vec<_>>());
    Ok(())
}

// ---- maintenance ----

#[test]
fn a_long_chain_of_dead_segments_is_deleted_with_one_sync_after_a_restart() -> TestResult {
    let dir = tempfile::tempdir()?;
    let no_compaction = Tuning {
        compact_after: Duration::from_secs(3600),
        ..eager()
    };
    let no_maintenance = Tuning {
        maintenance_every: Duration::from_secs(3600),
        ..no_compaction
    };
    {
        let store = open_tuned(options(dir.path(), 4096), Arc::new(RealFs), no_maintenance)?;
        store.recover()?;
        // Message 0 pins segment 1; each later segment holds the settle of a message in the one before it.
        publish_synced(&store, 0, &[q("stuck")], b"pin")?;
        for id in 1..=250 {
            publish_synced(&store, id, &[q("a")], &[3u8; 1500])?;
            if id > 1 {
                store.settle(&q("a"), id - 1)?;
            }
        }
        store.settle(&q("a"), 250)?;
        store.settle(&q("stuck"), 0)?;
    }
    let chain = segments(dir.path()).len();
    assert!(chain > 100, "{chain} segments");
    let fs = FaultyFs::new(Arc::new(RealFs));
    // A head large enough for all the deletion records, so no roll adds syncs of its own.
    let store = open_tuned(
        options(dir.path(), 1 << 20),
        Arc::new(fs.clone()),
        no_compaction,
    )?;
    store.recover()?;
    assert!(
        eventually(|| segments(dir.path()).len() == 1),
        "{:?}",
        segments(dir.path())
    );
    publish_synced(&store, 1000, &[q("a")], b"first confirm")?;
    // Recovery's sync of the last segment, the head's creation, one deletion pass, the publish.
    assert!(
        fs.syncs() <= 4,
        "{} fdatasyncs for {chain} segments",
        fs.syncs()
    );
    let dir_syncs = fs.synced_dirs().len();
    assert!(
        dir_syncs <= 5,
        "{dir_syncs} directory syncs for {chain} segments"
    );
    Ok(())
}

// ---- version 1 segments ----

/// A version 1 segment (what the previous release wrote): its header, then `records` framed the old way.
fn v1_segment(number: u64, records: &[bytes::Bytes]) -> Vec<u8> {
    let mut bytes = segment::header_v1(number).to_vec();
    for r in records {
        bytes.extend_from_slice(&record::frame_v1(r));
    }
    bytes
}

#[test]
fn a_data_dir_written_in_format_version_1_opens_recovers_and_reads_back() -> TestResult {
    let dir = tempfile::tempdir()?;
    let checkpoint = Checkpoint {
        next_id: 0,
        segments: Vec::new(),
        definitions: Vec::new(),
    };
    let records = [
        record::encode_checkpoint(&checkpoint)?,
        record::encode_define(&queue_def("a"))?,
        record::encode_publish(1, &[q("a")], &message(b"old one"))?,
        record::encode_publish(2, &[q("a")], &message(b"old two"))?,
        record::encode_settle(&q("a"), 1)?,
        record::encode_publish(3, &[q("a")], &message(b"old three"))?,
    ];
    std::fs::write(segment_path(dir.path(), 1), v1_segment(1, &records[..5]))?;
    let second = Checkpoint {
        next_id: 3,
        segments: vec![1],
        definitions: vec![queue_def("a")],
    };
    let mut last = v1_segment(2, &[record::encode_checkpoint(&second)?]);
    last.extend_from_slice(&record::frame_v1(&records[5]));
    let torn = last.len();
    last.extend_from_slice(&record::frame_v1(&records[5])[..9]);
    std::fs::write(segment_path(dir.path(), 2), &last)?;

    let store = open_real(dir.path(), 1 << 20)?;
    let r = store.recover()?;
    assert_eq!(r.definitions, vec![queue_def("a")]);
    let got = summary(&r);
    assert_eq!(
        got.get(&q("a"))
            .map(|v| v.iter().map(|(id, _)| *id).collect::<Vec<_>>()),
        Some(vec![2, 3])
    );
    assert_eq!(
        store.read(2)?,
        message(b"old two"),
        "a version 1 record reads back"
    );
    assert_eq!(
        file_len(&segment_path(dir.path(), 2))?,
        torn as u64,
        "a torn version 1 tail is cut"
    );
    publish_synced(&store, 4, &[q("a")], b"new")?;
    store.close();
    drop(store);
    let store = open_real(dir.path(), 1 << 20)?;
    assert_eq!(ids(&store)?, vec![2, 3, 4]);
    Ok(())
}

// ---- summaries ----

#[test]
fn a_restart_reads_segment_summaries_instead_of_bodies() -> TestResult {
    let dir = tempfile::tempdir()?;
    let body = vec![9u8; 16 * 1024];
    {
        let store = open_real(dir.path(), 1 << 20)?;
        store.recover()?;
        let mut last = None;
        for id in 0..2000 {
            last = Some(store.publish(id, &[q("a")], &message(&body))?);
        }
        assert_eq!(wait(&store, last.ok_or("none")?), SyncStatus::Durable);
    }
    let fs = FaultyFs::new(Arc::new(RealFs));
    let store = open_tuned(options(dir.path(), 1 << 20), Arc::new(fs.clone()), eager())?;
    assert_eq!(ids(&store)?.len(), 2000);
    let data = 2000 * body.len() as u64;
    let budget = super::recovery::LOAD_BUDGET;
    assert!(
        fs.read_bytes() < budget + data / 10,
        "read {} bytes to recover {data} bytes of bodies",
        fs.read_bytes()
    );
    Ok(())
}

#[test]
fn summaries_and_a_full_scan_recover_the_same_state() -> TestResult {
    let dir = tempfile::tempdir()?;
    {
        let store = open_real(dir.path(), 8192)?;
        store.recover()?;
        store.define(&queue_def("a"))?;
        for id in 0..300u64 {
            let mut m = message(&vec![(id % 251) as u8; (id as usize * 37) % 2000]);
            m.priority = (id % 5) as u8;
            m.expires_at_ms = (id % 3 == 0).then_some(1000 + id);
            m.published_at_ms = 5000 + id;
            m.recover_publish_time = id % 5 < 2;
            let queues = if id % 4 == 0 {
                vec![q("a"), q("b")]
            } else {
                vec![q("a")]
            };
            let p = store.publish(id, &queues, &m)?;
            if id % 7 == 0 {
                store.settle(&q("a"), id)?;
            }
            if id == 150 {
                store.define(&queue_def("c"))?;
            }
            assert_eq!(wait(&store, p), SyncStatus::Durable);
        }
    }
    let described = |store: &JournalStore| -> Result<String, StoreError> {
        let r = store.recover()?;
        let mut queues: Vec<_> = r.messages.iter().collect();
        queues.sort_by(|a, b| a.0.cmp(b.0));
        let listed: Vec<String> = queues
            .iter()
            .map(|(k, v)| {
                let ms: Vec<String> = v
                    .messages
                    .iter()
                    .map(|m| {
                        format!(
                            "{}:{}:{}:{:?}:{:?}",
                            m.id,
                            m.size,
                            m.priority,
                            v.expires_at_ms(m),
                            v.published_at_ms(m)
                        )
                    })
                    .collect();
                format!("{}={}", k.name, ms.join(","))
            })
            .collect();
        Ok(format!(
            "{:?} {} {}",
            r.definitions,
            r.next_id,
            listed.join(" ")
        ))
    };
    let copy = tempfile::tempdir()?;
    super::tests::copy_dir(dir.path(), copy.path())?;
    let from_summaries = described(&*open_real(dir.path(), 8192)?)?;
    // Cut every summary off (the trailer's checksum fails): the same segments, scanned.
    for n in segments(copy.path()) {
        let path = segment_path(copy.path(), n);
        let len = file_len(&path)?;
        flip_bit(&path, len - 1)?;
    }
    std::fs::write(copy.path().join(SALVAGE_FILE), b"")?;
    let from_scans = described(&*open_real(copy.path(), 8192)?)?;
    assert_eq!(from_summaries, from_scans);
    assert!(from_summaries.contains(":Some(5001)") && from_summaries.contains(":Some(5150)"));
    Ok(())
}
