//! Every method of AMQP 0-9-1 and RabbitMQ's extensions, and their argument encoding (spec §4.2.4).
//!
//! A method frame's payload is class id, method id, then the arguments in the order of the XML reference
//! (§1.4 connection, §1.5 channel, §1.6 exchange, §1.7 queue, §1.8 basic, §1.9 tx; confirm, exchange.bind,
//! basic.nack and connection.blocked/update-secret from RabbitMQ's extended spec). Each method with
//! arguments has a struct of the same name; field-less methods are unit variants of [`Method`]. Reserved
//! arguments (`ticket`, `reserved-1`, ...) are not in the structs: they are written as zero / empty and
//! skipped on read. One table at the bottom of this file (the `methods!` invocation) lists each method's ids
//! and argument layout, and both encoding and decoding are generated from it, so they cannot disagree.
//! This module knows nothing about frames or channels.

use bytes::{BufMut, Bytes, BytesMut};

use crate::CodecError;
use crate::table::{FieldTable, ShortStr};
use crate::wire::{ArgReader, ArgWriter, SliceReader, get_u16};

/// Class ids (XML reference §1.3, "Class and Method ID Summaries").
pub mod class {
    /// connection (XML reference §1.4).
    pub const CONNECTION: u16 = 10;
    /// channel (XML reference §1.5).
    pub const CHANNEL: u16 = 20;
    /// exchange (XML reference §1.6).
    pub const EXCHANGE: u16 = 40;
    /// queue (XML reference §1.7).
    pub const QUEUE: u16 = 50;
    /// basic (XML reference §1.8); the only class with content, so content headers carry this id.
    pub const BASIC: u16 = 60;
    /// confirm (RabbitMQ extension: publisher confirms).
    pub const CONFIRM: u16 = 85;
    /// tx (XML reference §1.9).
    pub const TX: u16 = 90;
}

// ---------------------------------------------------------------------------------------------------------
// connection (XML reference §1.4)

/// connection.start (XML reference §1.4): the server proposes a protocol version, its properties, and the
/// SASL mechanisms and locales it supports (both space-separated lists).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConnectionStart {
    /// Protocol major version the server speaks (0).
    pub version_major: u8,
    /// Protocol minor version the server speaks (9).
    pub version_minor: u8,
    /// Server properties: product, version, platform, capabilities table, ...
    pub server_properties: FieldTable,
    /// Space-separated SASL mechanisms, e.g. `PLAIN AMQPLAIN`.
    pub mechanisms: Bytes,
    /// Space-separated message locales, e.g. `en_US`.
    pub locales: Bytes,
}

/// connection.start-ok (XML reference §1.4): the client picks a mechanism and locale and sends its first
/// SASL response.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConnectionStartOk {
    /// Client properties: product, version, platform, capabilities table, connection_name, ...
    pub client_properties: FieldTable,
    /// The chosen SASL mechanism.
    pub mechanism: ShortStr,
    /// The SASL response (for PLAIN: `\0user\0password`).
    pub response: Bytes,
    /// The chosen locale.
    pub locale: ShortStr,
}

/// connection.secure (XML reference §1.4): a SASL challenge from the server.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConnectionSecure {
    /// Mechanism-specific challenge data.
    pub challenge: Bytes,
}

/// connection.secure-ok (XML reference §1.4): the client's answer to a SASL challenge.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConnectionSecureOk {
    /// Mechanism-specific response data.
    pub response: Bytes,
}

/// connection.tune (XML reference §1.4): the server proposes connection limits.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConnectionTune {
    /// Highest channel number allowed (0 = no limit).
    pub channel_max: u16,
    /// Largest frame size in bytes, framing included (0 = no limit; at least `FRAME_MIN_SIZE` otherwise).
    pub frame_max: u32,
    /// Desired heartbeat interval in seconds (0 = none).
    pub heartbeat: u16,
}

/// connection.tune-ok (XML reference §1.4): the limits the client accepts (each at most the server's).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConnectionTuneOk {
    /// Highest channel number the client will use (0 = no limit).
    pub channel_max: u16,
    /// Largest frame size in bytes, framing included (0 = no limit).
    pub frame_max: u32,
    /// Heartbeat interval in seconds (0 = none).
    pub heartbeat: u16,
}

/// connection.open (XML reference §1.4): the client opens a virtual host. The reserved `capabilities`
/// shortstr and `insist` bit are written empty / false.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConnectionOpen {
    /// Virtual host name, e.g. `/`.
    pub virtual_host: ShortStr,
}

/// connection.close (XML reference §1.4), and the shape of channel.close: why a peer is closing, and which
/// method (if any) caused it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConnectionClose {
    /// Reply code (see [`crate::reply_code`]).
    pub reply_code: u16,
    /// Human-readable reason, e.g. `NOT_FOUND - no queue 'q'`.
    pub reply_text: ShortStr,
    /// Class id of the failing method, or 0.
    pub class_id: u16,
    /// Method id of the failing method, or 0.
    pub method_id: u16,
}

/// connection.blocked (RabbitMQ extension): the server stopped reading publishes (resource alarm).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConnectionBlocked {
    /// Why the connection is blocked, e.g. `low on memory`.
    pub reason: ShortStr,
}

/// connection.update-secret (RabbitMQ extension): the client replaces its credential (e.g. an expiring
/// OAuth token) without reconnecting.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConnectionUpdateSecret {
    /// The new secret.
    pub new_secret: Bytes,
    /// Why it is being updated.
    pub reason: ShortStr,
}

// ---------------------------------------------------------------------------------------------------------
// channel (XML reference §1.5)

/// channel.flow (XML reference §1.5): ask the peer to pause (`false`) or resume (`true`) content.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChannelFlow {
    /// True to start sending content, false to stop.
    pub active: bool,
}

/// channel.flow-ok (XML reference §1.5): confirms the flow state now in effect.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChannelFlowOk {
    /// The flow state now in effect.
    pub active: bool,
}

/// channel.close (XML reference §1.5): why a peer is closing the channel, and which method caused it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChannelClose {
    /// Reply code (see [`crate::reply_code`]).
    pub reply_code: u16,
    /// Human-readable reason.
    pub reply_text: ShortStr,
    /// Class id of the failing method, or 0.
    pub class_id: u16,
    /// Method id of the failing method, or 0.
    pub method_id: u16,
}

// ---------------------------------------------------------------------------------------------------------
// exchange (XML reference §1.6; bind/unbind are RabbitMQ extensions)

/// exchange.declare (XML reference §1.6). `auto_delete` and `internal` are reserved bits in the 0-9-1 XML;
/// RabbitMQ un-deprecated them and every client sends them with these meanings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExchangeDeclare {
    /// Exchange name.
    pub exchange: ShortStr,
    /// Exchange type (`type`): `direct`, `fanout`, `topic`, `headers`, ...
    pub kind: ShortStr,
    /// Only check that the exchange exists (and is equivalent).
    pub passive: bool,
    /// Survive a broker restart.
    pub durable: bool,
    /// Delete when the last binding is removed.
    pub auto_delete: bool,
    /// Clients may not publish to it directly.
    pub internal: bool,
    /// Do not send declare-ok.
    pub no_wait: bool,
    /// Extra arguments, e.g. `alternate-exchange`.
    pub arguments: FieldTable,
}

/// exchange.delete (XML reference §1.6).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExchangeDelete {
    /// Exchange name.
    pub exchange: ShortStr,
    /// Only delete if it has no bindings.
    pub if_unused: bool,
    /// Do not send delete-ok.
    pub no_wait: bool,
}

/// exchange.bind (RabbitMQ extension): bind exchange `destination` to exchange `source`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExchangeBind {
    /// The exchange that receives messages.
    pub destination: ShortStr,
    /// The exchange messages are routed from.
    pub source: ShortStr,
    /// Binding key.
    pub routing_key: ShortStr,
    /// Do not send bind-ok.
    pub no_wait: bool,
    /// Binding arguments (headers exchanges match on these).
    pub arguments: FieldTable,
}

/// exchange.unbind (RabbitMQ extension): remove an exchange-to-exchange binding.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExchangeUnbind {
    /// The exchange that received messages.
    pub destination: ShortStr,
    /// The exchange messages were routed from.
    pub source: ShortStr,
    /// Binding key.
    pub routing_key: ShortStr,
    /// Do not send unbind-ok.
    pub no_wait: bool,
    /// Binding arguments.
    pub arguments: FieldTable,
}

// ---------------------------------------------------------------------------------------------------------
// queue (XML reference §1.7)

/// queue.declare (XML reference §1.7). An empty name asks the server to generate one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueDeclare {
    /// Queue name, or empty for a server-named queue.
    pub queue: ShortStr,
    /// Only check that the queue exists (and is equivalent).
    pub passive: bool,
    /// Survive a broker restart.
    pub durable: bool,
    /// Owned by this connection; deleted when it closes.
    pub exclusive: bool,
    /// Delete when the last consumer cancels.
    pub auto_delete: bool,
    /// Do not send declare-ok.
    pub no_wait: bool,
    /// Queue arguments: `x-message-ttl`, `x-dead-letter-exchange`, `x-max-length`, ...
    pub arguments: FieldTable,
}

/// queue.declare-ok (XML reference §1.7).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueDeclareOk {
    /// The queue's name (generated if the declare named none).
    pub queue: ShortStr,
    /// Messages ready in the queue.
    pub message_count: u32,
    /// Active consumers on the queue.
    pub consumer_count: u32,
}

/// queue.bind (XML reference §1.7): route messages from `exchange` to `queue`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueBind {
    /// Queue name (empty = the channel's last declared queue).
    pub queue: ShortStr,
    /// Exchange name.
    pub exchange: ShortStr,
    /// Binding key.
    pub routing_key: ShortStr,
    /// Do not send bind-ok.
    pub no_wait: bool,
    /// Binding arguments (headers exchanges match on these).
    pub arguments: FieldTable,
}

/// queue.unbind (XML reference §1.7). There is no no-wait flag.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueUnbind {
    /// Queue name.
    pub queue: ShortStr,
    /// Exchange name.
    pub exchange: ShortStr,
    /// Binding key.
    pub routing_key: ShortStr,
    /// Binding arguments.
    pub arguments: FieldTable,
}

/// queue.purge (XML reference §1.7): remove all ready messages.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueuePurge {
    /// Queue name.
    pub queue: ShortStr,
    /// Do not send purge-ok.
    pub no_wait: bool,
}

/// queue.purge-ok (XML reference §1.7).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueuePurgeOk {
    /// Messages purged.
    pub message_count: u32,
}

/// queue.delete (XML reference §1.7).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueDelete {
    /// Queue name.
    pub queue: ShortStr,
    /// Only delete if it has no consumers.
    pub if_unused: bool,
    /// Only delete if it has no messages.
    pub if_empty: bool,
    /// Do not send delete-ok.
    pub no_wait: bool,
}

/// queue.delete-ok (XML reference §1.7).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueDeleteOk {
    /// Messages deleted with the queue.
    pub message_count: u32,
}

// ---------------------------------------------------------------------------------------------------------
// basic (XML reference §1.8; nack is a RabbitMQ extension)

/// basic.qos (XML reference §1.8): prefetch limits for this channel's consumers (RabbitMQ: `global` =
/// shared across the channel, otherwise per consumer).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BasicQos {
    /// Prefetch window in bytes (0 = no limit; RabbitMQ rejects other values).
    pub prefetch_size: u32,
    /// Prefetch window in messages (0 = no limit).
    pub prefetch_count: u16,
    /// Apply to the whole channel rather than each new consumer.
    pub global: bool,
}

/// basic.consume (XML reference §1.8): start a push consumer on a queue.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BasicConsume {
    /// Queue name.
    pub queue: ShortStr,
    /// Consumer tag, or empty for a server-generated one.
    pub consumer_tag: ShortStr,
    /// Do not deliver messages published on this connection (ignored by RabbitMQ).
    pub no_local: bool,
    /// Deliveries need no acknowledgement.
    pub no_ack: bool,
    /// Be the queue's only consumer.
    pub exclusive: bool,
    /// Do not send consume-ok.
    pub no_wait: bool,
    /// Consumer arguments, e.g. `x-priority`.
    pub arguments: FieldTable,
}

/// basic.consume-ok (XML reference §1.8).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BasicConsumeOk {
    /// The consumer's tag (generated if the consume named none).
    pub consumer_tag: ShortStr,
}

/// basic.cancel (XML reference §1.8): end a consumer. RabbitMQ also sends it to clients when a queue is
/// deleted under a consumer (`consumer_cancel_notify`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BasicCancel {
    /// Consumer tag.
    pub consumer_tag: ShortStr,
    /// Do not send cancel-ok.
    pub no_wait: bool,
}

/// basic.cancel-ok (XML reference §1.8).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BasicCancelOk {
    /// Consumer tag.
    pub consumer_tag: ShortStr,
}

/// basic.publish (XML reference §1.8): publish the content that follows (header + body frames).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BasicPublish {
    /// Exchange name (empty = the default exchange).
    pub exchange: ShortStr,
    /// Routing key.
    pub routing_key: ShortStr,
    /// Return the message (basic.return) if it cannot be routed to any queue.
    pub mandatory: bool,
    /// Return the message if no consumer can take it at once (RabbitMQ: not supported, 540).
    pub immediate: bool,
}

/// basic.return (XML reference §1.8): an unroutable mandatory message, with its content following.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BasicReturn {
    /// Reply code, e.g. 312 NO_ROUTE.
    pub reply_code: u16,
    /// Human-readable reason.
    pub reply_text: ShortStr,
    /// Exchange the message was published to.
    pub exchange: ShortStr,
    /// Routing key it was published with.
    pub routing_key: ShortStr,
}

/// basic.deliver (XML reference §1.8): a message pushed to a consumer, with its content following.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BasicDeliver {
    /// The consumer it is delivered to.
    pub consumer_tag: ShortStr,
    /// Channel-scoped delivery tag, for ack/nack/reject.
    pub delivery_tag: u64,
    /// The message was delivered before and not acknowledged.
    pub redelivered: bool,
    /// Exchange the message was published to.
    pub exchange: ShortStr,
    /// Routing key it was published with.
    pub routing_key: ShortStr,
}

/// basic.get (XML reference §1.8): synchronously fetch one message.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BasicGet {
    /// Queue name.
    pub queue: ShortStr,
    /// The message needs no acknowledgement.
    pub no_ack: bool,
}

/// basic.get-ok (XML reference §1.8): the fetched message, with its content following.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BasicGetOk {
    /// Channel-scoped delivery tag.
    pub delivery_tag: u64,
    /// The message was delivered before and not acknowledged.
    pub redelivered: bool,
    /// Exchange the message was published to.
    pub exchange: ShortStr,
    /// Routing key it was published with.
    pub routing_key: ShortStr,
    /// Messages still ready in the queue.
    pub message_count: u32,
}

/// basic.ack (XML reference §1.8): acknowledge deliveries (client) or confirm publishes (server, in
/// confirm mode).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BasicAck {
    /// Delivery tag (or publish sequence number in confirm mode).
    pub delivery_tag: u64,
    /// Also acknowledge every earlier tag.
    pub multiple: bool,
}

/// basic.reject (XML reference §1.8): reject one delivery.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BasicReject {
    /// Delivery tag.
    pub delivery_tag: u64,
    /// Requeue it rather than discard / dead-letter it.
    pub requeue: bool,
}

/// basic.recover-async (XML reference §1.8, deprecated): redeliver unacknowledged messages, no reply.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BasicRecoverAsync {
    /// Requeue rather than redeliver to the same consumer.
    pub requeue: bool,
}

/// basic.recover (XML reference §1.8): redeliver unacknowledged messages on this channel.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BasicRecover {
    /// Requeue rather than redeliver to the same consumer.
    pub requeue: bool,
}

/// basic.nack (RabbitMQ extension): negative acknowledgement of one or many deliveries (client), or a
/// failed publish (server, in confirm mode).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BasicNack {
    /// Delivery tag (or publish sequence number in confirm mode).
    pub delivery_tag: u64,
    /// Also nack every earlier tag.
    pub multiple: bool,
    /// Requeue rather than discard / dead-letter.
    pub requeue: bool,
}

// ---------------------------------------------------------------------------------------------------------
// confirm (RabbitMQ extension)

/// confirm.select (RabbitMQ extension): put the channel in publisher-confirm mode.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfirmSelect {
    /// Do not send select-ok (`nowait`).
    pub no_wait: bool,
}

// ---------------------------------------------------------------------------------------------------------
// The method table: ids, names and argument layouts. Encoding and decoding are generated from it.

/// Encode / decode of one method's arguments, generated by `methods!`.
trait Args: Sized {
    fn write_args(&self, w: &mut ArgWriter<'_>);
    fn read_args(r: &mut ArgReader<'_>) -> Result<Self, CodecError>;
}

macro_rules! write_arg {
    ($w:ident, $m:ident, _, shortstr) => {
        $w.shortstr("")
    };
    ($w:ident, $m:ident, _, longstr) => {
        $w.longstr(&[])
    };
    ($w:ident, $m:ident, _, short) => {
        $w.short(0)
    };
    ($w:ident, $m:ident, _, bit) => {
        $w.bit(false)
    };
    ($w:ident, $m:ident, $f:ident, shortstr) => {
        $w.shortstr(&$m.$f)
    };
    ($w:ident, $m:ident, $f:ident, longstr) => {
        $w.longstr(&$m.$f)
    };
    ($w:ident, $m:ident, $f:ident, table) => {
        $w.table(&$m.$f)
    };
    ($w:ident, $m:ident, $f:ident, $kind:ident) => {
        $w.$kind($m.$f)
    };
}

macro_rules! read_arg {
    ($r:ident, $m:ident, _, shortstr) => {
        $r.skip_shortstr()?
    };
    ($r:ident, $m:ident, _, $kind:ident) => {
        $r.$kind()?
    };
    ($r:ident, $m:ident, $f:ident, $kind:ident) => {
        $m.$f = $r.$kind()?
    };
}

macro_rules! methods {
    (
        with_args {
            $( $(#[$adoc:meta])* $a:ident ($ac:literal, $am:literal, $aname:literal)
                { $( $af:tt : $ak:ident ),* $(,)? } )*
        }
        no_args {
            $( $(#[$udoc:meta])* $u:ident ($uc:literal, $um:literal, $uname:literal)
                { $( _ : $uk:ident ),* } )*
        }
    ) => {
        /// One AMQP 0-9-1 method (spec §4.2.4): every method of the XML reference and RabbitMQ's extensions.
        /// Methods with arguments hold the struct of the same name; field-less ones are unit variants.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Method {
            $( $(#[$adoc])* $a($a), )*
            $( $(#[$udoc])* $u, )*
        }

        impl Method {
            /// (class id, method id) as on the wire (XML reference §1.3).
            pub fn ids(&self) -> (u16, u16) {
                match self {
                    $( Self::$a(_) => ($ac, $am), )*
                    $( Self::$u => ($uc, $um), )*
                }
            }

            /// The spec name, e.g. `"basic.publish"`, for logs and close reasons.
            pub fn name(&self) -> &'static str {
                match self {
                    $( Self::$a(_) => $aname, )*
                    $( Self::$u => $uname, )*
                }
            }

            fn write_args(&self, w: &mut ArgWriter<'_>) {
                match self {
                    $( Self::$a(m) => m.write_args(w), )*
                    $( Self::$u => { $( write_arg!(w, self, _, $uk); )* } )*
                }
            }

            fn read_args(class_id: u16, method_id: u16, r: &mut ArgReader<'_>) -> Result<Self, CodecError> {
                match (class_id, method_id) {
                    $( ($ac, $am) => Ok(Self::$a($a::read_args(r)?)), )*
                    $( ($uc, $um) => { $( read_arg!(r, r, _, $uk); )* Ok(Self::$u) } )*
                    _ => Err(CodecError::UnknownMethod { class_id, method_id }),
                }
            }
        }

        $(
            impl Args for $a {
                fn write_args(&self, w: &mut ArgWriter<'_>) {
                    $( write_arg!(w, self, $af, $ak); )*
                }

                fn read_args(r: &mut ArgReader<'_>) -> Result<Self, CodecError> {
                    let mut m = Self::default();
                    $( read_arg!(r, m, $af, $ak); )*
                    Ok(m)
                }
            }

            impl From<$a> for Method {
                fn from(m: $a) -> Self {
                    Self::$a(m)
                }
            }
        )*
    };
}

methods! {
    with_args {
        /// connection.start (XML reference §1.4).
        ConnectionStart(10, 10, "connection.start") {
            version_major: octet, version_minor: octet, server_properties: table,
            mechanisms: longstr, locales: longstr,
        }
        /// connection.start-ok (XML reference §1.4).
        ConnectionStartOk(10, 11, "connection.start-ok") {
            client_properties: table, mechanism: shortstr, response: longstr, locale: shortstr,
        }
        /// connection.secure (XML reference §1.4).
        ConnectionSecure(10, 20, "connection.secure") { challenge: longstr }
        /// connection.secure-ok (XML reference §1.4).
        ConnectionSecureOk(10, 21, "connection.secure-ok") { response: longstr }
        /// connection.tune (XML reference §1.4).
        ConnectionTune(10, 30, "connection.tune") { channel_max: short, frame_max: long, heartbeat: short }
        /// connection.tune-ok (XML reference §1.4).
        ConnectionTuneOk(10, 31, "connection.tune-ok") {
            channel_max: short, frame_max: long, heartbeat: short,
        }
        /// connection.open (XML reference §1.4).
        ConnectionOpen(10, 40, "connection.open") { virtual_host: shortstr, _: shortstr, _: bit }
        /// connection.close (XML reference §1.4).
        ConnectionClose(10, 50, "connection.close") {
            reply_code: short, reply_text: shortstr, class_id: short, method_id: short,
        }
        /// connection.blocked (RabbitMQ extension).
        ConnectionBlocked(10, 60, "connection.blocked") { reason: shortstr }
        /// connection.update-secret (RabbitMQ extension).
        ConnectionUpdateSecret(10, 70, "connection.update-secret") { new_secret: longstr, reason: shortstr }

        /// channel.flow (XML reference §1.5).
        ChannelFlow(20, 20, "channel.flow") { active: bit }
        /// channel.flow-ok (XML reference §1.5).
        ChannelFlowOk(20, 21, "channel.flow-ok") { active: bit }
        /// channel.close (XML reference §1.5).
        ChannelClose(20, 40, "channel.close") {
            reply_code: short, reply_text: shortstr, class_id: short, method_id: short,
        }

        /// exchange.declare (XML reference §1.6).
        ExchangeDeclare(40, 10, "exchange.declare") {
            _: short, exchange: shortstr, kind: shortstr, passive: bit, durable: bit, auto_delete: bit,
            internal: bit, no_wait: bit, arguments: table,
        }
        /// exchange.delete (XML reference §1.6).
        ExchangeDelete(40, 20, "exchange.delete") { _: short, exchange: shortstr, if_unused: bit, no_wait: bit }
        /// exchange.bind (RabbitMQ extension).
        ExchangeBind(40, 30, "exchange.bind") {
            _: short, destination: shortstr, source: shortstr, routing_key: shortstr, no_wait: bit,
            arguments: table,
        }
        /// exchange.unbind (RabbitMQ extension).
        ExchangeUnbind(40, 40, "exchange.unbind") {
            _: short, destination: shortstr, source: shortstr, routing_key: shortstr, no_wait: bit,
            arguments: table,
        }

        /// queue.declare (XML reference §1.7).
        QueueDeclare(50, 10, "queue.declare") {
            _: short, queue: shortstr, passive: bit, durable: bit, exclusive: bit, auto_delete: bit,
            no_wait: bit, arguments: table,
        }
        /// queue.declare-ok (XML reference §1.7).
        QueueDeclareOk(50, 11, "queue.declare-ok") {
            queue: shortstr, message_count: long, consumer_count: long,
        }
        /// queue.bind (XML reference §1.7).
        QueueBind(50, 20, "queue.bind") {
            _: short, queue: shortstr, exchange: shortstr, routing_key: shortstr, no_wait: bit,
            arguments: table,
        }
        /// queue.purge (XML reference §1.7).
        QueuePurge(50, 30, "queue.purge") { _: short, queue: shortstr, no_wait: bit }
        /// queue.purge-ok (XML reference §1.7).
        QueuePurgeOk(50, 31, "queue.purge-ok") { message_count: long }
        /// queue.delete (XML reference §1.7).
        QueueDelete(50, 40, "queue.delete") {
            _: short, queue: shortstr, if_unused: bit, if_empty: bit, no_wait: bit,
        }
        /// queue.delete-ok (XML reference §1.7).
        QueueDeleteOk(50, 41, "queue.delete-ok") { message_count: long }
        /// queue.unbind (XML reference §1.7).
        QueueUnbind(50, 50, "queue.unbind") {
            _: short, queue: shortstr, exchange: shortstr, routing_key: shortstr, arguments: table,
        }

        /// basic.qos (XML reference §1.8).
        BasicQos(60, 10, "basic.qos") { prefetch_size: long, prefetch_count: short, global: bit }
        /// basic.consume (XML reference §1.8).
        BasicConsume(60, 20, "basic.consume") {
            _: short, queue: shortstr, consumer_tag: shortstr, no_local: bit, no_ack: bit, exclusive: bit,
            no_wait: bit, arguments: table,
        }
        /// basic.consume-ok (XML reference §1.8).
        BasicConsumeOk(60, 21, "basic.consume-ok") { consumer_tag: shortstr }
        /// basic.cancel (XML reference §1.8).
        BasicCancel(60, 30, "basic.cancel") { consumer_tag: shortstr, no_wait: bit }
        /// basic.cancel-ok (XML reference §1.8).
        BasicCancelOk(60, 31, "basic.cancel-ok") { consumer_tag: shortstr }
        /// basic.publish (XML reference §1.8); content follows.
        BasicPublish(60, 40, "basic.publish") {
            _: short, exchange: shortstr, routing_key: shortstr, mandatory: bit, immediate: bit,
        }
        /// basic.return (XML reference §1.8); content follows.
        BasicReturn(60, 50, "basic.return") {
            reply_code: short, reply_text: shortstr, exchange: shortstr, routing_key: shortstr,
        }
        /// basic.deliver (XML reference §1.8); content follows.
        BasicDeliver(60, 60, "basic.deliver") {
            consumer_tag: shortstr, delivery_tag: longlong, redelivered: bit, exchange: shortstr,
            routing_key: shortstr,
        }
        /// basic.get (XML reference §1.8).
        BasicGet(60, 70, "basic.get") { _: short, queue: shortstr, no_ack: bit }
        /// basic.get-ok (XML reference §1.8); content follows.
        BasicGetOk(60, 71, "basic.get-ok") {
            delivery_tag: longlong, redelivered: bit, exchange: shortstr, routing_key: shortstr,
            message_count: long,
        }
        /// basic.ack (XML reference §1.8).
        BasicAck(60, 80, "basic.ack") { delivery_tag: longlong, multiple: bit }
        /// basic.reject (XML reference §1.8).
        BasicReject(60, 90, "basic.reject") { delivery_tag: longlong, requeue: bit }
        /// basic.recover-async (XML reference §1.8).
        BasicRecoverAsync(60, 100, "basic.recover-async") { requeue: bit }
        /// basic.recover (XML reference §1.8).
        BasicRecover(60, 110, "basic.recover") { requeue: bit }
        /// basic.nack (RabbitMQ extension).
        BasicNack(60, 120, "basic.nack") { delivery_tag: longlong, multiple: bit, requeue: bit }

        /// confirm.select (RabbitMQ extension).
        ConfirmSelect(85, 10, "confirm.select") { no_wait: bit }
    }
    no_args {
        /// connection.open-ok (XML reference §1.4); its reserved `known-hosts` shortstr is written empty.
        ConnectionOpenOk(10, 41, "connection.open-ok") { _: shortstr }
        /// connection.close-ok (XML reference §1.4).
        ConnectionCloseOk(10, 51, "connection.close-ok") {}
        /// connection.unblocked (RabbitMQ extension).
        ConnectionUnblocked(10, 61, "connection.unblocked") {}
        /// connection.update-secret-ok (RabbitMQ extension).
        ConnectionUpdateSecretOk(10, 71, "connection.update-secret-ok") {}
        /// channel.open (XML reference §1.5); its reserved `out-of-band` shortstr is written empty.
        ChannelOpen(20, 10, "channel.open") { _: shortstr }
        /// channel.open-ok (XML reference §1.5); its reserved `channel-id` longstr is written empty.
        ChannelOpenOk(20, 11, "channel.open-ok") { _: longstr }
        /// channel.close-ok (XML reference §1.5).
        ChannelCloseOk(20, 41, "channel.close-ok") {}
        /// exchange.declare-ok (XML reference §1.6).
        ExchangeDeclareOk(40, 11, "exchange.declare-ok") {}
        /// exchange.delete-ok (XML reference §1.6).
        ExchangeDeleteOk(40, 21, "exchange.delete-ok") {}
        /// exchange.bind-ok (RabbitMQ extension).
        ExchangeBindOk(40, 31, "exchange.bind-ok") {}
        /// exchange.unbind-ok (RabbitMQ extension; method id 51, not 41).
        ExchangeUnbindOk(40, 51, "exchange.unbind-ok") {}
        /// queue.bind-ok (XML reference §1.7).
        QueueBindOk(50, 21, "queue.bind-ok") {}
        /// queue.unbind-ok (XML reference §1.7).
        QueueUnbindOk(50, 51, "queue.unbind-ok") {}
        /// basic.qos-ok (XML reference §1.8).
        BasicQosOk(60, 11, "basic.qos-ok") {}
        /// basic.get-empty (XML reference §1.8); its reserved `cluster-id` shortstr is written empty.
        BasicGetEmpty(60, 72, "basic.get-empty") { _: shortstr }
        /// basic.recover-ok (XML reference §1.8).
        BasicRecoverOk(60, 111, "basic.recover-ok") {}
        /// confirm.select-ok (RabbitMQ extension).
        ConfirmSelectOk(85, 11, "confirm.select-ok") {}
        /// tx.select (XML reference §1.9).
        TxSelect(90, 10, "tx.select") {}
        /// tx.select-ok (XML reference §1.9).
        TxSelectOk(90, 11, "tx.select-ok") {}
        /// tx.commit (XML reference §1.9).
        TxCommit(90, 20, "tx.commit") {}
        /// tx.commit-ok (XML reference §1.9).
        TxCommitOk(90, 21, "tx.commit-ok") {}
        /// tx.rollback (XML reference §1.9).
        TxRollback(90, 30, "tx.rollback") {}
        /// tx.rollback-ok (XML reference §1.9).
        TxRollbackOk(90, 31, "tx.rollback-ok") {}
    }
}

impl Method {
    /// The class id (XML reference §1.3), e.g. 60 for basic.
    pub fn class_id(&self) -> u16 {
        self.ids().0
    }

    /// The method id within its class (XML reference §1.3), e.g. 40 for basic.publish.
    pub fn method_id(&self) -> u16 {
        self.ids().1
    }

    /// True for the methods followed by content (a header frame and body frames, spec §4.2.6):
    /// basic.publish, basic.return, basic.deliver and basic.get-ok.
    pub fn has_content(&self) -> bool {
        matches!(
            self,
            Self::BasicPublish(_)
                | Self::BasicReturn(_)
                | Self::BasicDeliver(_)
                | Self::BasicGetOk(_)
        )
    }

    /// Writes the method frame payload: class id, method id, arguments (spec §4.2.4).
    pub fn encode(&self, out: &mut BytesMut) {
        let (class_id, method_id) = self.ids();
        out.put_u16(class_id);
        out.put_u16(method_id);
        self.write_args(&mut ArgWriter::new(out));
    }

    /// The methods a busy connection receives most (basic.publish, basic.ack), read where they lie without
    /// touching the buffer's reference count. `None` for any other method and for anything unusual in these
    /// (truncated, not UTF-8, trailing bytes): [`Method::decode`] then reads it and reports what is wrong.
    pub(crate) fn decode_in_place(payload: &[u8]) -> Option<Self> {
        let mut r = SliceReader::new(payload);
        let ids = (r.u16().ok()?, r.u16().ok()?);
        let method = match ids {
            (60, 40) => {
                r.u16().ok()?; // reserved ticket
                let exchange = r.shortstr().ok()?;
                let routing_key = r.shortstr().ok()?;
                let bits = r.u8().ok()?;
                Self::BasicPublish(BasicPublish {
                    exchange,
                    routing_key,
                    mandatory: bits & 1 != 0,
                    immediate: bits & 2 != 0,
                })
            }
            (60, 80) => {
                let delivery_tag = r.u64().ok()?;
                let bits = r.u8().ok()?;
                Self::BasicAck(BasicAck {
                    delivery_tag,
                    multiple: bits & 1 != 0,
                })
            }
            _ => return None,
        };
        (r.left() == 0).then_some(method)
    }

    /// Reads a whole method frame payload (spec §4.2.4). An unknown class/method pair is
    /// [`CodecError::UnknownMethod`]; truncated arguments or bytes left over after them are
    /// [`CodecError::Malformed`].
    pub fn decode(payload: &mut Bytes) -> Result<Self, CodecError> {
        let class_id = get_u16(payload)?;
        let method_id = get_u16(payload)?;
        let method = Self::read_args(class_id, method_id, &mut ArgReader::new(payload))?;
        if !payload.is_empty() {
            return Err(CodecError::Malformed(format!(
                "{} trailing bytes after {} arguments",
                payload.len(),
                method.name()
            )));
        }
        Ok(method)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn payload(class_id: u16, method_id: u16, args: &[u8]) -> Vec<u8> {
        let mut p = Vec::with_capacity(4 + args.len());
        p.extend_from_slice(&class_id.to_be_bytes());
        p.extend_from_slice(&method_id.to_be_bytes());
        p.extend_from_slice(args);
        p
    }

    #[test]
    fn publish_and_ack_are_read_in_place_as_the_general_decoder_reads_them() {
        for method in [
            Method::BasicPublish(BasicPublish {
                exchange: "ex".into(),
                routing_key: "rk".into(),
                mandatory: true,
                immediate: false,
            }),
            Method::BasicAck(BasicAck {
                delivery_tag: 7,
                multiple: true,
            }),
        ] {
            let mut out = BytesMut::new();
            method.encode(&mut out);
            assert_eq!(Method::decode_in_place(&out), Some(method));
        }
    }

    proptest! {
        /// Whatever the arguments, the in-place reader agrees with the general decoder or leaves the frame
        /// to it (which then reports what is wrong).
        #[test]
        fn the_in_place_reader_never_disagrees(
            method_id in prop_oneof![Just(40u16), Just(80u16), Just(90u16)],
            args in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            let p = payload(60, method_id, &args);
            if let Some(fast) = Method::decode_in_place(&p) {
                let general = Method::decode(&mut Bytes::from(p));
                prop_assert_eq!(general, Ok(fast));
            }
        }
    }
}
