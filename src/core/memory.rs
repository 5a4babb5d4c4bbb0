//! The memory alarm and what it counts. One broker-wide [`MemoryGauge`] adds up every byte the broker holds
//! for clients: each queue adds the messages it holds (ready and unacked, and deliveries handed to a
//! connection but not yet written to its socket); each client connection adds, through its [`ClientMemory`]
//! ledger, its read and write buffers, the content of messages it has not finished sending and the publishes
//! of its uncommitted transactions. Above the high-water mark publishers are blocked: a protocol adapter checks
//! the alarm before every read from a connection that publishes, and stops reading while it is raised (AMQP
//! clients that asked also get connection.blocked), until usage falls back under 90 % of the mark. This
//! bounds what publishers can make the broker hold, like RabbitMQ's `vm_memory_high_watermark`. A mark of 0
//! turns the alarm off.
//!
//! A connection's ledger also caps its *content* (unfinished messages and uncommitted transactions, which the
//! client can grow at will); what would exceed the cap is refused ([`OverLimit`]) and the adapter says so in
//! its protocol's words. The ledger is changed on every frame without touching the shared gauge: the
//! connection [`ClientMemory::report`]s the net change once per read, right before it checks the alarm.
//!
//! This module knows no protocol and no socket.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::watch;

/// Bytes accounted per message besides its body (entry, `Arc`, properties): a rough, deliberate estimate.
pub const MESSAGE_OVERHEAD: u64 = 256;

/// See the module docs.
#[derive(Debug)]
pub struct MemoryGauge {
    used: AtomicU64,
    limit: u64,
    alarm: watch::Sender<bool>,
}

impl MemoryGauge {
    pub fn new(limit: u64) -> Self {
        Self {
            used: AtomicU64::new(0),
            limit,
            alarm: watch::Sender::new(false),
        }
    }

    /// Account for `bytes` more.
    pub fn add(&self, bytes: u64) {
        let now = self.used.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if self.limit > 0 && now > self.limit && !*self.alarm.borrow() {
            tracing::warn!(
                used = now,
                limit = self.limit,
                "memory alarm: blocking publishers"
            );
            self.alarm.send_replace(true);
        }
    }

    /// Account for `bytes` fewer.
    pub fn sub(&self, bytes: u64) {
        let now = self
            .used
            .fetch_sub(bytes, Ordering::Relaxed)
            .saturating_sub(bytes);
        if self.limit > 0 && now < self.limit / 10 * 9 && *self.alarm.borrow() {
            tracing::info!(used = now, limit = self.limit, "memory alarm cleared");
            self.alarm.send_replace(false);
        }
    }

    /// Bytes currently accounted.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Watch the alarm (true = publishers blocked).
    pub fn alarm(&self) -> watch::Receiver<bool> {
        self.alarm.subscribe()
    }
}

/// Content a connection wanted to hold beyond its cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "{held} bytes of unfinished and uncommitted messages held; {more} more would exceed the limit of {limit}"
)]
pub struct OverLimit {
    /// Content the connection holds now.
    pub held: u64,
    /// What it asked to hold besides.
    pub more: u64,
    /// The cap.
    pub limit: u64,
}

/// What a [`Charge`] counts: content is capped per connection, buffers are only counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChargeKind {
    /// Unfinished messages and uncommitted transactions: the client decides how much.
    Content,
    /// Read and write buffers: bounded by the adapter itself.
    Buffer,
}

/// One client connection's share of the gauge (see the module docs). Cheap to clone; every clone and every
/// [`Charge`] made from it is the same ledger, whose bytes leave the gauge when the last of them is dropped.
#[derive(Debug, Clone)]
pub struct ClientMemory(Arc<Ledger>);

#[derive(Debug)]
struct Ledger {
    gauge: Arc<MemoryGauge>,
    /// Cap on `content`; 0 = none.
    limit: u64,
    content: AtomicU64,
    buffers: AtomicU64,
    /// What the gauge has been told of `content + buffers`.
    reported: AtomicU64,
}

impl Ledger {
    fn check(&self, more: u64) -> Result<(), OverLimit> {
        let held = self.content.load(Ordering::Relaxed);
        if self.limit > 0 && held.saturating_add(more) > self.limit {
            return Err(OverLimit {
                held,
                more,
                limit: self.limit,
            });
        }
        Ok(())
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        self.gauge.sub(*self.reported.get_mut());
    }
}

impl ClientMemory {
    /// A ledger for one connection, reporting to `gauge`, with its content capped at `limit` bytes (0 = no
    /// cap).
    pub fn new(gauge: Arc<MemoryGauge>, limit: u64) -> Self {
        Self(Arc::new(Ledger {
            gauge,
            limit,
            content: AtomicU64::new(0),
            buffers: AtomicU64::new(0),
            reported: AtomicU64::new(0),
        }))
    }

    /// A charge of 0 bytes of `kind` on this ledger.
    pub fn charge(&self, kind: ChargeKind) -> Charge {
        Charge {
            ledger: self.0.clone(),
            kind,
            bytes: 0,
        }
    }

    /// Content held now (unfinished and uncommitted messages).
    pub fn content(&self) -> u64 {
        self.0.content.load(Ordering::Relaxed)
    }

    /// Everything this connection holds now, as the next [`ClientMemory::report`] will tell the gauge.
    pub fn held(&self) -> u64 {
        self.content() + self.0.buffers.load(Ordering::Relaxed)
    }

    /// Whether `more` bytes of content would fit under the cap.
    pub fn check(&self, more: u64) -> Result<(), OverLimit> {
        self.0.check(more)
    }

    /// Tell the gauge what changed since the last report (which may raise or clear the alarm).
    pub fn report(&self) {
        let now = self.held();
        let before = self.0.reported.swap(now, Ordering::Relaxed);
        if now > before {
            self.0.gauge.add(now - before);
        } else if before > now {
            self.0.gauge.sub(before - now);
        }
    }
}

/// Bytes held on a [`ClientMemory`] ledger by one thing (a buffer, a channel's unfinished message and
/// transaction); given back when dropped.
#[derive(Debug)]
pub struct Charge {
    ledger: Arc<Ledger>,
    kind: ChargeKind,
    bytes: u64,
}

impl Charge {
    /// Bytes held by this charge.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Whether `more` bytes of content would fit under the connection's cap.
    pub fn check(&self, more: u64) -> Result<(), OverLimit> {
        self.ledger.check(more)
    }

    /// Hold `more` bytes besides; content is refused beyond the connection's cap.
    pub fn add(&mut self, more: u64) -> Result<(), OverLimit> {
        if self.kind == ChargeKind::Content {
            self.ledger.check(more)?;
        }
        self.counter().fetch_add(more, Ordering::Relaxed);
        self.bytes += more;
        Ok(())
    }

    /// Give back `fewer` bytes (at most what is held).
    pub fn sub(&mut self, fewer: u64) {
        let fewer = fewer.min(self.bytes);
        self.counter().fetch_sub(fewer, Ordering::Relaxed);
        self.bytes -= fewer;
    }

    /// Hold exactly `bytes` (a buffer's size), whatever the cap.
    pub fn set(&mut self, bytes: u64) {
        if bytes > self.bytes {
            self.counter()
                .fetch_add(bytes - self.bytes, Ordering::Relaxed);
        } else {
            self.counter()
                .fetch_sub(self.bytes - bytes, Ordering::Relaxed);
        }
        self.bytes = bytes;
    }

    fn counter(&self) -> &AtomicU64 {
        match self.kind {
            ChargeKind::Content => &self.ledger.content,
            ChargeKind::Buffer => &self.ledger.buffers,
        }
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.counter().fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alarm_sets_above_the_limit_and_clears_below_ninety_percent() {
        let gauge = MemoryGauge::new(1000);
        let alarm = gauge.alarm();
        gauge.add(900);
        assert!(!*alarm.borrow());
        gauge.add(200);
        assert!(*alarm.borrow());
        gauge.sub(150);
        assert!(*alarm.borrow(), "950 is above 90 %");
        gauge.sub(100);
        assert!(!*alarm.borrow());
        assert_eq!(gauge.used(), 850);
    }

    #[test]
    fn zero_limit_never_alarms() {
        let gauge = MemoryGauge::new(0);
        gauge.add(u64::MAX / 2);
        assert!(!*gauge.alarm().borrow());
    }

    #[test]
    fn a_ledger_reaches_the_gauge_when_reported_and_leaves_it_when_dropped() {
        let gauge = Arc::new(MemoryGauge::new(1000));
        let client = ClientMemory::new(gauge.clone(), 0);
        let mut buffer = client.charge(ChargeKind::Buffer);
        let mut content = client.charge(ChargeKind::Content);
        buffer.set(600);
        content.add(500).expect("no cap");
        assert_eq!(gauge.used(), 0, "nothing reaches the gauge before a report");
        client.report();
        assert_eq!(gauge.used(), 1100);
        assert!(*gauge.alarm().borrow());
        buffer.set(100);
        content.sub(200);
        client.report();
        assert_eq!(gauge.used(), 400);
        assert!(!*gauge.alarm().borrow());
        drop((buffer, content));
        assert_eq!(client.held(), 0);
        drop(client);
        assert_eq!(gauge.used(), 0, "the last handle gives the rest back");
    }

    #[test]
    fn content_is_capped_per_connection_and_buffers_are_not() {
        let gauge = Arc::new(MemoryGauge::new(0));
        let client = ClientMemory::new(gauge, 1000);
        let mut first = client.charge(ChargeKind::Content);
        let mut second = client.charge(ChargeKind::Content);
        first.add(700).expect("under the cap");
        assert_eq!(
            second.add(400),
            Err(OverLimit {
                held: 700,
                more: 400,
                limit: 1000
            })
        );
        assert_eq!(second.bytes(), 0, "a refused charge holds nothing");
        second.add(300).expect("exactly the cap");
        client.charge(ChargeKind::Buffer).set(10_000);
        drop(first);
        assert_eq!(client.content(), 300);
        second
            .add(700)
            .expect("room again once the first is given back");
    }
}
