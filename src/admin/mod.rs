//! The broker's own HTTP surface: health endpoints today; the management API, definitions export/import,
//! Prometheus `/metrics` and the audit log later.
//!
//! [`router`] builds the axum router served on the HTTP listener (`[http]`, port 15692) and [`serve`] runs it
//! until shutdown. Handlers read the broker through its public handle only; nothing here touches sockets of
//! other protocols.

pub mod health;

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::core::Broker;

/// Every route of the HTTP listener.
pub fn router(broker: Broker) -> Router {
    health::router(broker)
}

/// Serve `router` on `listener` until `shutdown` is cancelled; requests in flight then finish first.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}
