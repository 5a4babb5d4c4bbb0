//! The AMQP 0-9-1 session adapter: one task per connection, translating frames to core calls and core events
//! to frames. `connection` owns the socket loop and handshake, `methods` the channel-level methods,
//! `channel` the per-channel bookkeeping, `convert` the message conversion to and from the core's model, `error`
//! the mapping to reply codes. It never talks to other front ends and never names the store; it uses the core
//! through its session, publisher and queue handles.

mod channel;
mod connection;
mod convert;
pub mod error;
mod methods;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

use crate::config::AmqpConfig;
use crate::core::Broker;
use crate::transport::Admission;

/// Registers what the core needs of AMQP before it starts: the reader for journal format 1, whose messages and
/// arguments are in AMQP terms. Called by the composition root before `Broker::start`.
pub fn register_with_core() {
    crate::core::register_legacy_reader(&convert::FORMAT1);
}

/// Shared state of every AMQP connection.
#[derive(Debug)]
pub struct AmqpContext {
    pub broker: Broker,
    pub config: AmqpConfig,
}

impl AmqpContext {
    pub fn new(broker: Broker, config: &AmqpConfig) -> Arc<Self> {
        Arc::new(Self {
            broker,
            config: config.clone(),
        })
    }
}

/// Serve one AMQP connection until the peer closes, an error closes it, or `shutdown` fires (then the
/// connection is closed with 320 CONNECTION_FORCED). `admission` is its place in the AMQP connection budget.
pub async fn serve<S>(
    stream: S,
    peer: SocketAddr,
    admission: Admission,
    ctx: Arc<AmqpContext>,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    connection::Connection::new(stream, peer, admission, ctx)
        .run(shutdown)
        .await;
}
