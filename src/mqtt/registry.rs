//! The client identifiers in use on this broker, for session takeover [MQTT-3.1.4-3]: when a client id
//! connects while another connection holds it, the old connection is told to go (v5 DISCONNECT 0x8E Session
//! taken over) and the new one waits until it has gone, so the old consumer's unacknowledged messages are back
//! in the session queue before the new one consumes. The registry also keeps what a persistent session must
//! remember between connections and cannot keep in a queue: its open QoS 2 exchanges (ids received and not yet
//! released, [MQTT-4.3.3-10]; ids released towards the client and not yet completed, [MQTT-4.4.0-1]), and the
//! token that cancels a delayed will when the client
//! comes back before the will delay has passed [MQTT-3.1.3-9].

use super::outbound::ResendIds;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// How long a new connection waits for the old holder of its client id to go.
const TAKEOVER_WAIT: Duration = Duration::from_secs(5);

/// See the module docs.
#[derive(Debug, Default)]
pub struct Registry {
    entries: Mutex<HashMap<String, Entry>>,
    next_generation: std::sync::atomic::AtomicU64,
}

#[derive(Debug, Default)]
struct Entry {
    /// The connection holding the id, if one does.
    holder: Option<Holder>,
    /// QoS 2 state kept while the session persists.
    qos2: Qos2State,
    /// Cancels a will waiting for its delay.
    pending_will: Option<CancellationToken>,
}

#[derive(Debug)]
struct Holder {
    generation: u64,
    /// Cancelled to tell the holder to go.
    takeover: CancellationToken,
    /// Closed (its sender dropped) when the holder has gone.
    gone: watch::Receiver<()>,
}

/// A connection's hold on its client id; give it back with [`Registry::release`].
#[derive(Debug)]
pub struct Claim {
    pub generation: u64,
    /// Cancelled when another connection takes the session over.
    pub takeover: CancellationToken,
    /// The session's QoS 2 state from its previous connection.
    pub qos2: Qos2State,
    /// Whether the client id had a connection before this one that was taken over.
    pub took_over: bool,
    _gone: watch::Sender<()>,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes `client_id`, telling a connection that holds it to go and waiting (at most [`TAKEOVER_WAIT`])
    /// until it has. A will waiting for its delay is cancelled.
    pub async fn claim(&self, client_id: &str) -> Claim {
        let mut took_over = false;
        loop {
            let waiting = {
                let mut entries = self.lock();
                let entry = entries.entry(client_id.to_owned()).or_default();
                if let Some(will) = entry.pending_will.take() {
                    will.cancel();
                }
                match &entry.holder {
                    Some(holder) => {
                        holder.takeover.cancel();
                        holder.gone.clone()
                    }
                    None => return self.hold(entry, took_over),
                }
            };
            took_over = true;
            let mut gone = waiting;
            if tokio::time::timeout(TAKEOVER_WAIT, gone.changed())
                .await
                .is_err()
            {
                warn!(
                    client_id,
                    "the connection taken over did not close in time; taking the session anyway"
                );
                if let Some(entry) = self.lock().get_mut(client_id) {
                    entry.holder = None;
                }
            }
        }
    }

    fn hold(&self, entry: &mut Entry, took_over: bool) -> Claim {
        let generation = self
            .next_generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let takeover = CancellationToken::new();
        let (gone_tx, gone_rx) = watch::channel(());
        entry.holder = Some(Holder {
            generation,
            takeover: takeover.clone(),
            gone: gone_rx,
        });
        Claim {
            generation,
            takeover,
            qos2: std::mem::take(&mut entry.qos2),
            took_over,
            _gone: gone_tx,
        }
    }

    /// Gives `client_id` back. A persistent session keeps its QoS 2 state; `will` (a will waiting for its
    /// delay) is cancelled if the client id connects again first.
    pub fn release(
        &self,
        client_id: &str,
        claim: Claim,
        keep: Keep,
        will: Option<CancellationToken>,
    ) {
        let mut entries = self.lock();
        let Some(entry) = entries.get_mut(client_id) else {
            return;
        };
        if entry
            .holder
            .as_ref()
            .is_some_and(|h| h.generation == claim.generation)
        {
            entry.holder = None;
        }
        if keep == Keep::Session {
            entry.qos2 = claim.qos2;
        }
        entry.pending_will = will;
        if entry.holder.is_none() && entry.qos2.is_empty() && entry.pending_will.is_none() {
            entries.remove(client_id);
        }
    }
}

/// The packet ids a session keeps between connections: the QoS 2 exchanges it has open in either direction
/// (§4.3.3) and the deliveries to send again with their ids.
#[derive(Debug, Default, Clone)]
pub struct Qos2State {
    /// Received from the client and not released (PUBREL) yet.
    pub incoming: HashSet<u16>,
    /// Sent to the client, acknowledged with PUBREC, released with PUBREL and not completed (PUBCOMP) yet:
    /// PUBREL is sent again when the session resumes [MQTT-4.4.0-1].
    pub released: HashSet<u16>,
    /// QoS 1 and 2 deliveries in flight when the connection ended, sent again with these ids when the session
    /// resumes [MQTT-4.4.0-1].
    pub resend: ResendIds,
}

impl Qos2State {
    fn is_empty(&self) -> bool {
        self.incoming.is_empty() && self.released.is_empty() && self.resend.is_empty()
    }
}

/// Whether a session's state outlives its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// A persistent session: keep its QoS 2 state.
    Session,
    /// A clean session: forget it.
    Nothing,
}
