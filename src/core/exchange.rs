//! Exchanges and their bindings: direct (hash by key), fanout, topic (trie) and headers (argument match),
//! each with an index kept beside the plain binding list so routing never scans bindings that cannot match.
//! Routing across exchange-to-exchange bindings and alternate exchanges is the vhost's job.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::core::message::Headers;

use super::CoreError;
use super::headers::{self, MatchMode};
use super::queue::QueueHandle;
use super::topic::TopicTrie;

/// The four exchange types of AMQP 0-9-1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeKind {
    Direct,
    Fanout,
    Topic,
    Headers,
}

impl ExchangeKind {
    /// Parse a declare's `type` field (RabbitMQ: an unknown type is 406 on the channel).
    pub fn parse(kind: &str) -> Result<Self, CoreError> {
        match kind {
            "direct" => Ok(Self::Direct),
            "fanout" => Ok(Self::Fanout),
            "topic" => Ok(Self::Topic),
            "headers" => Ok(Self::Headers),
            other => Err(CoreError::precondition(format!(
                "invalid exchange type '{other}'"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Fanout => "fanout",
            Self::Topic => "topic",
            Self::Headers => "headers",
        }
    }
}

/// Where a binding leads.
#[derive(Debug, Clone, PartialEq)]
pub enum Destination {
    Queue(QueueHandle),
    Exchange(String),
}

#[derive(Debug)]
struct Binding {
    destination: Destination,
    key: String,
    arguments: Headers,
    mode: MatchMode,
}

#[derive(Debug, Default)]
struct Bindings {
    all: Vec<Binding>,
    direct: HashMap<String, Vec<Destination>>,
    topic: TopicTrie<Destination>,
}

/// An exchange. Its declared properties are immutable; only its bindings change.
#[derive(Debug)]
pub struct Exchange {
    pub name: String,
    pub kind: ExchangeKind,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    /// `alternate-exchange` argument: where unroutable messages go.
    pub alternate: Option<String>,
    bindings: RwLock<Bindings>,
    deleted: AtomicBool,
}

impl Exchange {
    pub fn new(
        name: String,
        kind: ExchangeKind,
        durable: bool,
        auto_delete: bool,
        internal: bool,
        arguments: &Headers,
    ) -> Self {
        let alternate = arguments
            .get("alternate-exchange")
            .and_then(|v| v.as_str())
            .map(str::to_owned);
        Self {
            name,
            kind,
            durable,
            auto_delete,
            internal,
            alternate,
            bindings: RwLock::default(),
            deleted: AtomicBool::new(false),
        }
    }

    /// Whether the exchange was deleted (holders of an `Arc` to it must look the name up again).
    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    pub(crate) fn mark_deleted(&self) {
        self.deleted.store(true, Ordering::Release);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Bindings> {
        self.bindings.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Bindings> {
        self.bindings.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Add a binding; binding twice is a no-op. Returns whether it was new. `record` runs (to journal the
    /// change) while the bindings lock is held, only for a new binding; if it fails, nothing changes.
    pub(crate) fn bind(
        &self,
        destination: Destination,
        key: &str,
        arguments: &Headers,
        record: impl FnOnce() -> Result<(), CoreError>,
    ) -> Result<bool, CoreError> {
        let mode = if self.kind == ExchangeKind::Headers {
            MatchMode::from_arguments(arguments)?
        } else {
            MatchMode::All
        };
        let mut b = self.write();
        if b.all
            .iter()
            .any(|x| x.destination == destination && x.key == key && x.arguments == *arguments)
        {
            return Ok(false);
        }
        record()?;
        match self.kind {
            ExchangeKind::Direct => b
                .direct
                .entry(key.to_owned())
                .or_default()
                .push(destination.clone()),
            ExchangeKind::Topic => {
                b.topic.insert(key, destination.clone());
            }
            ExchangeKind::Fanout | ExchangeKind::Headers => {}
        }
        b.all.push(Binding {
            destination,
            key: key.to_owned(),
            arguments: arguments.clone(),
            mode,
        });
        Ok(true)
    }

    /// Remove a binding; returns whether it existed. `record` as for [`Exchange::bind`].
    pub(crate) fn unbind(
        &self,
        destination: &Destination,
        key: &str,
        arguments: &Headers,
        record: impl FnOnce() -> Result<(), CoreError>,
    ) -> Result<bool, CoreError> {
        let mut b = self.write();
        let Some(pos) = b.all.iter().position(|x| {
            x.destination == *destination && x.key == key && x.arguments == *arguments
        }) else {
            return Ok(false);
        };
        record()?;
        b.all.remove(pos);
        Self::unindex(&mut b, self.kind, destination, key);
        Ok(true)
    }

    fn unindex(b: &mut Bindings, kind: ExchangeKind, destination: &Destination, key: &str) {
        match kind {
            ExchangeKind::Direct => {
                if let Some(list) = b.direct.get_mut(key) {
                    list.retain(|d| d != destination);
                    if list.is_empty() {
                        b.direct.remove(key);
                    }
                }
            }
            ExchangeKind::Topic => {
                // Another binding with the same key and destination (other arguments) keeps the index entry.
                if !b
                    .all
                    .iter()
                    .any(|x| x.destination == *destination && x.key == key)
                {
                    b.topic.remove(key, destination);
                }
            }
            ExchangeKind::Fanout | ExchangeKind::Headers => {}
        }
    }

    /// Remove every binding to `destination` (it was deleted). Returns how many were removed.
    pub fn remove_destination(&self, destination: &Destination) -> usize {
        let mut b = self.write();
        let gone: Vec<String> = b
            .all
            .iter()
            .filter(|x| x.destination == *destination)
            .map(|x| x.key.clone())
            .collect();
        b.all.retain(|x| x.destination != *destination);
        for key in &gone {
            Self::unindex(&mut b, self.kind, destination, key);
        }
        gone.len()
    }

    /// The routing key and arguments of every binding from this exchange to `destination`.
    pub fn bindings_to(&self, destination: &Destination) -> Vec<(String, Headers)> {
        self.read()
            .all
            .iter()
            .filter(|b| &b.destination == destination)
            .map(|b| (b.key.clone(), b.arguments.clone()))
            .collect()
    }

    /// Number of bindings from this exchange.
    pub fn binding_count(&self) -> usize {
        self.read().all.len()
    }

    /// Call `found` for each destination matching `key` / `headers`.
    pub fn route(&self, key: &str, headers: &Headers, found: &mut impl FnMut(&Destination)) {
        let b = self.read();
        match self.kind {
            ExchangeKind::Direct => b
                .direct
                .get(key)
                .into_iter()
                .flatten()
                .for_each(&mut *found),
            ExchangeKind::Fanout => b.all.iter().for_each(|x| found(&x.destination)),
            ExchangeKind::Topic => b.topic.route(key, found),
            ExchangeKind::Headers => b
                .all
                .iter()
                .filter(|x| headers::matches(x.mode, &x.arguments, headers))
                .for_each(|x| found(&x.destination)),
        }
    }
}
