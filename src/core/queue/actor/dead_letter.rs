//! Dead-lettering: the copy that goes to the dead-letter exchange (death history in the annotations, the
//! per-message TTL removed), journaled before the original is settled, and RabbitMQ's cycle rule.

use super::*;

impl Actor {
    /// The message leaves this queue for its dead-letter exchange (or is dropped when there is none). The copy
    /// is journaled before the original is settled, so a crash between the two brings the original back rather
    /// than losing both.
    pub(super) fn dead_letter(&mut self, entry: Entry, reason: DeathReason) {
        if let Some(entry) = self.send_to_dlx(entry, reason) {
            self.retire(&entry);
        }
    }

    /// A publish refused by `reject-publish-dlx`: dead-lettered, and the original's settlement synced (its
    /// publisher is told it was refused).
    pub(super) fn dead_letter_refused(&mut self, entry: Entry) -> Option<SyncPoint> {
        let entry = self.send_to_dlx(entry, DeathReason::Maxlen)?;
        self.retire_refused(&entry)
    }

    /// Routes the dead-lettered copy (journaled when durable); hands back the original to be settled, unless it
    /// must stay (a paged body that could not be read back stays in the store and returns at a restart).
    fn send_to_dlx(&mut self, mut entry: Entry, reason: DeathReason) -> Option<Entry> {
        let dlx = self.me.args.dead_letter_exchange.clone();
        let Some((dlx, vhost)) = dlx.zip(self.vhost.upgrade()) else {
            return Some(entry);
        };
        // A paged body is read back before the settlement lets the store forget it.
        if !load(self.store.as_ref(), &self.memory, &self.me, &mut entry) {
            return None;
        }
        let Some(original) = entry.message.clone() else {
            return Some(entry);
        };
        let message = dead_lettered(&original, &self.me, &dlx, reason);
        let mut targets = vhost.route(&dlx, &message);
        // A queue the message already died in, with no rejection since, would cycle it forever: skip it.
        targets.retain(|q| !is_cycle(&q.name, &message.annotations.deaths));
        vhost.enqueue_detached(Arc::new(message), &targets);
        Some(entry)
    }
}

/// The copy of `original` that goes to the dead-letter exchange: RabbitMQ's death bookkeeping (one entry per
/// queue and reason, most recent first, with a count; first and last death sites) in the annotations, and the
/// per-message TTL removed (kept in the death entry as the original expiration).
pub(super) fn dead_lettered(
    original: &Message,
    queue: &QueueHandle,
    dlx: &str,
    reason: DeathReason,
) -> Message {
    let mut message = original.clone();
    let routing_key = queue
        .args
        .dead_letter_routing_key
        .clone()
        .unwrap_or_else(|| original.routing_key.clone());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let expiry = message.properties_mut().expiry.take();
    let a = &mut message.annotations;
    let previous = a
        .deaths
        .iter()
        .position(|d| d.queue == queue.name && d.reason == reason)
        .map(|i| a.deaths.remove(i));
    let count = previous.as_ref().map_or(0, |d| d.count) + 1;
    a.deaths.insert(
        0,
        Death {
            queue: queue.name.clone(),
            reason,
            exchange: original.exchange.clone(),
            routing_keys: vec![original.routing_key.clone()],
            count,
            time: now,
            original_expiration_ms: expiry.map(|e| e.ttl_ms),
        },
    );
    let site = DeathSite {
        queue: queue.name.clone(),
        reason,
        exchange: original.exchange.clone(),
    };
    match &mut a.death_sites {
        Some(sites) => sites.last = site,
        None => {
            a.death_sites = Some(Box::new(crate::core::message::DeathSites {
                first: site.clone(),
                last: site,
            }))
        }
    }
    message.exchange = dlx.to_string();
    message.routing_key = routing_key;
    message
}

/// Whether dead-lettering a message with `deaths` (the latest first) into `target` closes a cycle: it died in
/// `target` before and was never rejected since (RabbitMQ's rule; a rejection means a consumer saw it, so a
/// cycle through a rejection is the application's choice).
pub(super) fn is_cycle(target: &str, deaths: &[Death]) -> bool {
    for d in deaths {
        if d.reason == DeathReason::Rejected {
            return false;
        }
        if d.queue == target {
            return true;
        }
    }
    false
}
