//! Liveness and readiness probes, in the shape orchestrators expect.
//!
//! `GET /health/live` answers 200 `ok` whenever the process can serve HTTP at all. `GET /health/ready`
//! answers 200 `ok` when the store accepts persistent writes and 503 with the store's reason when it does
//! not (a failed fsync, disk below the low-water mark): a broker that cannot confirm messages should not
//! receive traffic (ARCHITECTURE.md §5).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

use crate::core::Broker;

/// The `/health/*` routes.
pub fn router(broker: Broker) -> Router {
    Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .with_state(broker)
}

async fn live() -> &'static str {
    "ok"
}

async fn ready(State(broker): State<Broker>) -> (StatusCode, String) {
    match broker.store().healthy() {
        Ok(()) => (StatusCode::OK, "ok".to_owned()),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, reason),
    }
}
