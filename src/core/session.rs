//! A session is one authenticated user in one vhost on one connection: every operation a front end performs
//! goes through it, so permission checks, exclusive-queue ownership and RabbitMQ's error texts live in one
//! place whatever the protocol.

use std::sync::Arc;
use std::time::Duration;

use ferrymq_amqp_codec::FieldTable;
use tokio::sync::oneshot;

use super::CoreError;
use super::auth::{Access, Permission, User};
use super::exchange::Exchange;
use super::message::Message;
use super::queue::{ConnId, ConsumerSpec, Delivery, Enqueued, Overflow, QueueHandle, QueueStats};
use super::vhost::{ExchangeSpec, Journal, QueueSpec, VHost};
use crate::store::{DestinationKind, SyncPoint};

/// Outcome of a publish.
#[derive(Debug)]
pub struct Published {
    /// Whether at least one queue received the message (else: basic.return when mandatory).
    pub routed: bool,
    /// The store point to wait for before confirming (persistent message in a durable queue).
    pub sync: Option<SyncPoint>,
    /// Queues that may refuse the message (x-overflow reject-publish): all must accept for an ack.
    pub outcomes: Vec<oneshot::Receiver<Enqueued>>,
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct Session {
    vhost: Arc<VHost>,
    user: Arc<User>,
    permission: Arc<Permission>,
    conn: ConnId,
}

impl Session {
    pub(crate) fn new(
        vhost: Arc<VHost>,
        user: Arc<User>,
        permission: Arc<Permission>,
        conn: ConnId,
    ) -> Self {
        Self {
            vhost,
            user,
            permission,
            conn,
        }
    }

    pub fn vhost(&self) -> &Arc<VHost> {
        &self.vhost
    }

    pub fn user(&self) -> &User {
        &self.user
    }

    pub fn conn(&self) -> ConnId {
        self.conn
    }

    fn check(&self, access: Access, kind: &str, name: &str) -> Result<(), CoreError> {
        self.permission
            .check(access, kind, name, &self.vhost.name, &self.user.name)
    }

    /// A queue this connection may use (exists, not another connection's exclusive queue).
    pub fn usable_queue(&self, name: &str) -> Result<QueueHandle, CoreError> {
        let q = self.vhost.existing_queue(name)?;
        self.vhost.check_exclusive_access(&q, Some(self.conn))?;
        Ok(q)
    }

    // ---- exchanges ----

    /// exchange.declare (passive: only check that it exists).
    pub fn declare_exchange(&self, spec: ExchangeSpec, passive: bool) -> Result<(), CoreError> {
        if passive {
            return self.vhost.existing_exchange(&spec.name).map(|_| ());
        }
        self.check(Access::Configure, "exchange", &spec.name)?;
        if let Some(ae) = spec
            .arguments
            .get("alternate-exchange")
            .and_then(|v| v.as_str())
        {
            self.check(Access::Write, "exchange", ae)?;
        }
        self.vhost.declare_exchange(spec, Journal::Write)
    }

    /// exchange.delete
    pub fn delete_exchange(&self, name: &str, if_unused: bool) -> Result<(), CoreError> {
        self.check(Access::Configure, "exchange", name)?;
        self.vhost.delete_exchange(name, if_unused, Journal::Write)
    }

    /// exchange.bind / queue.bind (and unbind with `bind = false`).
    pub fn bind(
        &self,
        source: &str,
        destination: &str,
        kind: DestinationKind,
        routing_key: &str,
        arguments: &FieldTable,
        op: BindOp,
    ) -> Result<(), CoreError> {
        let dest_kind = match kind {
            DestinationKind::Queue => "queue",
            DestinationKind::Exchange => "exchange",
        };
        if kind == DestinationKind::Queue {
            self.usable_queue(destination)?;
        }
        self.check(Access::Write, dest_kind, destination)?;
        self.check(Access::Read, "exchange", source)?;
        let binding = self
            .vhost
            .binding(source, destination, kind, routing_key, arguments);
        self.vhost.change_binding(op, &binding, Journal::Write)
    }

    // ---- queues ----

    /// queue.declare: returns the queue and its counts. `exclusive` ties it to this connection.
    pub async fn declare_queue(
        &self,
        name: &str,
        durable: bool,
        exclusive: bool,
        auto_delete: bool,
        arguments: FieldTable,
        passive: bool,
    ) -> Result<(QueueHandle, QueueStats), CoreError> {
        if passive {
            let q = self.usable_queue(name)?;
            let stats = q.stats().await?;
            return Ok((q, stats));
        }
        let name = if name.is_empty() {
            generated_name()
        } else {
            name.to_owned()
        };
        if name.starts_with("amq.")
            && self.vhost.queue(&name).is_none()
            && !name.starts_with("amq.gen-")
        {
            return Err(CoreError::AccessRefused(format!(
                "queue name '{name}' contains reserved prefix 'amq.*'"
            )));
        }
        self.check(Access::Configure, "queue", &name)?;
        if let Some(dlx) = arguments
            .get("x-dead-letter-exchange")
            .and_then(|v| v.as_str())
        {
            self.check(Access::Write, "exchange", dlx)?;
            self.check(Access::Read, "queue", &name)?;
        }
        let spec = QueueSpec {
            name,
            durable,
            exclusive_owner: exclusive.then_some(self.conn),
            auto_delete,
            arguments,
        };
        let (q, _) = self.vhost.declare_queue(spec, Journal::Write)?;
        let stats = q.stats().await?;
        Ok((q, stats))
    }

    /// A broker-named private queue of this connection (exclusive, auto-delete, reserved `amq.` name), such as
    /// the one behind RabbitMQ's direct reply-to.
    pub fn declare_private_queue(&self, name: &str) -> Result<QueueHandle, CoreError> {
        let spec = QueueSpec {
            name: name.to_owned(),
            durable: false,
            exclusive_owner: Some(self.conn),
            auto_delete: true,
            arguments: FieldTable::default(),
        };
        Ok(self.vhost.declare_queue(spec, Journal::Write)?.0)
    }

    /// queue.purge
    pub async fn purge_queue(&self, name: &str) -> Result<u32, CoreError> {
        let q = self.usable_queue(name)?;
        self.check(Access::Read, "queue", name)?;
        q.purge().await
    }

    /// queue.delete
    pub async fn delete_queue(
        &self,
        name: &str,
        if_unused: bool,
        if_empty: bool,
    ) -> Result<u32, CoreError> {
        self.check(Access::Configure, "queue", name)?;
        let Some(queue) = self.vhost.queue(name) else {
            return Ok(0); // RabbitMQ 3.x: deleting a missing queue is delete-ok with 0 messages
        };
        self.vhost.check_exclusive_access(&queue, Some(self.conn))?;
        self.vhost.delete_queue(name, if_unused, if_empty).await
    }

    // ---- messages ----

    /// Check a publish before routing: exchange exists, may be written, is not internal; properties valid.
    ///
    /// `cache` holds the exchange the previous publish on the same channel went to: reused while it has the
    /// same name and has not been deleted, so a steady publisher skips the vhost's map and lock.
    pub fn check_publish(
        &self,
        exchange: &str,
        message: &Message,
        cache: &mut Option<Arc<Exchange>>,
    ) -> Result<Arc<Exchange>, CoreError> {
        let ex = match cache.take() {
            Some(ex) if ex.name == exchange && !ex.is_deleted() => ex,
            _ => self.vhost.existing_exchange(exchange)?,
        };
        *cache = Some(ex.clone());
        self.check(Access::Write, "exchange", exchange)?;
        if ex.internal {
            return Err(CoreError::AccessRefused(format!(
                "cannot publish to internal exchange '{exchange}' in vhost '{}'",
                self.vhost.name
            )));
        }
        if let Some(expiration) = &message.properties.expiration
            && expiration.parse::<u64>().is_err()
        {
            return Err(CoreError::PreconditionFailed(format!(
                "invalid expiration '{expiration}'"
            )));
        }
        if let Some(user_id) = &message.properties.user_id
            && *user_id != self.user.name
        {
            return Err(CoreError::PreconditionFailed(format!(
                "user_id property set to '{user_id}' but authenticated user was '{}'",
                self.user.name
            )));
        }
        Ok(ex)
    }

    /// Route and enqueue a message (after [`Session::check_publish`]). BCC is stripped before enqueueing.
    ///
    /// `cache` keeps the last routing result of the caller's channel: reused for the same exchange and routing
    /// key while the vhost's topology is unchanged (only for messages without headers, whose routing depends on
    /// nothing else).
    pub async fn publish(
        &self,
        exchange: &Arc<Exchange>,
        mut message: Message,
        want_outcomes: bool,
        cache: &mut Option<RouteCache>,
    ) -> Result<Published, CoreError> {
        let targets = self.route(exchange, &message, cache);
        if targets.is_empty() {
            return Ok(Published {
                routed: false,
                sync: None,
                outcomes: Vec::new(),
            });
        }
        if let Some(h) = message.properties.headers.as_mut() {
            h.remove("BCC");
        }
        let persisted = self.vhost.persist(&message, &targets)?;
        let message = Arc::new(message);
        let mut outcomes = Vec::new();
        for q in &targets {
            let id = if q.durable {
                persisted.map(|(id, _)| id)
            } else {
                None
            };
            let ask = want_outcomes
                && q.args.overflow != Overflow::DropHead
                && (q.args.max_length.is_some() || q.args.max_length_bytes.is_some());
            if let Some(rx) = q.publish(message.clone(), id, ask).await {
                outcomes.push(rx);
            }
        }
        Ok(Published {
            routed: true,
            sync: persisted.map(|(_, p)| p),
            outcomes,
        })
    }

    fn route(
        &self,
        exchange: &Arc<Exchange>,
        message: &Message,
        cache: &mut Option<RouteCache>,
    ) -> Vec<QueueHandle> {
        // Headers can change the result anywhere along the way (headers exchanges, also behind
        // exchange-to-exchange bindings or an alternate exchange; CC/BCC): only header-less messages use it.
        let cacheable = message
            .properties
            .headers
            .as_ref()
            .is_none_or(|h| h.is_empty());
        if !cacheable {
            return self.vhost.route_via(exchange, message);
        }
        let generation = self.vhost.topology();
        if let Some(c) = cache.as_ref()
            && c.generation == generation
            && Arc::ptr_eq(&c.exchange, exchange)
            && c.routing_key == message.routing_key
        {
            return c.targets.clone();
        }
        let targets = self.vhost.route_via(exchange, message);
        *cache = Some(RouteCache {
            exchange: exchange.clone(),
            routing_key: message.routing_key.clone(),
            generation,
            targets: targets.clone(),
        });
        targets
    }

    /// basic.consume: register a consumer on a queue.
    pub async fn consume(&self, queue: &str, spec: ConsumerSpec) -> Result<QueueHandle, CoreError> {
        let q = self.usable_queue(queue)?;
        self.check(Access::Read, "queue", queue)?;
        q.consume(spec).await?;
        Ok(q)
    }

    /// basic.get, optionally with a lease (SQS visibility).
    pub async fn get(
        &self,
        queue: &str,
        no_ack: bool,
        lease: Option<Duration>,
    ) -> Result<Option<Delivery>, CoreError> {
        let q = self.usable_queue(queue)?;
        self.check(Access::Read, "queue", queue)?;
        q.get(no_ack, lease).await
    }

    /// The connection closed: its exclusive queues go.
    pub async fn close(&self) {
        self.vhost.drop_exclusive(self.conn).await;
    }
}

/// The last routing result of one publisher (see [`Session::publish`]).
#[derive(Debug)]
pub struct RouteCache {
    exchange: Arc<Exchange>,
    routing_key: String,
    generation: u64,
    targets: Vec<QueueHandle>,
}

/// Bind or unbind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindOp {
    Bind,
    Unbind,
}

/// `amq.gen-` + 22 URL-safe characters, like RabbitMQ's server-named queues.
fn generated_name() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut rng = rand::rng();
    let suffix: String = (0..22)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("amq.gen-{suffix}")
}
