//! Liveness and readiness probes, in the shape orchestrators expect.
//!
//! `GET /health/live` answers 200 `ok` whenever the process can serve HTTP at all. `GET /health/ready`
//! answers 200 `ok` when the store accepts persistent writes and 503 with the store's reason when it does
//! not (a failed fsync, disk below the low-water mark): a broker that cannot confirm messages should not
//! receive traffic (the durability contract, shared design §5).

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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::sync::watch;

    use super::*;
    use crate::core::BrokerOptions;
    use crate::store::{
        Definition, MemoryStore, MsgId, QueueKey, Recovered, Store, StoreError, StoredMessage,
        SyncPoint, SyncState,
    };

    /// A store that recovers nothing and reports itself failed.
    #[derive(Debug)]
    struct FailedStore;

    impl Store for FailedStore {
        fn publish(
            &self,
            _: MsgId,
            _: &[QueueKey],
            _: &StoredMessage,
        ) -> Result<SyncPoint, StoreError> {
            Err(StoreError::Failed("fsync failed".into()))
        }
        fn settle(&self, _: &QueueKey, _: MsgId) -> Result<(), StoreError> {
            Ok(())
        }
        fn define(&self, _: &Definition) -> Result<SyncPoint, StoreError> {
            Err(StoreError::Failed("fsync failed".into()))
        }
        fn sync_state(&self) -> watch::Receiver<SyncState> {
            watch::channel(SyncState::default()).1
        }
        fn recover(&self) -> Result<Recovered, StoreError> {
            Ok(Recovered::default())
        }
        fn healthy(&self) -> Result<(), String> {
            Err("store failed: fsync failed".into())
        }
        fn blocked(&self) -> watch::Receiver<bool> {
            watch::channel(false).1
        }
        fn close(&self) {}
    }

    async fn broker(store: Arc<dyn Store>) -> Broker {
        Broker::start(BrokerOptions::default(), store)
            .await
            .expect("broker starts")
    }

    #[tokio::test]
    async fn ready_when_the_store_is_healthy() {
        let broker = broker(Arc::new(MemoryStore::default())).await;
        assert_eq!(
            ready(State(broker)).await,
            (StatusCode::OK, "ok".to_owned())
        );
        assert_eq!(live().await, "ok");
    }

    #[tokio::test]
    async fn not_ready_with_the_reason_when_the_store_failed() {
        let broker = broker(Arc::new(FailedStore)).await;
        assert_eq!(
            ready(State(broker)).await,
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "store failed: fsync failed".to_owned()
            )
        );
    }
}
