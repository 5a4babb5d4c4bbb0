//! `[store]`: which store keeps definitions and persistent messages, and how the journal syncs.

use std::fmt;
use std::path::{Path, PathBuf};

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

use super::{ConfigError, KIB, MIB, STORE_SUBDIR};

/// Which store keeps definitions and persistent messages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum StoreKind {
    /// The durable journal under `<data_dir>/store` (the durability contract, shared design §5).
    #[default]
    Journal,
    /// Nothing is written to disk; everything is lost at exit (tests, throwaway brokers).
    Memory,
}

/// When the journal syncs to disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum SyncPolicy {
    /// Sync as soon as the previous sync returns, covering everything written meanwhile (group commit).
    #[default]
    Always,
    /// Additionally wait up to `batch_window_us` after the first pending write so that more writes share a sync.
    BatchWindow,
}

/// Settings of the message store, read by the store implementation.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Which store to use.
    pub kind: StoreKind,
    /// Size in bytes at which the journal starts a new segment file.
    pub segment_size: u64,
    /// When the journal syncs.
    pub sync: SyncPolicy,
    /// With `sync = "batch-window"`: microseconds to gather writes before syncing.
    pub batch_window_us: u64,
    /// Free disk space in bytes below which publishers are blocked and the broker reports not ready.
    pub disk_low_water: u64,
    /// Directory of the store's files: always `<data_dir>/store` (derived by [`Config::resolve`], not an
    /// option of its own).
    #[serde(skip)]
    pub dir: PathBuf,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self::for_data_dir(Path::new("data"))
    }
}

impl StoreConfig {
    pub(super) fn for_data_dir(data_dir: &Path) -> Self {
        Self {
            kind: StoreKind::default(),
            segment_size: 64 * MIB,
            sync: SyncPolicy::default(),
            batch_window_us: 200,
            disk_low_water: crate::store::journal::DEFAULT_DISK_LOW_WATER,
            dir: data_dir.join(STORE_SUBDIR),
        }
    }
}

impl StoreConfig {
    /// Smallest segment accepted (one page; tests use small segments to exercise rolling and compaction).
    const MIN_SEGMENT_SIZE: u64 = 4 * KIB;
    /// Longest batch window accepted (the durability contract, shared design §5: "a few hundred microseconds of batching at most";
    /// anything beyond this is certainly a unit mistake).
    const MAX_BATCH_WINDOW_US: u64 = 100_000;

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.segment_size < Self::MIN_SEGMENT_SIZE {
            return Err(ConfigError::invalid(
                "store.segment_size",
                format!(
                    "{} bytes is below the minimum of {} (4 KiB)",
                    self.segment_size,
                    Self::MIN_SEGMENT_SIZE
                ),
            ));
        }
        if self.batch_window_us > Self::MAX_BATCH_WINDOW_US {
            return Err(ConfigError::invalid(
                "store.batch_window_us",
                format!(
                    "{} is above the maximum of {} (100 ms)",
                    self.batch_window_us,
                    Self::MAX_BATCH_WINDOW_US
                ),
            ));
        }
        Ok(())
    }
}

impl fmt::Display for StoreKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StoreKind::Journal => "journal",
            StoreKind::Memory => "memory",
        })
    }
}
