//! Last wills (§3.1.2.5, §3.1.3.2): published when the connection ends without a normal DISCONNECT (or with
//! v5 reason 0x04). With a v5 will delay interval the will waits for the lower of that delay and the session
//! expiry interval, and is dropped if the client id connects again first [MQTT-3.1.3-9] (the registry cancels
//! it); otherwise it is published at once through the connection's publisher.

use std::sync::Arc;
use std::time::Duration;

use ferrymq_mqtt_codec::{Publish, Will};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::connection::Conn;
use super::convert;
use crate::core::{Publisher, Session};

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Conn<S> {
    /// Publishes the will now, or schedules it; the token cancels a scheduled will.
    pub async fn schedule_will(&mut self, will: Will) -> Option<CancellationToken> {
        let delay = will
            .properties
            .will_delay_interval
            .unwrap_or(0)
            .min(self.est.session_expiry);
        if delay == 0 {
            publish_will(&mut self.publisher, will).await;
            return None;
        }
        let cancel = CancellationToken::new();
        let session = self.est.core.clone();
        let cancelled = cancel.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(u64::from(delay))) => publish_delayed(session, will).await,
                _ = cancelled.cancelled() => debug!("delayed will dropped: the client came back"),
            }
        });
        Some(cancel)
    }
}

async fn publish_delayed(session: Session, will: Will) {
    let mut publisher = Publisher::new(session);
    publish_will(&mut publisher, will).await;
}

async fn publish_will(publisher: &mut Publisher, will: Will) {
    let publish = Publish {
        qos: will.qos,
        retain: will.retain,
        topic: will.topic,
        properties: will.properties,
        payload: will.payload,
        ..Publish::default()
    };
    let message = convert::incoming(&publish, &publish.topic, 0);
    if publish.retain
        && let Err(e) = publisher.session().retain(Arc::new(message.clone()))
    {
        warn!(error = %e, "will not retained");
    }
    if let Err(e) = publisher.publish(message, false).await {
        warn!(error = %e, "will not published");
    }
}
