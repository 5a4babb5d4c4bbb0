//! Publisher flow control: a queue whose consumers cannot keep up tells its publishers to slow down.
//!
//! A queue is congested while it holds at least [`FLOW_HIGH`] ready messages and has handed messages to a
//! consumer within the last [`FLOW_ACTIVE`]: its consumers are draining it, slower than it fills. It stays
//! congested until it is down to [`FLOW_LOW`], or until nothing was delivered for [`FLOW_ACTIVE`]. Every front
//! end hands messages to queues through `Publisher::flush`, which, after a batch to a congested queue, waits
//! until the queue is relieved, at most [`FLOW_WAIT`] at a time; meanwhile the connection reads nothing more,
//! so TCP pushes back on the client. Without it, a publisher faster than the consumers fills the queue up to
//! its limits, latency grows with the queue, and a QoS 0 subscriber's queue drops most of what is published
//! (what RabbitMQ's credit flow and LavinMQ's flow control prevent the same way).
//!
//! A queue nobody consumes, or whose consumers stopped taking messages (no credit: unacknowledged prefetch, a
//! client that does not read), is never congested: publishers go on, and the queue's own limits
//! (`x-max-length`, MQTT's queued-message bound) decide. A stuck consumer slows its publishers for at most
//! [`FLOW_ACTIVE`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

/// Ready messages at which a queue whose consumers are draining it becomes congested.
pub(crate) const FLOW_HIGH: usize = 4096;
/// Ready messages below which a congested queue is relieved.
pub(crate) const FLOW_LOW: usize = 2048;
/// A queue counts as drained by its consumers while it delivered within this long.
pub(crate) const FLOW_ACTIVE: Duration = Duration::from_secs(1);
/// Longest a publisher waits for a congested queue at a time.
pub(crate) const FLOW_WAIT: Duration = Duration::from_millis(100);

/// A queue's congestion, set by its actor and waited on by publishers.
#[derive(Debug, Default)]
pub(crate) struct Flow {
    congested: AtomicBool,
    relieved: Notify,
}

impl Flow {
    pub(crate) fn is_congested(&self) -> bool {
        self.congested.load(Ordering::Acquire)
    }

    /// The actor's verdict; publishers waiting are woken when the queue is relieved.
    pub(crate) fn set(&self, congested: bool) {
        let was = self.congested.swap(congested, Ordering::AcqRel);
        if was && !congested {
            self.relieved.notify_waiters();
        }
    }

    /// Waits while the queue is congested, at most [`FLOW_WAIT`].
    pub(crate) async fn wait(&self) {
        self.wait_at_most(FLOW_WAIT).await;
    }

    async fn wait_at_most(&self, limit: Duration) {
        let relieved = self.relieved.notified();
        tokio::pin!(relieved);
        relieved.as_mut().enable();
        if !self.is_congested() {
            return;
        }
        let _ = tokio::time::timeout(limit, relieved).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn a_waiting_publisher_is_woken_when_the_queue_is_relieved() {
        let flow = Arc::new(Flow::default());
        flow.wait().await; // not congested: no wait
        flow.set(true);
        let waiter = {
            let flow = flow.clone();
            tokio::spawn(async move { flow.wait_at_most(Duration::from_secs(600)).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        flow.set(false);
        tokio::time::timeout(Duration::from_secs(60), waiter)
            .await
            .expect("woken by the relief, not by its time limit")
            .expect("waiter");
    }

    #[tokio::test]
    async fn a_publisher_waits_at_most_flow_wait() {
        let flow = Flow::default();
        flow.set(true);
        let started = tokio::time::Instant::now();
        flow.wait().await;
        assert!(started.elapsed() >= FLOW_WAIT);
    }
}
