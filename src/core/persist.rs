//! The core's side of the store contract: turning a [`Message`] into the store's [`StoredMessage`] (metadata in
//! the core's own encoding, `message::codec`) and back, and argument tables into [`Opaque`] bytes and back.
//!
//! Data written by journal format 1 predates the core's encoding: its metadata and arguments are in AMQP 0-9-1
//! terms, which the core does not read. The AMQP front end registers a [`LegacyReader`] for them at start-up
//! ([`register_legacy_reader`]); without one, such data is reported as unreadable rather than guessed at.

use std::sync::OnceLock;

use bytes::Bytes;

use super::CoreError;
use super::message::{Headers, Message, codec};
use crate::store::{Format, Opaque, StoredMessage};

/// Reads what journal format 1 stored (see the module docs).
pub trait LegacyReader: Send + Sync + 'static {
    /// A format 1 message: `meta` is its exchange, routing key and properties as format 1 laid them out.
    fn message(&self, meta: &[u8], body: Bytes) -> Result<Message, String>;
    /// A format 1 argument table.
    fn table(&self, bytes: &[u8]) -> Result<Headers, String>;
}

static LEGACY: OnceLock<&'static dyn LegacyReader> = OnceLock::new();

/// Installs the reader for format 1 data (once per process; later calls are ignored: there is only one).
pub fn register_legacy_reader(reader: &'static dyn LegacyReader) {
    let _ = LEGACY.set(reader);
}

fn legacy() -> Result<&'static dyn LegacyReader, CoreError> {
    LEGACY
        .get()
        .copied()
        .ok_or_else(|| CoreError::Store("format 1 data and no reader for it".into()))
}

/// What the store keeps of `message`. A store that keeps no bodies (`pages() == false`) needs no metadata;
/// `timed` asks it to recover the publish time (a queue it goes to counts `x-message-ttl` from the publish).
pub(crate) fn stored(message: &Message, keeps_messages: bool, timed: bool) -> StoredMessage {
    let p = &message.properties;
    StoredMessage {
        meta: Opaque::current(if keeps_messages {
            codec::encode_meta(message)
        } else {
            Bytes::new()
        }),
        body: message.body.clone(),
        priority: p.priority.unwrap_or(0),
        expires_at_ms: p.expiry.map(|e| e.at_ms),
        published_at_ms: super::message::now_ms(),
        recover_publish_time: timed,
    }
}

/// The message the store kept.
pub(crate) fn restore(stored: StoredMessage) -> Result<Message, CoreError> {
    match stored.meta.format {
        Format::Current => {
            codec::decode_meta(&stored.meta.bytes, stored.body).map_err(CoreError::store)
        }
        Format::Format1 => {
            let mut m = legacy()?
                .message(&stored.meta.bytes, stored.body)
                .map_err(CoreError::Store)?;
            // The TTL of a format 1 message restarts from the recovery (the store computed the deadline).
            if let (Some(e), Some(at)) = (m.properties.expiry.as_mut(), stored.expires_at_ms) {
                e.at_ms = at;
            }
            Ok(m)
        }
    }
}

/// Arguments as the store keeps them.
pub(crate) fn args_out(args: &Headers) -> Opaque {
    Opaque::current(codec::encode_table(args))
}

/// Arguments the store kept.
pub(crate) fn args_in(args: &Opaque) -> Result<Headers, CoreError> {
    match args.format {
        Format::Current => codec::decode_table(&args.bytes).map_err(CoreError::store),
        Format::Format1 => legacy()?.table(&args.bytes).map_err(CoreError::Store),
    }
}
