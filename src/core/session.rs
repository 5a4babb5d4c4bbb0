//! A session is one authenticated user in one vhost on one connection: every operation a front end performs
//! goes through it, so permission checks, exclusive-queue ownership and RabbitMQ's error texts live in one
//! place whatever the protocol.

use std::sync::Arc;
use std::time::Duration;

use super::CoreError;
use super::auth::{Permission, User};
use super::error::{Access, Entity};
use super::message::{Headers, Message, Value};
use super::publish::{Outcome, Settling};
use super::queue::{
    ConnId, ConsumerSpec, Delivery, QueueHandle, QueueStats, ReceiveRequest, Received,
};
use super::vhost::{BindOp, BindingSpec, ExchangeSpec, Journal, QueueSpec, VHost};
use crate::store::DestinationKind;

/// Whether a queue survives a broker restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    Durable,
    #[default]
    Transient,
}

/// Whether a queue belongs to the declaring connection (deleted when it closes, unusable by others).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ownership {
    #[default]
    Shared,
    Exclusive,
}

/// Whether a queue deletes itself once its last consumer is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AutoDelete {
    #[default]
    Never,
    WhenUnused,
}

/// How to declare a queue: the typed flags, and arguments (`x-*`, parsed and validated once by the declare).
#[derive(Debug, Clone, Default)]
pub struct QueueOptions {
    pub durability: Durability,
    pub ownership: Ownership,
    pub auto_delete: AutoDelete,
    pub arguments: Headers,
}

impl QueueOptions {
    /// Sets an argument (`x-expires`, `x-max-length`, ...), replacing an earlier value.
    pub fn with_argument(mut self, key: &str, value: Value) -> Self {
        self.arguments.set(key, value);
        self
    }

    /// Options from the three AMQP-style flags (tests).
    #[cfg(test)]
    pub(crate) fn flags(durable: bool, exclusive: bool, auto_delete: bool) -> Self {
        Self {
            durability: if durable {
                Durability::Durable
            } else {
                Durability::Transient
            },
            ownership: if exclusive {
                Ownership::Exclusive
            } else {
                Ownership::Shared
            },
            auto_delete: if auto_delete {
                AutoDelete::WhenUnused
            } else {
                AutoDelete::Never
            },
            arguments: Headers::new(),
        }
    }

    /// The queue is deleted after being unused for `after` (`x-expires`).
    pub fn expires(self, after: Duration) -> Self {
        let ms = i64::try_from(after.as_millis()).unwrap_or(i64::MAX);
        self.with_argument("x-expires", Value::I64(ms))
    }
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

    pub(crate) fn vhost(&self) -> &Arc<VHost> {
        &self.vhost
    }

    pub fn user(&self) -> &User {
        &self.user
    }

    pub fn conn(&self) -> ConnId {
        self.conn
    }

    pub(crate) fn check(&self, access: Access, kind: Entity, name: &str) -> Result<(), CoreError> {
        self.permission
            .check(access, kind, name, &self.vhost.name, &self.user.name)
    }

    /// Topic permission: `access` to routing key `key` on `exchange` (see `core::auth`).
    pub(crate) fn check_topic(
        &self,
        access: Access,
        exchange: &str,
        key: &str,
    ) -> Result<(), CoreError> {
        self.permission
            .check_topic(access, exchange, key, &self.vhost.name, &self.user.name)
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
        self.check(Access::Configure, Entity::Exchange, &spec.name)?;
        if let Some(ae) = spec
            .arguments
            .get("alternate-exchange")
            .and_then(|v| v.as_str())
        {
            self.check(Access::Write, Entity::Exchange, ae)?;
        }
        self.vhost.declare_exchange(spec, Journal::Write)
    }

    /// exchange.delete
    pub fn delete_exchange(&self, name: &str, if_unused: bool) -> Result<(), CoreError> {
        self.check(Access::Configure, Entity::Exchange, name)?;
        self.vhost.delete_exchange(name, if_unused, Journal::Write)
    }

    /// exchange.bind / queue.bind (and unbind with `bind = false`).
    pub fn bind(&self, binding: &BindingSpec, op: BindOp) -> Result<(), CoreError> {
        let (destination, kind) = (&binding.destination, binding.destination_kind);
        let dest_kind = match kind {
            DestinationKind::Queue => Entity::Queue,
            DestinationKind::Exchange => Entity::Exchange,
        };
        if kind == DestinationKind::Queue {
            self.usable_queue(destination)?;
        }
        self.check(Access::Write, dest_kind, destination)?;
        self.check(Access::Read, Entity::Exchange, &binding.source)?;
        self.check_topic(Access::Read, &binding.source, &binding.routing_key)?;
        self.vhost.change_binding(op, binding, Journal::Write)
    }

    // ---- queues ----

    /// A queue this connection may use, with its counts (AMQP passive declare, SQS GetQueueUrl).
    pub async fn queue_exists(&self, name: &str) -> Result<(QueueHandle, QueueStats), CoreError> {
        let q = self.usable_queue(name)?;
        let stats = q.stats().await?;
        Ok((q, stats))
    }

    /// Declares a queue (or finds an equivalent one): returns it and its counts. An empty name gets a
    /// broker-generated one (`amq.gen-...`).
    pub async fn declare_queue(
        &self,
        name: &str,
        options: QueueOptions,
    ) -> Result<(QueueHandle, QueueStats), CoreError> {
        let QueueOptions {
            durability,
            ownership,
            auto_delete,
            arguments,
        } = options;
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
        self.check(Access::Configure, Entity::Queue, &name)?;
        if let Some(dlx) = arguments
            .get("x-dead-letter-exchange")
            .and_then(|v| v.as_str())
        {
            self.check(Access::Write, Entity::Exchange, dlx)?;
            self.check(Access::Read, Entity::Queue, &name)?;
        }
        let spec = QueueSpec {
            name,
            durable: durability == Durability::Durable,
            exclusive_owner: (ownership == Ownership::Exclusive).then_some(self.conn),
            auto_delete: auto_delete == AutoDelete::WhenUnused,
            arguments,
        };
        // A delete racing the declare may stop the queue before its counts are read: declare it again then.
        for _ in 0..3 {
            let (q, _) = self.vhost.declare_queue(spec.clone(), Journal::Write)?;
            match q.stats().await {
                Err(CoreError::NotFound { .. }) if q.is_deleted() => continue,
                stats => return Ok((q, stats?)),
            }
        }
        let (q, _) = self.vhost.declare_queue(spec, Journal::Write)?;
        let stats = q.stats().await?;
        Ok((q, stats))
    }

    /// Changes how long the queue `name` may stay unused before it deletes itself (`x-expires`; `None`:
    /// never), as an MQTT session's expiry interval changes on reconnect or DISCONNECT. Needs configure
    /// permission, as a declare.
    pub fn set_queue_expires(
        &self,
        name: &str,
        expires: Option<Duration>,
    ) -> Result<(), CoreError> {
        self.usable_queue(name)?;
        self.check(Access::Configure, Entity::Queue, name)?;
        self.vhost.set_queue_expires(name, expires, Journal::Write)
    }

    /// Moves by `delta_ms` the expiry deadline of every message of queue `name` whose deadline is before
    /// `before_ms` (ms since the epoch): with a fixed time to live, the messages published before a time, so a
    /// front end whose retention changes (SQS MessageRetentionPeriod) applies the change to the messages
    /// already queued. A lengthening is journaled and holds across a restart; a shortening is in memory only.
    pub fn shift_queue_deadlines(
        &self,
        name: &str,
        before_ms: u64,
        delta_ms: i64,
    ) -> Result<(), CoreError> {
        self.usable_queue(name)?;
        self.check(Access::Configure, Entity::Queue, name)?;
        self.vhost.shift_queue_deadlines(name, before_ms, delta_ms)
    }

    /// A broker-named private queue of this connection (exclusive, auto-delete, reserved `amq.` name), such as
    /// the one behind RabbitMQ's direct reply-to.
    pub fn declare_private_queue(&self, name: &str) -> Result<QueueHandle, CoreError> {
        let spec = QueueSpec {
            name: name.to_owned(),
            durable: false,
            exclusive_owner: Some(self.conn),
            auto_delete: true,
            arguments: Headers::default(),
        };
        Ok(self.vhost.declare_queue(spec, Journal::Write)?.0)
    }

    /// The names of the queues every connection may use (not exclusive ones), in no particular order.
    pub fn queue_names(&self) -> Vec<String> {
        self.vhost
            .queues()
            .into_iter()
            .filter(|q| q.exclusive_owner.is_none() && !q.is_deleted())
            .map(|q| q.name.clone())
            .collect()
    }

    /// Replaces the attributes a front end keeps with a queue (SQS queue attributes and tags); durable queues
    /// keep them across a restart. Read them with [`QueueHandle::attributes`].
    pub fn set_queue_attributes(&self, name: &str, attributes: Headers) -> Result<(), CoreError> {
        let q = self.usable_queue(name)?;
        self.check(Access::Configure, Entity::Queue, name)?;
        self.vhost.set_queue_attributes(&q, attributes)
    }

    /// Leased receive (SQS ReceiveMessage): see [`QueueHandle::receive`].
    pub async fn receive(
        &self,
        queue: &str,
        request: ReceiveRequest,
    ) -> Result<Vec<Received>, CoreError> {
        let q = self.usable_queue(queue)?;
        self.check(Access::Read, Entity::Queue, queue)?;
        q.receive(request).await
    }

    /// queue.purge
    pub async fn purge_queue(&self, name: &str) -> Result<u32, CoreError> {
        let q = self.usable_queue(name)?;
        self.check(Access::Read, Entity::Queue, name)?;
        q.purge().await
    }

    /// queue.delete
    pub async fn delete_queue(
        &self,
        name: &str,
        if_unused: bool,
        if_empty: bool,
    ) -> Result<u32, CoreError> {
        self.check(Access::Configure, Entity::Queue, name)?;
        let Some(queue) = self.vhost.queue(name) else {
            return Ok(0); // RabbitMQ 3.x: deleting a missing queue is delete-ok with 0 messages
        };
        self.vhost.check_exclusive_access(&queue, Some(self.conn))?;
        self.vhost.delete_queue(name, if_unused, if_empty).await
    }

    // ---- messages ----

    /// basic.consume: register a consumer on a queue.
    pub async fn consume(&self, queue: &str, spec: ConsumerSpec) -> Result<QueueHandle, CoreError> {
        let q = self.usable_queue(queue)?;
        self.check(Access::Read, Entity::Queue, queue)?;
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
        self.check(Access::Read, Entity::Queue, queue)?;
        q.get(no_ack, lease).await
    }

    /// The bindings to the queue `name` (an MQTT persistent session's subscriptions).
    pub fn queue_bindings(&self, name: &str) -> Result<Vec<BindingSpec>, CoreError> {
        let q = self.usable_queue(name)?;
        Ok(self.vhost.bindings_to_queue(&q))
    }

    /// Retains `message` under its routing key, or clears the key when the body is empty (MQTT retain,
    /// `core::retained`); needs write permission on its exchange, as a publish. The change is journaled: the
    /// [`Settling`] says when it is on disk.
    pub fn retain(&self, message: Arc<Message>) -> Result<Settling, CoreError> {
        self.check(Access::Write, Entity::Exchange, &message.exchange)?;
        self.check_topic(Access::Write, &message.exchange, &message.routing_key)?;
        let point = self.vhost.retain(message, Journal::Write)?;
        Ok(point.map_or(Settling::Done(Outcome::Accepted), Settling::AfterSync))
    }

    /// The retained messages whose routing key `pattern` matches; needs read permission on `exchange`, as a
    /// binding from it.
    pub fn retained(&self, exchange: &str, pattern: &str) -> Result<Vec<Arc<Message>>, CoreError> {
        self.check(Access::Read, Entity::Exchange, exchange)?;
        self.check_topic(Access::Read, exchange, pattern)?;
        Ok(self.vhost.retained_matching(pattern))
    }

    /// The connection closed: its exclusive queues go.
    pub async fn close(&self) {
        self.vhost.drop_exclusive(self.conn).await;
    }
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
