//! `[log]`: the format of log lines (verbosity comes from `RUST_LOG`).

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

/// Log output settings. Verbosity comes from `RUST_LOG` (default `info`).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` (human-readable) or `json` (one object per line).
    pub format: LogFormat,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// `2026-01-01T00:00:00Z  INFO target: message key=value ...`
    #[default]
    Text,
    /// One JSON object per line with `timestamp`, `level`, `target`, `message` and the fields.
    Json,
}
