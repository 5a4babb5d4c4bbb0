//! MQTT clients for tests: rumqttc's v4 (MQTT 3.1.1) and v5 clients, each with its event loop polled by a task
//! that forwards every event to an [`Events`] receiver and stops at the first connection error (rumqttc would
//! otherwise reconnect on the next poll). Tests wait for the event they expect with a deadline.

use std::fmt::Debug;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How long a test waits for an event it expects.
pub const WAIT: Duration = Duration::from_secs(5);

/// What a client's event loop reported: an event, or the error that ended the connection.
pub struct Events<T> {
    rx: mpsc::UnboundedReceiver<Result<T, String>>,
    task: JoinHandle<()>,
}

impl<T> Drop for Events<T> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl<T: Debug> Events<T> {
    /// The first event for which `f` says `Some`, skipping others; panics on a connection error or after
    /// [`WAIT`].
    pub async fn next_matching<R>(&mut self, mut f: impl FnMut(&T) -> Option<R>) -> R {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let event = tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .expect("the expected MQTT event did not come in time")
                .expect("the client's event loop ended");
            match event {
                Ok(event) => {
                    if let Some(r) = f(&event) {
                        return r;
                    }
                }
                Err(e) => panic!("connection error while waiting: {e}"),
            }
        }
    }

    /// Asserts that no event matching `f` arrives within `wait`.
    pub async fn none_matching(&mut self, wait: Duration, f: impl Fn(&T) -> bool) {
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(Some(event)) = tokio::time::timeout_at(deadline, self.rx.recv()).await {
            if let Ok(event) = event {
                assert!(!f(&event), "unexpected event {event:?}");
            }
        }
    }

    /// The error that ends the connection (events before it are skipped).
    pub async fn error(&mut self) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(Err(e))) => return e,
                Ok(Some(Ok(_))) => {}
                Ok(None) => panic!("the event loop ended without an error"),
                Err(_) => panic!("the connection did not end in time"),
            }
        }
    }
}

/// An event loop the forwarding task polls (rumqttc's v4 and v5 ones).
pub trait EventLoop: Send + 'static {
    type Event: Send + 'static;
    fn next(&mut self) -> impl Future<Output = Result<Self::Event, String>> + Send;
}

impl EventLoop for rumqttc::EventLoop {
    type Event = rumqttc::Event;
    async fn next(&mut self) -> Result<Self::Event, String> {
        self.poll().await.map_err(|e| e.to_string())
    }
}

impl EventLoop for rumqttc::v5::EventLoop {
    type Event = rumqttc::v5::Event;
    async fn next(&mut self) -> Result<Self::Event, String> {
        self.poll().await.map_err(|e| e.to_string())
    }
}

fn forward<L: EventLoop>(mut eventloop: L) -> Events<L::Event> {
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            let event = eventloop.next().await;
            let end = event.is_err();
            if tx.send(event).is_err() || end {
                return;
            }
        }
    });
    Events { rx, task }
}

/// An MQTT 3.1.1 client of `addr` with client id `id`, options changed by `customise`; connecting starts.
pub fn v4(
    addr: SocketAddr,
    id: &str,
    customise: impl FnOnce(&mut rumqttc::MqttOptions),
) -> (rumqttc::AsyncClient, Events<rumqttc::Event>) {
    let mut options = rumqttc::MqttOptions::new(id, addr.ip().to_string(), addr.port());
    options.set_keep_alive(Duration::from_secs(30));
    customise(&mut options);
    let (client, eventloop) = rumqttc::AsyncClient::new(options, 100);
    (client, forward(eventloop))
}

/// An MQTT 5.0 client, as [`v4`].
pub fn v5(
    addr: SocketAddr,
    id: &str,
    customise: impl FnOnce(&mut rumqttc::v5::MqttOptions),
) -> (rumqttc::v5::AsyncClient, Events<rumqttc::v5::Event>) {
    let mut options = rumqttc::v5::MqttOptions::new(id, addr.ip().to_string(), addr.port());
    options.set_keep_alive(Duration::from_secs(30));
    customise(&mut options);
    let (client, eventloop) = rumqttc::v5::AsyncClient::new(options, 100);
    (client, forward(eventloop))
}

/// The incoming PUBLISH of a v4 event.
pub fn publish4(event: &rumqttc::Event) -> Option<rumqttc::Publish> {
    match event {
        rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) => Some(p.clone()),
        _ => None,
    }
}

/// The incoming PUBLISH of a v5 event.
pub fn publish5(event: &rumqttc::v5::Event) -> Option<rumqttc::v5::mqttbytes::v5::Publish> {
    match event {
        rumqttc::v5::Event::Incoming(rumqttc::v5::mqttbytes::v5::Packet::Publish(p)) => {
            Some(p.clone())
        }
        _ => None,
    }
}

/// Waits for CONNACK (v4): its session-present flag.
pub async fn connack4(events: &mut Events<rumqttc::Event>) -> bool {
    events
        .next_matching(|e| match e {
            rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(c)) => Some(c.session_present),
            _ => None,
        })
        .await
}

/// Waits for SUBACK (v4): its return codes.
pub async fn suback4(events: &mut Events<rumqttc::Event>) -> Vec<rumqttc::SubscribeReasonCode> {
    events
        .next_matching(|e| match e {
            rumqttc::Event::Incoming(rumqttc::Packet::SubAck(s)) => Some(s.return_codes.clone()),
            _ => None,
        })
        .await
}

/// Waits for CONNACK (v5).
pub async fn connack5(
    events: &mut Events<rumqttc::v5::Event>,
) -> rumqttc::v5::mqttbytes::v5::ConnAck {
    events
        .next_matching(|e| match e {
            rumqttc::v5::Event::Incoming(rumqttc::v5::mqttbytes::v5::Packet::ConnAck(c)) => {
                Some(c.clone())
            }
            _ => None,
        })
        .await
}

/// Waits for SUBACK (v5).
pub async fn suback5(
    events: &mut Events<rumqttc::v5::Event>,
) -> rumqttc::v5::mqttbytes::v5::SubAck {
    events
        .next_matching(|e| match e {
            rumqttc::v5::Event::Incoming(rumqttc::v5::mqttbytes::v5::Packet::SubAck(s)) => {
                Some(s.clone())
            }
            _ => None,
        })
        .await
}

/// Waits for a PUBACK (v4).
pub async fn puback4(events: &mut Events<rumqttc::Event>) {
    events
        .next_matching(|e| {
            matches!(e, rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))).then_some(())
        })
        .await
}

/// Waits for a PUBACK (v5).
pub async fn puback5(events: &mut Events<rumqttc::v5::Event>) {
    events
        .next_matching(|e| match e {
            rumqttc::v5::Event::Incoming(rumqttc::v5::mqttbytes::v5::Packet::PubAck(_)) => Some(()),
            _ => None,
        })
        .await
}
