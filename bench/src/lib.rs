//! `ferrymq-bench`, the load generator, as a library its binary (`main.rs`) drives: the shared parts are here
//! (run options every protocol takes, the latency histogram, the broker process sampler reading RSS and CPU
//! from /proc, the one-line JSON report), the protocol drivers in `amqp` and `sqs`, the TCP baseline in
//! `relay` and the machine's latency floor in `floor`.
//! It is its own workspace crate so that its client libraries (lapin, hdrhistogram) stay out of the broker.
//!
//! A protocol driver (`amqp`, `mqtt`) sets up its connections, starts a [`Sampler`] when the first message
//! is about to go out, and fills a [`Report`] at the end. New protocols (`stomp`, `sqs`) add a module next to
//! `amqp.rs` and `mqtt.rs` with their own `Args` and reuse everything here.

pub mod amqp;
pub mod floor;
pub mod mqtt;
pub mod relay;
pub mod sqs;

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::task::JoinHandle;

/// Options shared by every load-generating subcommand.
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Publish for this many seconds (default 10). With --count it is an upper bound instead.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Publish this many messages in total (split over the publishers), then stop.
    #[arg(long)]
    pub count: Option<u64>,
    /// Fixed total publish rate in messages per second, split over the publishers (0 = as fast as possible).
    /// Use it for latency runs: an unthrottled run measures queueing, not latency.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Broker process id: sample its RSS (VmRSS) and CPU (utime+stime) over the run.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Free-form name copied to the report (default: host:port of the target).
    #[arg(long)]
    pub label: Option<String>,
    /// After publishing stops, wait at most this many seconds for consumers to catch up and for
    /// outstanding confirms.
    #[arg(long, default_value_t = 30.0)]
    pub drain_timeout: f64,
}

impl RunArgs {
    /// Upper bound on the publishing phase.
    pub fn publish_limit(&self) -> Duration {
        let secs = match (self.duration, self.count) {
            (Some(d), _) => d,
            (None, Some(_)) => 3600.0,
            (None, None) => 10.0,
        };
        Duration::from_secs_f64(secs.max(0.0))
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if let Some(d) = self.duration
            && !(d > 0.0 && d.is_finite())
        {
            bail!("--duration must be a positive number of seconds");
        }
        if !(self.rate >= 0.0 && self.rate.is_finite()) {
            bail!("--rate must be >= 0");
        }
        if !(self.drain_timeout >= 0.0 && self.drain_timeout.is_finite()) {
            bail!("--drain-timeout must be >= 0");
        }
        Ok(())
    }
}

/// The JSON line a run prints. Field order is the output order.
#[derive(Serialize, Debug, Default)]
pub struct Report {
    pub label: String,
    pub protocol: &'static str,
    /// The protocol's scenario, where it has several (MQTT: `flow`, `idle`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scenario: Option<String>,
    /// MQTT QoS of publishes and subscriptions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qos: Option<u8>,
    pub publishers: usize,
    pub consumers: usize,
    pub queues: usize,
    pub size: usize,
    pub confirm: bool,
    pub persistent: bool,
    pub manual_ack: bool,
    pub rate: f64,
    /// Length of the publishing phase (first publish to last publish sent, or confirmed with --confirm).
    pub duration_s: f64,
    /// Messages sent (with --confirm: confirmed with basic.ack).
    pub sent: u64,
    pub received: u64,
    pub send_rate: f64,
    /// `received` over the time from the first publish to the last delivery.
    pub recv_rate: f64,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub p999_us: Option<f64>,
    pub max_us: Option<f64>,
    /// Mean broker RSS over the run (samples every 100 ms).
    pub rss_mb: Option<f64>,
    pub rss_max_mb: Option<f64>,
    /// Broker CPU over the run, 100 = one core.
    pub cpu_pct: Option<f64>,
    /// This load generator's own CPU over the run, 100 = one core: when it nears the core count the
    /// client, not the broker, is the limit.
    pub client_cpu_pct: Option<f64>,
    /// Publishes the broker refused (basic.nack).
    pub nacked: u64,
    /// Errors seen by publishers and consumers (channel/connection closed, timeouts).
    pub errors: u64,
    /// Connection runs: connections held open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connections: Option<u64>,
    /// Connection runs: connections completed per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_rate: Option<f64>,
    /// Connection runs: broker RSS before the connections were opened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_before_mb: Option<f64>,
    /// Connection runs: broker RSS growth per connection held, in KiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_per_conn_kib: Option<f64>,
}

impl Report {
    pub fn print(&self) -> anyhow::Result<()> {
        println!("{}", serde_json::to_string(self)?);
        Ok(())
    }

    pub fn set_latency(&mut self, h: &Latency) {
        if h.0.is_empty() {
            return;
        }
        let us = |ns: u64| Some(round(ns as f64 / 1000.0, 1));
        self.p50_us = us(h.0.value_at_quantile(0.50));
        self.p99_us = us(h.0.value_at_quantile(0.99));
        self.p999_us = us(h.0.value_at_quantile(0.999));
        self.max_us = us(h.0.max());
    }

    pub fn set_usage(&mut self, u: &Usage) {
        self.rss_mb = u.rss_mean_mb.map(|v| round(v, 1));
        self.rss_max_mb = u.rss_max_mb.map(|v| round(v, 1));
        self.cpu_pct = u.cpu_pct.map(|v| round(v, 1));
        self.client_cpu_pct = u.client_cpu_pct.map(|v| round(v, 1));
    }
}

pub fn round(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

pub fn rate(n: u64, d: Duration) -> f64 {
    let s = d.as_secs_f64();
    if s > 0.0 { round(n as f64 / s, 1) } else { 0.0 }
}

/// Latency histogram in nanoseconds, 3 significant digits, 1 ns .. 1 h.
pub struct Latency(Histogram<u64>);

impl Default for Latency {
    fn default() -> Self {
        Self::new()
    }
}

impl Latency {
    pub fn new() -> Self {
        Self(Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid histogram bounds"))
    }

    #[inline]
    pub fn record(&mut self, ns: u64) {
        self.0.saturating_record(ns.max(1));
    }

    pub fn merge(&mut self, other: &Latency) {
        // Same bounds on both sides, so adding cannot fail; saturate rather than panic if it did.
        if self.0.add(&other.0).is_err() {
            for v in other.0.iter_recorded() {
                self.0
                    .saturating_record_n(v.value_iterated_to(), v.count_at_value());
            }
        }
    }
}

/// The clock publishers stamp into messages and consumers read back: nanoseconds since a base instant
/// shared by all tasks of this process.
#[derive(Clone, Copy, Debug)]
pub struct Clock(Instant);

impl Default for Clock {
    /// A clock whose base is now.
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    pub fn new() -> Self {
        Self(Instant::now())
    }

    #[inline]
    pub fn now_ns(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }

    /// The instant a [`Clock::now_ns`] reading stands for.
    pub fn instant_at(&self, ns: u64) -> Instant {
        self.0 + Duration::from_nanos(ns)
    }
}

/// CPU time (utime + stime, in clock ticks) of a process from /proc/PID/stat.
fn cpu_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: fields after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut f = rest.split_ascii_whitespace();
    // rest starts at field 3 (state); utime is field 14, stime field 15.
    let utime: u64 = f.nth(11)?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The resident set size of process `pid` in KiB (VmRSS).
pub fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_ascii_whitespace().nth(1)?.parse().ok()
}

/// Linux reports /proc CPU times in USER_HZ, which is 100 on every architecture Linux supports.
const TICKS_PER_SEC: f64 = 100.0;

/// Resource use over a run.
#[derive(Debug, Default)]
pub struct Usage {
    pub rss_mean_mb: Option<f64>,
    pub rss_max_mb: Option<f64>,
    pub cpu_pct: Option<f64>,
    pub client_cpu_pct: Option<f64>,
}

/// Samples the broker's RSS every 100 ms and brackets the run with CPU readings of the broker and of
/// this process.
pub struct Sampler {
    pid: Option<u32>,
    started: Instant,
    broker_cpu0: Option<u64>,
    self_cpu0: Option<u64>,
    rss: Option<JoinHandle<(u64, u64, u64)>>,
    stop: tokio_util::sync::CancellationToken,
}

impl Sampler {
    pub fn start(pid: Option<u32>) -> anyhow::Result<Self> {
        let stop = tokio_util::sync::CancellationToken::new();
        let mut broker_cpu0 = None;
        let mut rss = None;
        if let Some(pid) = pid {
            broker_cpu0 = Some(
                cpu_ticks(&pid.to_string())
                    .with_context(|| format!("cannot read /proc/{pid}/stat (--pid)"))?,
            );
            let stop = stop.clone();
            rss = Some(tokio::spawn(async move {
                let (mut n, mut sum, mut max) = (0u64, 0u64, 0u64);
                let mut tick = tokio::time::interval(Duration::from_millis(100));
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tick.tick() => {}
                    }
                    if let Some(kb) = rss_kb(pid) {
                        n += 1;
                        sum += kb;
                        max = max.max(kb);
                    }
                }
                if let Some(kb) = rss_kb(pid) {
                    n += 1;
                    sum += kb;
                    max = max.max(kb);
                }
                (n, sum, max)
            }));
        }
        Ok(Self {
            pid,
            started: Instant::now(),
            broker_cpu0,
            self_cpu0: cpu_ticks("self"),
            rss,
            stop,
        })
    }

    pub async fn finish(self) -> Usage {
        let wall = self.started.elapsed().as_secs_f64();
        let pct = |t0: Option<u64>, t1: Option<u64>| match (t0, t1) {
            (Some(a), Some(b)) if wall > 0.0 => {
                Some(b.saturating_sub(a) as f64 / TICKS_PER_SEC / wall * 100.0)
            }
            _ => None,
        };
        let mut u = Usage {
            cpu_pct: pct(
                self.broker_cpu0,
                self.pid.and_then(|p| cpu_ticks(&p.to_string())),
            ),
            client_cpu_pct: pct(self.self_cpu0, cpu_ticks("self")),
            ..Usage::default()
        };
        self.stop.cancel();
        if let Some(h) = self.rss
            && let Ok((n, sum, max)) = h.await
            && n > 0
        {
            u.rss_mean_mb = Some(sum as f64 / n as f64 / 1024.0);
            u.rss_max_mb = Some(max as f64 / 1024.0);
        }
        u
    }
}

/// "host:port" of a URL-ish target, for the default label.
pub fn host_port(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.split('/').next().unwrap_or(rest);
    rest.rsplit_once('@').map_or(rest, |(_, hp)| hp).to_string()
}
