//! Shared test fixtures: a hex reader for golden frames and one sample of every method.
#![allow(dead_code, clippy::unwrap_used)]

use bytes::Bytes;
use ferrymq_amqp_codec::*;

/// Bytes from hex, ignoring whitespace and `-- comments` to the end of a line, so golden frames can be
/// laid out field by field.
pub fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s
        .lines()
        .map(|line| line.split("--").next().unwrap_or(""))
        .flat_map(|line| line.bytes())
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    assert!(digits.len().is_multiple_of(2), "odd number of hex digits");
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

pub fn table() -> FieldTable {
    let mut inner = FieldTable::new();
    inner.insert("publisher_confirms", FieldValue::Bool(true));
    FieldTable(vec![
        ("x-message-ttl".into(), FieldValue::I32(60_000)),
        ("x-dead-letter-exchange".into(), FieldValue::from("dlx")),
        ("capabilities".into(), FieldValue::Table(inner)),
    ])
}

fn s(v: &str) -> String {
    v.to_owned()
}

/// One sample of every method, with distinctive non-default values and mixed bit patterns.
pub fn all_methods() -> Vec<Method> {
    vec![
        Method::ConnectionStart(ConnectionStart {
            version_major: 0,
            version_minor: 9,
            server_properties: table(),
            mechanisms: Bytes::from_static(b"PLAIN AMQPLAIN"),
            locales: Bytes::from_static(b"en_US"),
        }),
        Method::ConnectionStartOk(ConnectionStartOk {
            client_properties: table(),
            mechanism: s("PLAIN"),
            response: Bytes::from_static(b"\0guest\0guest"),
            locale: s("en_US"),
        }),
        Method::ConnectionSecure(ConnectionSecure {
            challenge: Bytes::from_static(b"chal"),
        }),
        Method::ConnectionSecureOk(ConnectionSecureOk {
            response: Bytes::from_static(b"resp"),
        }),
        Method::ConnectionTune(ConnectionTune {
            channel_max: 2047,
            frame_max: 131_072,
            heartbeat: 60,
        }),
        Method::ConnectionTuneOk(ConnectionTuneOk {
            channel_max: 100,
            frame_max: 4096,
            heartbeat: 10,
        }),
        Method::ConnectionOpen(ConnectionOpen {
            virtual_host: s("/prod"),
        }),
        Method::ConnectionOpenOk,
        Method::ConnectionClose(ConnectionClose {
            reply_code: 320,
            reply_text: s("CONNECTION_FORCED - shutdown"),
            class_id: 0,
            method_id: 0,
        }),
        Method::ConnectionCloseOk,
        Method::ConnectionBlocked(ConnectionBlocked {
            reason: s("low on memory"),
        }),
        Method::ConnectionUnblocked,
        Method::ConnectionUpdateSecret(ConnectionUpdateSecret {
            new_secret: Bytes::from_static(b"token"),
            reason: s("refresh"),
        }),
        Method::ConnectionUpdateSecretOk,
        Method::ChannelOpen,
        Method::ChannelOpenOk,
        Method::ChannelFlow(ChannelFlow { active: true }),
        Method::ChannelFlowOk(ChannelFlowOk { active: false }),
        Method::ChannelClose(ChannelClose {
            reply_code: 404,
            reply_text: s("NOT_FOUND - no queue 'q'"),
            class_id: 50,
            method_id: 10,
        }),
        Method::ChannelCloseOk,
        Method::ExchangeDeclare(ExchangeDeclare {
            exchange: s("logs"),
            kind: s("topic"),
            passive: false,
            durable: true,
            auto_delete: false,
            internal: true,
            no_wait: true,
            arguments: table(),
        }),
        Method::ExchangeDeclareOk,
        Method::ExchangeDelete(ExchangeDelete {
            exchange: s("logs"),
            if_unused: true,
            no_wait: false,
        }),
        Method::ExchangeDeleteOk,
        Method::ExchangeBind(ExchangeBind {
            destination: s("dst"),
            source: s("src"),
            routing_key: s("a.#"),
            no_wait: true,
            arguments: FieldTable::new(),
        }),
        Method::ExchangeBindOk,
        Method::ExchangeUnbind(ExchangeUnbind {
            destination: s("dst"),
            source: s("src"),
            routing_key: s("a.*"),
            no_wait: false,
            arguments: table(),
        }),
        Method::ExchangeUnbindOk,
        Method::QueueDeclare(QueueDeclare {
            queue: s("orders"),
            passive: false,
            durable: true,
            exclusive: false,
            auto_delete: true,
            no_wait: false,
            arguments: table(),
        }),
        Method::QueueDeclareOk(QueueDeclareOk {
            queue: s("amq.gen-abc"),
            message_count: 12,
            consumer_count: 3,
        }),
        Method::QueueBind(QueueBind {
            queue: s("orders"),
            exchange: s("amq.topic"),
            routing_key: s("orders.*"),
            no_wait: true,
            arguments: FieldTable::new(),
        }),
        Method::QueueBindOk,
        Method::QueueUnbind(QueueUnbind {
            queue: s("orders"),
            exchange: s("amq.topic"),
            routing_key: s("orders.*"),
            arguments: table(),
        }),
        Method::QueueUnbindOk,
        Method::QueuePurge(QueuePurge {
            queue: s("orders"),
            no_wait: true,
        }),
        Method::QueuePurgeOk(QueuePurgeOk { message_count: 99 }),
        Method::QueueDelete(QueueDelete {
            queue: s("orders"),
            if_unused: true,
            if_empty: false,
            no_wait: true,
        }),
        Method::QueueDeleteOk(QueueDeleteOk { message_count: 7 }),
        Method::BasicQos(BasicQos {
            prefetch_size: 0,
            prefetch_count: 250,
            global: true,
        }),
        Method::BasicQosOk,
        Method::BasicConsume(BasicConsume {
            queue: s("orders"),
            consumer_tag: s("ctag-1"),
            no_local: false,
            no_ack: true,
            exclusive: false,
            no_wait: true,
            arguments: table(),
        }),
        Method::BasicConsumeOk(BasicConsumeOk {
            consumer_tag: s("ctag-1"),
        }),
        Method::BasicCancel(BasicCancel {
            consumer_tag: s("ctag-1"),
            no_wait: true,
        }),
        Method::BasicCancelOk(BasicCancelOk {
            consumer_tag: s("ctag-1"),
        }),
        Method::BasicPublish(BasicPublish {
            exchange: s("amq.direct"),
            routing_key: s("rk"),
            mandatory: true,
            immediate: false,
        }),
        Method::BasicReturn(BasicReturn {
            reply_code: 312,
            reply_text: s("NO_ROUTE"),
            exchange: s("amq.direct"),
            routing_key: s("nowhere"),
        }),
        Method::BasicDeliver(BasicDeliver {
            consumer_tag: s("ctag-1"),
            delivery_tag: u64::MAX - 1,
            redelivered: true,
            exchange: s(""),
            routing_key: s("orders"),
        }),
        Method::BasicGet(BasicGet {
            queue: s("orders"),
            no_ack: true,
        }),
        Method::BasicGetOk(BasicGetOk {
            delivery_tag: 42,
            redelivered: false,
            exchange: s("x"),
            routing_key: s("k"),
            message_count: 1000,
        }),
        Method::BasicGetEmpty,
        Method::BasicAck(BasicAck {
            delivery_tag: 77,
            multiple: true,
        }),
        Method::BasicReject(BasicReject {
            delivery_tag: 78,
            requeue: false,
        }),
        Method::BasicRecoverAsync(BasicRecoverAsync { requeue: true }),
        Method::BasicRecover(BasicRecover { requeue: false }),
        Method::BasicRecoverOk,
        Method::BasicNack(BasicNack {
            delivery_tag: 79,
            multiple: false,
            requeue: true,
        }),
        Method::ConfirmSelect(ConfirmSelect { no_wait: true }),
        Method::ConfirmSelectOk,
        Method::TxSelect,
        Method::TxSelectOk,
        Method::TxCommit,
        Method::TxCommitOk,
        Method::TxRollback,
        Method::TxRollbackOk,
    ]
}

/// Number of [`Method`] variants; [`variant_index`] maps each to a distinct index below it.
pub const VARIANTS: usize = 64;

/// A distinct index per variant. The match has no wildcard, so adding a variant to the codec fails to
/// compile here until the fixtures cover it.
pub fn variant_index(m: &Method) -> usize {
    use Method::*;
    match m {
        ConnectionStart(_) => 0,
        ConnectionStartOk(_) => 1,
        ConnectionSecure(_) => 2,
        ConnectionSecureOk(_) => 3,
        ConnectionTune(_) => 4,
        ConnectionTuneOk(_) => 5,
        ConnectionOpen(_) => 6,
        ConnectionOpenOk => 7,
        ConnectionClose(_) => 8,
        ConnectionCloseOk => 9,
        ConnectionBlocked(_) => 10,
        ConnectionUnblocked => 11,
        ConnectionUpdateSecret(_) => 12,
        ConnectionUpdateSecretOk => 13,
        ChannelOpen => 14,
        ChannelOpenOk => 15,
        ChannelFlow(_) => 16,
        ChannelFlowOk(_) => 17,
        ChannelClose(_) => 18,
        ChannelCloseOk => 19,
        ExchangeDeclare(_) => 20,
        ExchangeDeclareOk => 21,
        ExchangeDelete(_) => 22,
        ExchangeDeleteOk => 23,
        ExchangeBind(_) => 24,
        ExchangeBindOk => 25,
        ExchangeUnbind(_) => 26,
        ExchangeUnbindOk => 27,
        QueueDeclare(_) => 28,
        QueueDeclareOk(_) => 29,
        QueueBind(_) => 30,
        QueueBindOk => 31,
        QueueUnbind(_) => 32,
        QueueUnbindOk => 33,
        QueuePurge(_) => 34,
        QueuePurgeOk(_) => 35,
        QueueDelete(_) => 36,
        QueueDeleteOk(_) => 37,
        BasicQos(_) => 38,
        BasicQosOk => 39,
        BasicConsume(_) => 40,
        BasicConsumeOk(_) => 41,
        BasicCancel(_) => 42,
        BasicCancelOk(_) => 43,
        BasicPublish(_) => 44,
        BasicReturn(_) => 45,
        BasicDeliver(_) => 46,
        BasicGet(_) => 47,
        BasicGetOk(_) => 48,
        BasicGetEmpty => 49,
        BasicAck(_) => 50,
        BasicReject(_) => 51,
        BasicRecoverAsync(_) => 52,
        BasicRecover(_) => 53,
        BasicRecoverOk => 54,
        BasicNack(_) => 55,
        ConfirmSelect(_) => 56,
        ConfirmSelectOk => 57,
        TxSelect => 58,
        TxSelectOk => 59,
        TxCommit => 60,
        TxCommitOk => 61,
        TxRollback => 62,
        TxRollbackOk => 63,
    }
}
