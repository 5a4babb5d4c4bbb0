//! Free disk space: the headroom the journal keeps so that it never runs into ENOSPC in normal operation, the
//! `blocked` flag that holds publishers back before it does, and the emergency reserve that lets it start on a
//! disk something else filled.
//!
//! Headroom. [`DiskBudget::headroom`] is the number of bytes that may still be appended before free space would
//! fall below the low-water mark: the writer sets it from `statvfs` (minus what is queued and not yet written),
//! every append takes its bytes from it at once (appenders when they queue a record, the writer for what it
//! writes on its own: checkpoints, deletion records, compaction copies), and the append that takes it to zero
//! or below blocks publishers there and then and asks the writer to look at the disk again. So a fast publisher
//! is blocked after the bytes that cross the mark, not up to a second later (at 64 KiB messages a full second
//! of publishing is gigabytes). The writer also looks at the disk again whenever it has written a quarter of the
//! headroom it last saw (the estimate drifts: file system overhead, other processes), and once a second for
//! space that other processes take or give back. Publishers are unblocked when the disk says free space is back
//! above the mark. The journal's own small writes (settles, deletion records) go on below the mark, which is
//! what lets consumers drain a full broker; compaction, which copies whole segments' live messages, only runs
//! while its copies fit in half the mark.
//!
//! Reserve. With a low-water mark set, the journal keeps a file of [`reserve_len`] bytes, `RESERVE`, whose blocks
//! are allocated on the disk (CockroachDB's "emergency ballast" does the same). If the journal is opened on a
//! disk with less free space than the mark, it removes the file first, so that it can create its new head
//! segment and write the settles and deletion records that free space; the file is created again once free
//! space is comfortably above the mark. If even that is not enough, the journal starts read-only (see the
//! writer).

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::{info, warn};

use super::fs::StoreFs;

/// The name of the emergency reserve file.
pub(crate) const RESERVE_FILE: &str = "RESERVE";

/// The size of the emergency reserve for a low-water mark: a quarter of it, between 1 MiB and 64 MiB (0 when the
/// disk check is off).
pub(crate) fn reserve_len(low_water: u64) -> u64 {
    if low_water == 0 {
        return 0;
    }
    (low_water / 4).clamp(1 << 20, 64 << 20)
}

/// The headroom, shared by appenders and the writer; see the module docs.
#[derive(Debug)]
pub(crate) struct DiskBudget {
    headroom: AtomicI64,
    /// Set by the append that used the headroom up: the writer should look at the disk now.
    recheck: AtomicBool,
    enabled: bool,
}

impl DiskBudget {
    /// A budget for a journal with a low-water mark (`enabled`) or without one.
    pub(crate) fn new(enabled: bool) -> Self {
        Self {
            headroom: AtomicI64::new(i64::MAX / 2),
            recheck: AtomicBool::new(false),
            enabled,
        }
    }

    /// Takes `bytes` from the headroom; returns whether this append used it up (publishers must be blocked).
    pub(crate) fn take(&self, bytes: usize) -> bool {
        if !self.enabled {
            return false;
        }
        let bytes = i64::try_from(bytes).unwrap_or(i64::MAX / 4);
        let before = self.headroom.fetch_sub(bytes, Ordering::Relaxed);
        let used_up = before > 0 && before - bytes <= 0;
        if used_up {
            self.recheck.store(true, Ordering::Relaxed);
        }
        used_up
    }

    /// Bytes that may still be appended before free space falls below the low-water mark.
    pub(crate) fn headroom(&self) -> i64 {
        self.headroom.load(Ordering::Relaxed)
    }

    fn set(&self, headroom: i64) {
        self.headroom.store(headroom, Ordering::Relaxed);
    }

    fn take_recheck(&self) -> bool {
        self.recheck.swap(false, Ordering::Relaxed)
    }
}

/// Flips the `blocked` watch; logs the change.
pub(crate) fn set_blocked(tx: &watch::Sender<bool>, blocked: bool, why: &str) {
    if tx.send_if_modified(|b| std::mem::replace(b, blocked) != blocked) {
        if blocked {
            warn!(reason = why, "blocking publishers");
        } else {
            info!(reason = why, "unblocking publishers");
        }
    }
}

/// The writer's side of the disk watch: when to look at the disk, and the reserve file.
#[derive(Debug)]
pub(crate) struct DiskWatch {
    low_water: u64,
    every: Duration,
    last_check: Instant,
    /// Bytes written since the last look, and how many may be written before the next.
    written: u64,
    step: u64,
    reserve_present: bool,
}

/// What a look at the disk found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DiskState {
    pub(crate) free: u64,
    /// Whether publishers must be blocked.
    pub(crate) low: bool,
}

impl DiskWatch {
    /// A watch for `low_water` (0: off), looking at the disk at least every `every`.
    pub(crate) fn new(fs: &dyn StoreFs, dir: &Path, low_water: u64, every: Duration) -> Self {
        let reserve_present = fs
            .list(dir)
            .map(|names| names.iter().any(|n| n == RESERVE_FILE))
            .unwrap_or(false);
        Self {
            low_water,
            every,
            last_check: Instant::now(),
            written: 0,
            step: 0,
            reserve_present,
        }
    }

    /// Whether the disk check is on.
    pub(crate) fn enabled(&self) -> bool {
        self.low_water > 0
    }

    /// Counts bytes the writer wrote.
    pub(crate) fn wrote(&mut self, bytes: u64) {
        self.written += bytes;
    }

    /// Whether it is time to look at the disk: enough written, the headroom used up, or the timer.
    pub(crate) fn due(&self, budget: &DiskBudget) -> bool {
        self.enabled()
            && (self.written >= self.step
                || budget.take_recheck()
                || self.last_check.elapsed() >= self.every)
    }

    /// Looks at the disk: resets the headroom (less `queued` bytes not written yet), flips `blocked`, and
    /// creates the reserve file when there is room for it. `None` if the disk could not be asked.
    pub(crate) fn check(
        &mut self,
        fs: &dyn StoreFs,
        dir: &Path,
        budget: &DiskBudget,
        queued: u64,
        blocked: &watch::Sender<bool>,
    ) -> Option<DiskState> {
        if !self.enabled() {
            return None;
        }
        self.last_check = Instant::now();
        self.written = 0;
        let free = match fs.available_space(dir) {
            Ok(free) => free,
            Err(e) => {
                warn!(error = %e, "could not read free disk space");
                return None;
            }
        };
        let above = i64::try_from(free).unwrap_or(i64::MAX)
            - i64::try_from(self.low_water).unwrap_or(i64::MAX);
        let headroom = above - i64::try_from(queued).unwrap_or(i64::MAX);
        budget.set(headroom);
        self.step = u64::try_from(headroom / 4)
            .unwrap_or(0)
            .clamp(64 << 10, 256 << 20);
        let low = headroom <= 0;
        set_blocked(
            blocked,
            low,
            if low {
                "disk free space below the low-water mark"
            } else {
                "disk free space back above the low-water mark"
            },
        );
        if !low && self.restore_reserve(fs, dir, free) {
            budget.take(usize::try_from(reserve_len(self.low_water)).unwrap_or(usize::MAX));
        }
        Some(DiskState { free, low })
    }

    /// Gives the reserve's space back to the journal (on a full disk, before the journal needs to write).
    pub(crate) fn release_reserve(&mut self, fs: &dyn StoreFs, dir: &Path) -> bool {
        if !self.reserve_present {
            return false;
        }
        let removed = fs
            .remove(&dir.join(RESERVE_FILE))
            .and_then(|()| fs.sync_dir(dir));
        match removed {
            Ok(()) => {
                self.reserve_present = false;
                warn!(
                    bytes = reserve_len(self.low_water),
                    "disk full: released the journal's emergency reserve"
                );
                true
            }
            Err(e) => {
                warn!(error = %e, "could not release the journal's emergency reserve");
                false
            }
        }
    }

    /// Creates the reserve file if it is missing and there is room for it and the low-water mark besides;
    /// returns whether it did.
    fn restore_reserve(&mut self, fs: &dyn StoreFs, dir: &Path, free: u64) -> bool {
        let len = reserve_len(self.low_water);
        if self.reserve_present || free < self.low_water.saturating_add(len.saturating_mul(2)) {
            return false;
        }
        let path = dir.join(RESERVE_FILE);
        match fs
            .create_reserve(&path, len)
            .and_then(|()| fs.sync_dir(dir))
        {
            Ok(()) => {
                self.reserve_present = true;
                info!(bytes = len, "created the journal's emergency disk reserve");
                true
            }
            Err(e) => {
                warn!(error = %e, "could not create the journal's emergency disk reserve");
                let _ = fs.remove(&path);
                false
            }
        }
    }
}
