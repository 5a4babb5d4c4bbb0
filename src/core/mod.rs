//! The broker core: vhosts, exchanges, queues, bindings, routing, consumers, users and permissions. Knows no
//! socket, no protocol name and no HTTP; every front end maps onto it through a [`Session`]
//! (docs/ARCHITECTURE.md §2-3). This module owns the [`Broker`] handle: start-up (recovery from the store), login,
//! and identifiers shared by every front end.

mod auth;
mod error;
mod exchange;
mod headers;
mod memory;
pub mod message;
#[cfg(test)]
mod paging_tests;
mod persist;
mod publish;
mod queue;
mod retained;
mod session;
#[cfg(test)]
mod tests;
mod topic;
mod vhost;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use tracing::{info, warn};

pub use crate::store::DestinationKind;
use crate::store::{Definition, Format, Recovered, Store};
pub use auth::{Permission, User, Users};
pub use error::{Access, CoreError, Entity, ErrorClass};
pub use memory::{Charge, ChargeKind, ClientMemory, MESSAGE_OVERHEAD, MemoryGauge, OverLimit};
pub use message::Message;
pub use persist::{LegacyReader, register_legacy_reader};
#[cfg(test)]
pub(crate) use publish::testing;
pub use publish::{Confirmation, Outcome, Publisher, Receipt, Settling, SyncView};
pub use queue::{
    ATTRIBUTES_ARGUMENT, ChannelLimit, ConsumerSink, ConsumerSpec, Delivered, Deliveries, Delivery,
    QueueHandle, QueueStats, ReceiveRequest, Received, Settle, SinkEvent,
};
pub use queue::{ConnId, ConsumerKey};
pub use session::{AutoDelete, Durability, Ownership, QueueOptions, Session};
pub use topic::TopicTrie;
pub use vhost::{BindOp, BindingSpec, ExchangeSpec};
use vhost::{Journal, QueueSpec, VHost};

/// The vhost every broker has.
pub const DEFAULT_VHOST: &str = "/";

/// Options the composition root passes to the core (built from `config::Config`).
#[derive(Debug, Clone)]
pub struct BrokerOptions {
    pub default_user: String,
    pub default_pass: String,
    /// Users that may only connect from a loopback address (RabbitMQ's `loopback_users`).
    pub loopback_users: Vec<String>,
    /// Extra vhosts created at start-up (besides `/`).
    pub vhosts: Vec<String>,
    /// Extra users created at start-up.
    pub users: Vec<UserSpec>,
    /// Permissions granted at start-up.
    pub permissions: Vec<PermissionSpec>,
    /// Topic permissions granted at start-up (after `permissions`, which they restrict).
    pub topic_permissions: Vec<TopicPermissionSpec>,
    /// Memory high-water mark for what the broker holds for clients, in bytes (0 = no alarm).
    pub memory_limit: u64,
    /// Bytes of unfinished and uncommitted messages one connection may hold (0 = no cap).
    pub connection_memory_limit: u64,
    /// Limits on how many queues a vhost and consumers a queue may have.
    pub limits: CoreLimits,
}

/// Limits the core enforces (RabbitMQ's vhost `max-queues`; consumers per queue). `None`: unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CoreLimits {
    /// Queues per vhost, unless `vhost_queues` names the vhost.
    pub queues_per_vhost: Option<usize>,
    /// Queues for single vhosts.
    pub vhost_queues: Vec<(String, Option<usize>)>,
    /// Consumers one queue may have at once.
    pub consumers_per_queue: Option<usize>,
}

impl CoreLimits {
    /// How many queues `vhost` may hold.
    fn queues_in(&self, vhost: &str) -> Option<usize> {
        self.vhost_queues
            .iter()
            .find(|(name, _)| name == vhost)
            .map_or(self.queues_per_vhost, |(_, limit)| *limit)
    }
}

/// A user defined in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSpec {
    pub name: String,
    pub password: String,
    pub tags: Vec<String>,
}

/// A topic permission defined in the configuration (RabbitMQ's `set_topic_permissions`): write and read
/// regexes on the routing keys of `exchange`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPermissionSpec {
    pub user: String,
    pub vhost: String,
    pub exchange: String,
    pub write: String,
    pub read: String,
}

/// A permission defined in the configuration (RabbitMQ's configure / write / read regexes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermissionSpec {
    pub user: String,
    pub vhost: String,
    pub configure: String,
    pub write: String,
    pub read: String,
}

impl Default for BrokerOptions {
    fn default() -> Self {
        Self {
            default_user: "guest".into(),
            default_pass: "guest".into(),
            loopback_users: vec!["guest".into()],
            vhosts: Vec::new(),
            users: Vec::new(),
            permissions: Vec::new(),
            topic_permissions: Vec::new(),
            memory_limit: 0,
            connection_memory_limit: 0,
            limits: CoreLimits::default(),
        }
    }
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn Store>,
    vhosts: RwLock<HashMap<String, Arc<VHost>>>,
    users: Users,
    ids: Arc<AtomicU64>,
    memory: Arc<MemoryGauge>,
    connection_memory_limit: u64,
    limits: CoreLimits,
    next_conn: AtomicU64,
    next_consumer: AtomicU64,
}

/// Cheap-to-clone handle to the broker.
#[derive(Clone, Debug)]
pub struct Broker {
    inner: Arc<Inner>,
}

impl Broker {
    /// Recover definitions and messages from the store and start the queue actors.
    pub async fn start(options: BrokerOptions, store: Arc<dyn Store>) -> Result<Broker, CoreError> {
        let started = Instant::now();
        let recovered = store.recover().map_err(CoreError::store)?;
        let broker = Broker {
            inner: Arc::new(Inner {
                store: store.clone(),
                vhosts: RwLock::new(HashMap::new()),
                users: Users::new(options.loopback_users.clone()),
                ids: Arc::new(AtomicU64::new(recovered.next_id.max(1))),
                memory: Arc::new(MemoryGauge::new(options.memory_limit)),
                connection_memory_limit: options.connection_memory_limit,
                limits: options.limits.clone(),
                next_conn: AtomicU64::new(1),
                next_consumer: AtomicU64::new(1),
            }),
        };
        broker.configure(&options)?;
        let messages = broker.replay(recovered).await;
        if messages > 0 || started.elapsed().as_millis() > 100 {
            info!(
                messages,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "recovered store"
            );
        }
        Ok(broker)
    }

    /// Create the default vhost and user and whatever the configuration adds.
    fn configure(&self, options: &BrokerOptions) -> Result<(), CoreError> {
        let users = &self.inner.users;
        users.put_user(
            &options.default_user,
            &options.default_pass,
            vec!["administrator".into()],
        );
        users.set_permission(&options.default_user, DEFAULT_VHOST, Permission::all());
        self.add_vhost(DEFAULT_VHOST);
        for vhost in &options.vhosts {
            self.add_vhost(vhost);
        }
        for user in &options.users {
            users.put_user(&user.name, &user.password, user.tags.clone());
        }
        for p in &options.permissions {
            if self.vhost(&p.vhost).is_none() {
                return Err(CoreError::not_found(Entity::VHost, &p.vhost, &p.vhost));
            }
            users.set_permission(
                &p.user,
                &p.vhost,
                Permission::new(&p.configure, &p.write, &p.read)?,
            );
        }
        for t in &options.topic_permissions {
            users.add_topic_permission(&t.user, &t.vhost, &t.exchange, &t.write, &t.read)?;
        }
        Ok(())
    }

    fn add_vhost(&self, name: &str) -> Arc<VHost> {
        let mut vhosts = self.inner.vhosts.write().unwrap_or_else(|e| e.into_inner());
        vhosts
            .entry(name.to_owned())
            .or_insert_with(|| {
                VHost::new(
                    name.to_owned(),
                    self.inner.store.clone(),
                    self.inner.ids.clone(),
                    self.inner.memory.clone(),
                    vhost::Limits {
                        queues: self.inner.limits.queues_in(name),
                        consumers_per_queue: self.inner.limits.consumers_per_queue,
                    },
                )
            })
            .clone()
    }

    /// Apply recovered definitions in journal order, then restore unsettled messages. Returns the count.
    async fn replay(&self, recovered: Recovered) -> usize {
        for def in recovered.definitions {
            if let Err(e) = self.apply(def) {
                warn!(error = %e, "skipping a recovered definition that no longer applies");
            }
        }
        let mut restored = 0;
        for (key, messages) in recovered.messages {
            let Some(queue) = self.vhost(&key.vhost).and_then(|v| v.queue(&key.name)) else {
                warn!(vhost = %key.vhost, queue = %key.name, count = messages.messages.len(), "messages for a missing queue dropped");
                continue;
            };
            restored += messages.messages.len();
            // Bodies recovery left on disk (`message: None`) stay there: the queue reads them back when needed.
            queue.restore(messages).await;
        }
        restored
    }

    fn apply(&self, def: Definition) -> Result<(), CoreError> {
        let vhost = |name: &str| {
            self.vhost(name)
                .ok_or_else(|| CoreError::not_found(Entity::VHost, name, name))
        };
        match def {
            Definition::VHost { name } => {
                self.add_vhost(&name);
            }
            Definition::DeleteVHost { name } => {
                self.inner
                    .vhosts
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&name);
            }
            Definition::User {
                name,
                password_hash,
                tags,
            } => self.inner.users.put_user(&name, &password_hash, tags),
            Definition::DeleteUser { .. } | Definition::DeletePermission { .. } => {}
            Definition::Permission {
                user,
                vhost,
                configure,
                write,
                read,
            } => {
                self.inner.users.set_permission(
                    &user,
                    &vhost,
                    Permission::new(&configure, &write, &read)?,
                );
            }
            Definition::Exchange {
                vhost: v,
                name,
                kind,
                auto_delete,
                internal,
                arguments,
            } => {
                let spec = ExchangeSpec {
                    name,
                    kind,
                    durable: true,
                    auto_delete,
                    internal,
                    arguments: persist::args_in(&arguments)?,
                };
                vhost(&v)?.declare_exchange(spec, Journal::Replay)?;
            }
            Definition::DeleteExchange { vhost: v, name } => {
                vhost(&v)?.delete_exchange(&name, false, Journal::Replay)?
            }
            Definition::Queue {
                vhost: v,
                name,
                auto_delete,
                arguments,
            } => {
                let arguments = persist::args_in(&arguments)?;
                let v = vhost(&v)?;
                if let Some(q) = v.queue(&name) {
                    // A later definition of a declared queue: its expiry (`set_queue_expires`) or its attributes
                    // (`set_queue_attributes`) changed; each writes both, so this record holds the latest of each.
                    let expires = queue::QueueArgs::parse(&arguments, &name, &v.name)?.expires;
                    q.restore_attributes(&arguments);
                    return v.set_queue_expires(&name, expires, Journal::Replay);
                }
                let spec = QueueSpec {
                    name,
                    durable: true,
                    exclusive_owner: None,
                    auto_delete,
                    arguments,
                };
                v.declare_queue(spec, Journal::Replay)?;
            }
            Definition::DeleteQueue { vhost: v, name } => {
                let v = vhost(&v)?;
                if let Some(q) = v.queue(&name) {
                    v.forget_queue_replay(&q);
                }
            }
            Definition::Bind(b) => {
                let v = vhost(&b.vhost)?;
                let spec = BindingSpec::from_store(&b)?;
                v.change_binding(BindOp::Bind, &spec, Journal::Replay)?;
                if b.arguments.format == Format::Format1 {
                    // The journal identifies a binding by its argument bytes: a later unbind writes them in the
                    // current format, so the format 1 record is replaced by its current form now.
                    self.inner
                        .store
                        .define(&Definition::Unbind(b))
                        .map_err(CoreError::store)?;
                    v.journal_binding(BindOp::Bind, &spec)?;
                }
            }
            Definition::Retained {
                vhost: v,
                key,
                meta,
                body,
            } => {
                let stored = crate::store::StoredMessage {
                    meta,
                    body,
                    priority: 0,
                    expires_at_ms: None,
                    published_at_ms: 0,
                    recover_publish_time: false,
                };
                let mut message = persist::restore(stored)?;
                message.routing_key = key;
                vhost(&v)?.retain(Arc::new(message), Journal::Replay)?;
            }
            Definition::DeleteRetained { vhost: v, key } => {
                let empty = Message {
                    routing_key: key,
                    ..Message::default()
                };
                vhost(&v)?.retain(Arc::new(empty), Journal::Replay)?;
            }
            Definition::Unbind(b) => {
                let spec = BindingSpec::from_store(&b)?;
                vhost(&b.vhost)?.change_binding(BindOp::Unbind, &spec, Journal::Replay)?
            }
        }
        Ok(())
    }

    /// The store behind this broker (health checks read it).
    pub(crate) fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// What the store has synced, for publish confirmations.
    pub fn sync_view(&self) -> publish::SyncView {
        publish::SyncView::new(self.inner.store.sync_state())
    }

    /// Raised while publishers must wait for disk space.
    pub fn disk_alarm(&self) -> tokio::sync::watch::Receiver<bool> {
        self.inner.store.blocked()
    }

    /// The memory gauge (alarm and usage).
    pub fn memory(&self) -> &MemoryGauge {
        &self.inner.memory
    }

    /// A new connection's ledger in the memory gauge, with the configured cap on its content.
    pub fn client_memory(&self) -> ClientMemory {
        ClientMemory::new(
            self.inner.memory.clone(),
            self.inner.connection_memory_limit,
        )
    }

    /// Look up a vhost.
    pub(crate) fn vhost(&self, name: &str) -> Option<Arc<VHost>> {
        self.inner
            .vhosts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// The counts of a queue (management, tests).
    pub async fn queue_stats(&self, vhost: &str, queue: &str) -> Result<QueueStats, CoreError> {
        self.vhost(vhost)
            .and_then(|v| v.queue(queue))
            .ok_or_else(|| CoreError::not_found(Entity::Queue, vhost, queue))?
            .stats()
            .await
    }

    /// Log in a user whose identity was proven outside the broker's passwords (a verified TLS client
    /// certificate: SASL EXTERNAL): the user must exist, and the loopback restriction still applies.
    pub fn authenticate_external(&self, user: &str, peer: IpAddr) -> Result<Arc<User>, CoreError> {
        self.inner.users.authenticate_external(user, peer)
    }

    /// Check credentials.
    pub fn authenticate(
        &self,
        user: &str,
        password: &str,
        peer: IpAddr,
    ) -> Result<Arc<User>, CoreError> {
        self.inner.users.authenticate(user, password, peer)
    }

    /// Open a session of `user` in `vhost` for connection `conn` (RabbitMQ: 530 NOT_ALLOWED when refused).
    pub fn open_session(
        &self,
        user: Arc<User>,
        vhost: &str,
        conn: ConnId,
    ) -> Result<Session, CoreError> {
        let refused = || {
            CoreError::NotAllowed(format!(
                "access to vhost '{vhost}' refused for user '{}'",
                user.name
            ))
        };
        let v = self
            .vhost(vhost)
            .ok_or_else(|| CoreError::NotAllowed(format!("vhost {vhost} not found")))?;
        let permission = self
            .inner
            .users
            .permission(&user.name, vhost)
            .ok_or_else(refused)?;
        Ok(Session::new(v, user, permission, conn))
    }

    /// A session with every permission on `vhost` as user `name`, for a front end that authenticates requests
    /// itself (the AWS APIs verify SigV4 signatures against their own keys). The user is not a login: it exists
    /// only in this session, for error texts and logs.
    pub fn trusted_session(&self, name: &str, vhost: &str) -> Result<Session, CoreError> {
        let v = self
            .vhost(vhost)
            .ok_or_else(|| CoreError::NotAllowed(format!("vhost {vhost} not found")))?;
        let user = Arc::new(User::internal(name));
        let conn = self.next_conn_id();
        Ok(Session::new(v, user, Arc::new(Permission::all()), conn))
    }

    /// A fresh connection id.
    pub fn next_conn_id(&self) -> ConnId {
        self.inner.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// A fresh consumer key.
    pub fn next_consumer_key(&self) -> ConsumerKey {
        self.inner.next_consumer.fetch_add(1, Ordering::Relaxed)
    }

    /// Stop queue actors and close the store (flushes what is pending).
    pub async fn shutdown(&self) {
        self.inner.store.close();
    }
}
