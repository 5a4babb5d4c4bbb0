//! One MQTT connection: the CONNECT handshake (`connect`), then a single task that `select!`s over socket
//! reads, deliveries from the session's queues, store syncs (PUBACK / PUBREC after the sync), keep-alive,
//! alarms, takeover and shutdown. Packets are decoded from one read buffer and answers gathered in one write
//! buffer flushed once per turn of the loop (`wire`).
//!
//! Keep-alive: a client silent for one and a half times its keep-alive is disconnected [MQTT-3.1.2-24]
//! (v5 DISCONNECT 0x8D). Alarms: while the memory or disk alarm is raised, a connection that has published
//! is not read (as AMQP publishers are blocked, docs/ARCHITECTURE.md §7), and its keep-alive is paused.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ferrymq_mqtt_codec::{self as codec, Disconnect, Packet, Properties, ReasonCode, Will};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::MqttContext;
use super::connect::{self, Established, Refused};
use super::error::MqttError;
use super::inbound::PendingAck;
use super::outbound::Inflight;
use super::registry::{Keep, Qos2State};
use super::subscriptions::Subscriptions;
use super::wire::Wire;
use crate::core::{ConsumerSink, Publisher, QueueHandle, SinkEvent, SyncView};
use crate::transport::Admission;

/// Deliveries taken from the sink per turn of the loop.
const DELIVERY_BATCH: usize = 256;

/// Why the session loop ended.
#[derive(Debug)]
pub enum End {
    /// The client sent DISCONNECT (v5: with this reason; 0x04 asks for the will).
    Disconnected(ReasonCode),
    /// The socket closed without DISCONNECT.
    Dropped,
    /// The broker closes the connection with this reason (v5 DISCONNECT first).
    Closed(ReasonCode, &'static str),
}

/// A logged-in MQTT connection (the session loop's state; `inbound`, `outbound` and `subscriptions` add
/// their handlers to it).
pub struct Conn<S> {
    pub ctx: Arc<MqttContext>,
    pub peer: SocketAddr,
    pub wire: Wire<S>,
    pub est: Established,
    pub publisher: Publisher,
    pub sync: SyncView,
    /// Where the session's queues deliver, made on the first subscription (an idle connection that never
    /// subscribes holds no channel).
    sink: Option<ConsumerSink>,
    pub sink_rx: Option<mpsc::UnboundedReceiver<SinkEvent>>,
    pub subs: Subscriptions,
    /// Deliveries to the client awaiting PUBACK / PUBREC / PUBCOMP, by packet id.
    pub inflight: Inflight,
    /// Answers to the client's QoS 1/2 publishes, in order, waiting for their sync.
    pub pending_acks: VecDeque<PendingAck>,
    /// QoS 2 packet ids received and not released (kept in the registry between connections).
    pub incoming_qos2: HashSet<u16>,
    /// Topic aliases the client set (v5), alias to topic.
    pub aliases_in: HashMap<u16, String>,
    /// Topic aliases the broker set towards the client (v5), topic to alias; at most the client's Topic
    /// Alias Maximum of them [MQTT-3.3.2-8].
    pub aliases_out: HashMap<String, u16>,
    /// Write-window credit to return to queues once the current batch is written.
    pub written: Vec<(QueueHandle, u64, u32, u64)>,
    pub has_published: bool,
    will: Option<Will>,
}

/// Serves one connection from CONNECT to close.
pub async fn run<S>(
    stream: S,
    certificate_name: Option<String>,
    peer: SocketAddr,
    mut admission: Admission,
    ctx: Arc<MqttContext>,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let max_unauthenticated = ctx.config.max_packet_size_unauthenticated as usize;
    let mut wire = Wire::new(stream, ctx.broker.client_memory(), max_unauthenticated);
    let timeout = admission.handshake_timeout();
    let evicted = admission.evicted().clone();
    let first = tokio::select! {
        r = tokio::time::timeout(timeout, read_connect(&mut wire)) => r.unwrap_or(Ok(None)),
        _ = shutdown.cancelled() => Ok(None),
        _ = evicted.cancelled() => Ok(None),
    };
    let connect = match first {
        Ok(Some(connect)) => connect,
        Ok(None) => return wire.shutdown().await,
        Err(e) => return refuse_malformed(&mut wire, peer, e).await,
    };
    wire.version = connect.version;
    let conn_id = ctx.broker.next_conn_id();
    let login = connect::Login {
        peer,
        certificate_name: certificate_name.as_deref(),
    };
    // The login, the session's opening and closing and the handling of what was read run as boxed futures:
    // inline, the largest of them would size this connection's future (8.9 KiB, against 3.6 KiB now) for the
    // whole life of an idle connection.
    let est = match Box::pin(connect::accept(
        &ctx,
        login,
        conn_id,
        &mut admission,
        connect,
    ))
    .await
    {
        Ok(est) => est,
        Err(Refused(reason)) => {
            wire.send(&connect::refusal(reason));
            return wire.shutdown().await;
        }
    };
    let Some(mut conn) = Box::pin(Conn::open(ctx, peer, wire, est)).await else {
        return;
    };
    info!(peer = %peer, client_id = ?conn.est.client_id, version = ?conn.wire.version, conn = conn_id, "MQTT connection opened");
    let end = conn.serve(&shutdown).await;
    debug!(client_id = ?conn.est.client_id, end = ?end, "MQTT session loop ended");
    Box::pin(conn.close(end)).await;
    drop(admission);
}

/// The next delivery event, once the session has a sink (pending until then).
async fn next_event(rx: &mut Option<mpsc::UnboundedReceiver<SinkEvent>>) -> Option<SinkEvent> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Reads the first packet, which must be CONNECT [MQTT-3.1.0-1]; `None` when the client went away or sent
/// something else (then the connection is closed without an answer).
async fn read_connect<S: AsyncRead + AsyncWrite + Unpin>(
    wire: &mut Wire<S>,
) -> Result<Option<Box<codec::Connect>>, MqttError> {
    loop {
        match wire.next_packet()? {
            Some(Packet::Connect(connect)) => return Ok(Some(connect)),
            Some(_) => return Ok(None),
            None => {}
        }
        if wire.read().await? == 0 {
            return Ok(None);
        }
    }
}

/// A CONNECT the codec refused: an unsupported protocol level gets CONNACK with return code 1 in the 3.1.1
/// form [MQTT-3.1.2-2] (reason 0x84 in the v5 form for level 5 under a wrong name); anything else closes the
/// connection [MQTT-4.8.0-1].
async fn refuse_malformed<S: AsyncRead + AsyncWrite + Unpin>(
    wire: &mut Wire<S>,
    peer: SocketAddr,
    error: MqttError,
) {
    debug!(%peer, error = %error, "MQTT CONNECT refused");
    if let MqttError::Decode(codec::DecodeError::UnsupportedProtocol { level, .. }) = &error {
        if *level == 5 {
            wire.version = codec::ProtocolVersion::V5;
        }
        wire.send(&connect::refusal(ReasonCode::UNSUPPORTED_PROTOCOL_VERSION));
    }
    wire.shutdown().await;
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Conn<S> {
    /// Sets the session up (queue, subscriptions) and sends CONNACK; `None` when that failed (the client has
    /// been told).
    async fn open(
        ctx: Arc<MqttContext>,
        peer: SocketAddr,
        mut wire: Wire<S>,
        mut est: Established,
    ) -> Option<Self> {
        wire.max_in = ctx.config.max_packet_size as usize;
        if let Some(max) = est.connect.properties.maximum_packet_size {
            wire.max_out = max as usize;
        }
        let receive_max = est.connect.properties.receive_maximum.unwrap_or(u16::MAX);
        let prefetch = u32::from(receive_max.min(ctx.config.max_inflight));
        let subs = Subscriptions::new(&ctx.config, &est, prefetch);
        let publisher = Publisher::new(est.core.clone());
        let qos2 = std::mem::take(&mut est.claim.qos2);
        let will = est.connect.will.clone();
        let mut conn = Self {
            sync: ctx.broker.sync_view(),
            ctx,
            peer,
            wire,
            est,
            publisher,
            sink: None,
            sink_rx: None,
            subs,
            inflight: Inflight::default(),
            pending_acks: VecDeque::new(),
            incoming_qos2: qos2.incoming,
            aliases_in: HashMap::new(),
            aliases_out: HashMap::new(),
            written: Vec::new(),
            has_published: false,
            will,
        };
        let present = match conn.restore_session().await {
            Ok(present) => present,
            Err(e) => {
                conn.wire.send(&connect::refusal(e.reason_code()));
                conn.wire.shutdown().await;
                drop(conn.release(None));
                return None;
            }
        };
        let connack = connect::connack(&conn.ctx, &conn.est, present);
        conn.wire.send(&connack);
        if present {
            conn.inflight.resume(qos2.resend);
            conn.release_again(qos2.released);
        }
        Some(conn)
    }

    /// The session loop (see the module docs).
    async fn serve(&mut self, shutdown: &CancellationToken) -> End {
        let mut disk = self.ctx.broker.disk_alarm();
        let mut memory = self.ctx.broker.memory().alarm();
        let takeover = self.est.claim.takeover.clone();
        let keep_alive = self.keep_alive();
        let mut deadline = Instant::now() + keep_alive;
        // Packets that arrived with CONNECT are already buffered: no read will announce them.
        match Box::pin(self.on_readable()).await {
            Ok(None) => {}
            Ok(Some(end)) => return end,
            Err(e) => return End::Closed(e.reason_code(), "protocol error"),
        }
        loop {
            if let Err(e) = self.wire.flush().await {
                debug!(error = %e, "MQTT write failed");
                return End::Dropped;
            }
            self.return_written();
            self.wire.account();
            let blocked = self.has_published && (*disk.borrow() || *memory.borrow());
            if blocked {
                deadline = Instant::now() + keep_alive;
            }
            let waiting_sync = !self.pending_acks.is_empty();
            let step = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return End::Closed(ReasonCode::SERVER_SHUTTING_DOWN, "server shutting down"),
                _ = takeover.cancelled() => return End::Closed(ReasonCode::SESSION_TAKEN_OVER, "session taken over"),
                read = self.wire.read(), if !blocked => match read {
                    Ok(0) | Err(_) => return End::Dropped,
                    Ok(_) => {
                        deadline = Instant::now() + keep_alive;
                        Box::pin(self.on_readable()).await
                    }
                },
                Some(event) = next_event(&mut self.sink_rx) => self.on_sink_events(event),
                _ = self.sync.changed(), if waiting_sync => Ok(None),
                _ = disk.changed() => Ok(None),
                _ = memory.changed() => Ok(None),
                _ = tokio::time::sleep_until(deadline), if !keep_alive.is_zero() => {
                    return End::Closed(ReasonCode::KEEP_ALIVE_TIMEOUT, "keep alive timeout");
                }
            };
            match step {
                Ok(None) => {}
                Ok(Some(end)) => return end,
                Err(e) => {
                    debug!(peer = %self.peer, error = %e, "MQTT protocol error");
                    return End::Closed(e.reason_code(), "protocol error");
                }
            }
            self.answer_settled();
        }
    }

    /// One and a half times the client's keep-alive; zero when it turned keep-alive off.
    fn keep_alive(&self) -> Duration {
        Duration::from_millis(u64::from(self.est.connect.keep_alive) * 1500)
    }

    /// Handles every whole packet buffered.
    async fn on_readable(&mut self) -> Result<Option<End>, MqttError> {
        while let Some(packet) = self.wire.next_packet()? {
            if let Some(end) = self.on_packet(packet).await? {
                return Ok(Some(end));
            }
            if self.wire.should_flush() {
                self.wire.flush().await?;
            }
        }
        self.publisher.flush().await;
        Ok(None)
    }

    async fn on_packet(&mut self, packet: Packet) -> Result<Option<End>, MqttError> {
        match packet {
            Packet::Publish(publish) => self.on_publish(publish).await?,
            Packet::PubAck(ack) => self.on_puback(ack.packet_id),
            Packet::PubRec(ack) => self.on_pubrec(ack),
            Packet::PubRel(ack) => self.on_pubrel(ack.packet_id),
            Packet::PubComp(ack) => self.on_pubcomp(ack.packet_id),
            Packet::Subscribe(subscribe) => self.on_subscribe(subscribe).await?,
            Packet::Unsubscribe(unsubscribe) => self.on_unsubscribe(unsubscribe)?,
            Packet::PingReq => {
                self.wire.send(&Packet::PingResp);
            }
            Packet::Disconnect(d) => return self.on_disconnect(d).map(Some),
            Packet::Connect(_) => {
                return Err(MqttError::protocol(
                    ReasonCode::PROTOCOL_ERROR,
                    "second CONNECT",
                )); // [MQTT-3.1.0-2]
            }
            Packet::Auth(_) => {
                return Err(MqttError::protocol(
                    ReasonCode::PROTOCOL_ERROR,
                    "AUTH without an authentication method",
                ));
            }
            Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => {
                return Err(MqttError::protocol(
                    ReasonCode::PROTOCOL_ERROR,
                    "a packet only a server sends",
                ));
            }
        }
        Ok(None)
    }

    /// DISCONNECT from the client: a normal one discards the will [MQTT-3.14.4-3]; v5 reason 0x04 keeps it.
    fn on_disconnect(&mut self, d: Disconnect) -> Result<End, MqttError> {
        let asked = d.properties.session_expiry_interval;
        if asked.is_some_and(|s| s > 0) && self.est.session_expiry == 0 {
            return Err(MqttError::protocol(
                ReasonCode::PROTOCOL_ERROR,
                "session expiry set on DISCONNECT",
            )); // [MQTT-3.14.2-2]
        }
        if let Some(asked) = asked {
            self.est.session_expiry = asked.min(self.ctx.config.max_session_expiry_secs);
            self.set_session_expiry()?;
        }
        Ok(End::Disconnected(d.reason))
    }

    fn on_sink_events(&mut self, first: SinkEvent) -> Result<Option<End>, MqttError> {
        self.on_sink_event(first);
        for _ in 0..DELIVERY_BATCH {
            match self.sink_rx.as_mut().map(|rx| rx.try_recv()) {
                Some(Ok(event)) => self.on_sink_event(event),
                _ => break,
            }
        }
        Ok(None)
    }

    fn return_written(&mut self) {
        for (queue, consumer, count, bytes) in self.written.drain(..) {
            queue.written(consumer, count, bytes);
        }
    }

    /// Ends the connection: a v5 DISCONNECT when the broker closes it, the will when the end asks for it,
    /// the session's consumers cancelled (unacknowledged messages go back to its queue), a clean session's
    /// queue deleted, and the client id given back.
    async fn close(mut self, end: End) {
        match &end {
            End::Closed(reason, text) if self.wire.version.is_v5() => {
                let properties = Properties {
                    reason_string: Some((*text).to_owned()),
                    ..Properties::default()
                };
                self.wire.send(&Packet::Disconnect(Disconnect {
                    reason: *reason,
                    properties,
                }));
            }
            _ => {}
        }
        self.wire.shutdown().await;
        let publish_will = match end {
            End::Disconnected(reason) => reason == ReasonCode::DISCONNECT_WITH_WILL,
            End::Dropped => true,
            End::Closed(reason, _) => {
                reason != ReasonCode::SESSION_TAKEN_OVER || self.est.session_expiry == 0
            }
        };
        let will = self.will.take().filter(|_| publish_will);
        let pending = match will {
            Some(will) => self.schedule_will(will).await,
            None => None,
        };
        self.subs.detach().await;
        self.requeue_unacknowledged();
        if !self.est.persistent() {
            self.end_session().await;
        }
        self.est.core.close().await;
        info!(peer = %self.peer, client_id = ?self.est.client_id, "MQTT connection closed");
        let v5 = self.wire.version.is_v5();
        let wire = self.release(pending);
        if v5 && matches!(end, End::Closed(..)) {
            wire.linger().await;
        }
    }

    /// The sink the session's consumers deliver to, made on first use.
    pub fn sink(&mut self) -> ConsumerSink {
        if let Some(sink) = &self.sink {
            return sink.clone();
        }
        let (sink, rx) = mpsc::unbounded_channel();
        self.sink_rx = Some(rx);
        self.sink = Some(sink.clone());
        sink
    }

    /// This connection as messages name their publisher (`Properties::publisher`).
    pub fn publisher_id(&self) -> u32 {
        self.est.core.conn() as u32 // truncated: it only has to differ from the other live connections
    }

    /// Gives the client id back to the registry; the socket is what is left.
    fn release(mut self, pending_will: Option<CancellationToken>) -> Wire<S> {
        let keep = if self.est.persistent() {
            Keep::Session
        } else {
            Keep::Nothing
        };
        let released = self.inflight.released();
        let resend = self.inflight.take_resend();
        let Self {
            ctx,
            mut est,
            incoming_qos2,
            wire,
            ..
        } = self;
        est.claim.qos2 = Qos2State {
            incoming: incoming_qos2,
            released,
            resend,
        };
        ctx.registry
            .release(&est.client_id, est.claim, keep, pending_will);
        wire
    }
}
