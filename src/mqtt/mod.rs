//! The MQTT 3.1 / 3.1.1 / 5.0 front end: one task per connection, translating packets to core calls and core
//! deliveries to packets (docs/ARCHITECTURE.md §8). `wire` owns the socket and the read and write buffers,
//! `connect` the CONNECT handshake (version, login, session takeover, CONNACK), `connection` the session loop,
//! `inbound` the client's PUBLISHes and their acknowledgements, `outbound` deliveries to the client and
//! theirs, `subscriptions` SUBSCRIBE / UNSUBSCRIBE as bindings on `amq.topic` and the session queue,
//! `will` last wills, `registry` client ids in use (takeover), `convert` packets to core messages and back,
//! `error` reason codes. It never names another front end or the store.

mod connect;
mod connection;
mod convert;
pub mod error;
mod inbound;
mod outbound;
mod registry;
mod subscriptions;
mod will;
mod wire;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

use crate::config::MqttConfig;
use crate::core::Broker;
use crate::transport::Admission;

/// Shared state of every MQTT connection.
#[derive(Debug)]
pub struct MqttContext {
    pub broker: Broker,
    pub config: MqttConfig,
    /// Client identifiers in use (session takeover).
    registry: registry::Registry,
}

impl MqttContext {
    pub fn new(broker: Broker, config: &MqttConfig) -> Arc<Self> {
        Arc::new(Self {
            broker,
            config: config.clone(),
            registry: registry::Registry::default(),
        })
    }
}

/// Serve one MQTT connection until the client disconnects, a protocol error closes it, another connection
/// takes its session over, or `shutdown` fires (then a v5 client is sent DISCONNECT 0x8B Server shutting down).
pub async fn serve<S>(
    stream: S,
    certificate_name: Option<String>,
    peer: SocketAddr,
    admission: Admission,
    ctx: Arc<MqttContext>,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    connection::run(stream, certificate_name, peer, admission, ctx, shutdown).await;
}
