//! One AMQP connection: the handshake (protocol header, start/start-ok with PLAIN or AMQPLAIN, tune, open),
//! then a single task that `select!`s over socket reads, deliveries from queues, store syncs (confirms),
//! heartbeats, disk alarms and shutdown. Frames are decoded from one read buffer and replies are gathered in
//! one write buffer flushed once per turn of the loop.
//!
//! Memory. Everything the connection holds is on its ledger in the memory gauge (`core::memory`): the read
//! buffer's chunk and the write buffer (set once per turn), and per channel the unfinished message and the
//! transaction's work (charged frame by frame, capped per connection). Before each read the ledger is
//! reported and the alarms are checked: a connection that publishes is not read while an alarm is raised,
//! as RabbitMQ blocks publishers, and its heartbeat monitor is paused meanwhile (rabbit_reader does the same).
//! Frames whose parts outlive decoding (bodies, headers, arguments kept by exchanges and queues) are decoded
//! from a copy when they are small next to the read chunk, so they never pin it (`transport::read_buffer`);
//! large bodies are split off without a copy. The write buffer is bounded by [`FLUSH_AT`] plus one message,
//! and what queues hand to the connection before it is written is bounded and counted by the queues
//! (`core::queue::WRITE_WINDOW_BYTES`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ferrymq_amqp_codec::{
    self as codec, ConnectionClose, ConnectionStart, ConnectionTune, FieldTable, FieldValue, Frame,
    Method, ProtocolHeader,
};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::AmqpContext;
use super::channel::ChannelTable;
use super::convert::Outgoing;
use super::error::{AmqpError, Scope, code};
use super::methods::PublishStep;
use crate::core::{Charge, ChargeKind, ClientMemory, SyncView};
use crate::core::{ConnId, Session};
use crate::core::{ConsumerKey, ConsumerSink, Deliveries, QueueHandle, SinkEvent};
use crate::transport::{Admission, ReadBuffer};

/// Flush the write buffer once it holds this much, even mid-batch.
const FLUSH_AT: usize = 256 * 1024;
/// After a flush the write buffer lets go of its memory when it grew beyond this (for a large message).
const OUT_KEEP: usize = 2 * FLUSH_AT;
/// Deliveries taken from the sink per turn of the loop.
const DELIVERY_BATCH: usize = 512;
/// A read this large that published something makes the connection yield to the queues it fed.
const YIELD_AFTER: usize = 8 * 1024;
/// How long to wait for the peer's close-ok after we closed the connection.
const CLOSE_OK_WAIT: Duration = Duration::from_secs(2);

/// Capabilities the client said it supports (client-properties.capabilities).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct ClientCaps {
    pub consumer_cancel_notify: bool,
    pub connection_blocked: bool,
    pub authentication_failure_close: bool,
}

/// Where a consumer's deliveries go on this connection.
#[derive(Debug, Clone)]
pub(super) struct ConsumerRoute {
    pub channel: u16,
    pub tag: Arc<str>,
    pub no_ack: bool,
}

/// Why the loop ended.
enum End {
    /// Peer closed the socket or completed a close handshake.
    Closed,
    /// We sent connection.close and must wait for close-ok.
    AwaitCloseOk,
}

pub(super) struct Connection<S> {
    pub ctx: Arc<AmqpContext>,
    pub peer: SocketAddr,
    reader: ReadHalf<S>,
    writer: WriteHalf<S>,
    inbuf: ReadBuffer,
    pub out: BytesMut,
    /// This connection's ledger in the memory gauge; channels charge their content to it.
    pub memory: ClientMemory,
    /// The read and write buffers, on the ledger.
    buffers: Charge,
    pub frame_max: u32,
    pub channel_max: u16,
    heartbeat: u16,
    pub session: Option<Session>,
    pub conn_id: ConnId,
    pub channels: ChannelTable,
    pub consumers: HashMap<ConsumerKey, ConsumerRoute>,
    pub sink: ConsumerSink,
    sink_rx: mpsc::UnboundedReceiver<SinkEvent>,
    pub sync: SyncView,
    blocked_rx: watch::Receiver<bool>,
    memory_rx: watch::Receiver<bool>,
    pub caps: ClientCaps,
    last_recv: Instant,
    last_sent: Instant,
    pub has_published: bool,
    blocked: bool,
    /// Write-window credit (deliveries, body bytes) to hand back to queues once the current batch reaches
    /// the socket.
    written: Vec<(QueueHandle, ConsumerKey, u32, u64)>,
    pub(super) user: String,
    /// This connection's place in the AMQP connection budget (handshake, then open).
    pub(super) admission: Admission,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Connection<S> {
    pub(super) fn new(
        stream: S,
        peer: SocketAddr,
        admission: Admission,
        ctx: Arc<AmqpContext>,
    ) -> Self {
        let (reader, writer) = tokio::io::split(stream);
        let (sink, sink_rx) = mpsc::unbounded_channel();
        let sync = ctx.broker.sync_view();
        let blocked_rx = ctx.broker.disk_alarm();
        let memory_rx = ctx.broker.memory().alarm();
        let conn_id = ctx.broker.next_conn_id();
        let memory = ctx.broker.client_memory();
        let buffers = memory.charge(ChargeKind::Buffer);
        Self {
            frame_max: ctx.config.frame_max,
            channel_max: ctx.config.channel_max,
            heartbeat: ctx.config.heartbeat_secs,
            ctx,
            peer,
            reader,
            writer,
            inbuf: ReadBuffer::default(),
            out: BytesMut::new(),
            memory,
            buffers,
            session: None,
            conn_id,
            channels: ChannelTable::default(),
            consumers: HashMap::new(),
            sink,
            sink_rx,
            sync,
            blocked_rx,
            memory_rx,
            caps: ClientCaps::default(),
            last_recv: Instant::now(),
            last_sent: Instant::now(),
            has_published: false,
            blocked: false,
            written: Vec::new(),
            user: String::new(),
            admission,
        }
    }

    /// Run the connection to its end; always cleans up channels and exclusive queues.
    pub(super) async fn run(mut self, shutdown: CancellationToken) {
        let timeout = self.admission.handshake_timeout();
        let evicted = self.admission.evicted().clone();
        let opened = tokio::select! {
            r = tokio::time::timeout(timeout, self.handshake()) => match r {
                Ok(Ok(true)) => true,
                Ok(Ok(false)) => false,
                Ok(Err(e)) => {
                    self.fail(e).await;
                    false
                }
                Err(_) => {
                    debug!(peer = %self.peer, "AMQP handshake timed out");
                    false
                }
            },
            _ = shutdown.cancelled() => false,
            _ = evicted.cancelled() => {
                debug!(peer = %self.peer, "AMQP handshake dropped to make room (amqp.max_handshakes)");
                false
            }
        };
        if opened {
            // Client-supplied strings are logged with `?` (quoted, escaped), never `%`.
            info!(peer = %self.peer, user = ?self.user, conn = self.conn_id, "AMQP connection opened");
            let end = self.serve(&shutdown).await;
            let _ = self.flush().await;
            if let End::AwaitCloseOk = end {
                self.await_close_ok().await;
            }
            self.cleanup().await;
            info!(peer = %self.peer, conn = self.conn_id, "AMQP connection closed");
        }
        let _ = self.writer.shutdown().await;
    }

    // ---- I/O helpers ----

    pub(super) fn send_method(&mut self, channel: u16, method: &Method) {
        codec::encode_method(channel, method, &mut self.out);
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if !self.out.is_empty() {
            self.writer.write_all(&self.out).await?;
            // TLS streams buffer records until flushed; on TCP this is a no-op.
            self.writer.flush().await?;
            self.out.clear();
            if self.out.capacity() > OUT_KEEP {
                self.out = BytesMut::new();
            }
            self.last_sent = Instant::now();
        }
        for (queue, consumer, count, bytes) in self.written.drain(..) {
            queue.written(consumer, count, bytes);
        }
        Ok(())
    }

    /// Puts the buffers' current sizes on the ledger and tells the gauge what changed since the last turn.
    fn account(&mut self) {
        let held = self.inbuf.allocated() + self.out.capacity();
        self.buffers.set(held as u64);
        self.memory.report();
    }

    /// Read until one whole frame is buffered (handshake only; the main loop decodes in batches).
    async fn read_frame(&mut self) -> Result<Option<Frame>, AmqpError> {
        loop {
            if let Some(frame) = codec::decode_frame(self.inbuf.bytes(), self.frame_max)? {
                return Ok(Some(frame));
            }
            match self.inbuf.read_from(&mut self.reader, 0).await {
                Ok(0) | Err(_) => return Ok(None),
                Ok(_) => self.last_recv = Instant::now(),
            }
        }
    }

    // ---- handshake ----

    /// Returns Ok(true) once connection.open-ok was sent; Ok(false) when the peer went away or spoke another
    /// protocol (answered with our header, as the spec asks).
    async fn handshake(&mut self) -> Result<bool, AmqpError> {
        let header = loop {
            if let Some(h) = codec::decode_protocol_header(self.inbuf.bytes()) {
                break h;
            }
            match self.inbuf.read_from(&mut self.reader, 0).await {
                Ok(0) | Err(_) => return Ok(false),
                Ok(_) => {}
            }
        };
        if let ProtocolHeader::Mismatch = header {
            let _ = self.writer.write_all(&codec::PROTOCOL_HEADER).await;
            return Ok(false);
        }
        let start = ConnectionStart {
            version_major: 0,
            version_minor: 9,
            server_properties: self.server_properties(),
            mechanisms: Bytes::from_static(b"PLAIN AMQPLAIN"),
            locales: Bytes::from_static(b"en_US"),
        };
        self.send_method(0, &Method::ConnectionStart(start));
        self.flush().await.map_err(io_closed)?;

        let Some(start_ok) = self.expect_method().await? else {
            return Ok(false);
        };
        let Method::ConnectionStartOk(start_ok) = start_ok else {
            return Err(AmqpError::connection(
                code::COMMAND_INVALID,
                "expected connection.start-ok",
            )
            .during(10, 11));
        };
        self.read_caps(&start_ok.client_properties);
        let (user, pass) = credentials(&start_ok.mechanism, &start_ok.response)?;
        let user = match self.ctx.broker.authenticate(&user, &pass, self.peer.ip()) {
            Ok(u) => u,
            Err(e) => {
                warn!(peer = %self.peer, user = ?user, error = %e, "AMQP login refused");
                let text = format!(
                    "Login was refused using authentication mechanism {}. For details see the broker logfile.",
                    start_ok.mechanism
                );
                return Err(AmqpError::connection(code::ACCESS_REFUSED, text));
            }
        };
        self.user = user.name.clone();

        let tune = ConnectionTune {
            channel_max: self.channel_max,
            frame_max: self.frame_max,
            heartbeat: self.heartbeat,
        };
        self.send_method(0, &Method::ConnectionTune(tune));
        self.flush().await.map_err(io_closed)?;
        let Some(Method::ConnectionTuneOk(tune_ok)) = self.expect_method().await? else {
            return Err(AmqpError::connection(
                code::COMMAND_INVALID,
                "expected connection.tune-ok",
            )
            .during(10, 31));
        };
        self.negotiate(tune_ok.channel_max, tune_ok.frame_max, tune_ok.heartbeat)?;

        let Some(Method::ConnectionOpen(open)) = self.expect_method().await? else {
            return Err(
                AmqpError::connection(code::COMMAND_INVALID, "expected connection.open")
                    .during(10, 40),
            );
        };
        // Node-wide, vhost and user connection limits, refused in RabbitMQ's words.
        self.admission
            .establish(&user.name, &open.virtual_host)
            .map_err(|e| AmqpError::connection(code::NOT_ALLOWED, e.to_string()).during(10, 40))?;
        let session = self
            .ctx
            .broker
            .open_session(user, &open.virtual_host, self.conn_id)
            .map_err(|e| AmqpError::connection(code::NOT_ALLOWED, e.to_string()).during(10, 40))?;
        self.session = Some(session);
        self.send_method(0, &Method::ConnectionOpenOk);
        self.flush().await.map_err(io_closed)?;
        Ok(true)
    }

    async fn expect_method(&mut self) -> Result<Option<Method>, AmqpError> {
        loop {
            match self.read_frame().await? {
                None => return Ok(None),
                Some(Frame::Heartbeat(_)) => continue,
                Some(Frame::Method(0, m)) => return Ok(Some(m)),
                Some(_) => {
                    return Err(AmqpError::connection(
                        code::COMMAND_INVALID,
                        "unexpected frame during the handshake",
                    ));
                }
            }
        }
    }

    fn negotiate(
        &mut self,
        channel_max: u16,
        frame_max: u32,
        heartbeat: u16,
    ) -> Result<(), AmqpError> {
        if frame_max != 0 && frame_max < codec::FRAME_MIN_SIZE {
            return Err(AmqpError::connection(
                code::SYNTAX_ERROR,
                format!("frame_max={frame_max} < {} min size", codec::FRAME_MIN_SIZE),
            ));
        }
        if frame_max > self.frame_max {
            return Err(AmqpError::connection(
                code::NOT_ALLOWED,
                format!("frame_max={frame_max} > {} max size", self.frame_max),
            ));
        }
        if frame_max != 0 {
            self.frame_max = frame_max;
        }
        if channel_max != 0 {
            self.channel_max = channel_max.min(self.channel_max);
        }
        self.heartbeat = heartbeat;
        Ok(())
    }

    fn read_caps(&mut self, props: &FieldTable) {
        let Some(FieldValue::Table(caps)) = props.get("capabilities") else {
            return;
        };
        let on = |k: &str| caps.get(k).and_then(|v| v.as_bool()).unwrap_or(false);
        self.caps = ClientCaps {
            consumer_cancel_notify: on("consumer_cancel_notify"),
            connection_blocked: on("connection.blocked"),
            authentication_failure_close: on("authentication_failure_close"),
        };
    }

    fn server_properties(&self) -> FieldTable {
        let s = |v: &str| FieldValue::LongStr(Bytes::copy_from_slice(v.as_bytes()));
        let mut caps = FieldTable::default();
        for cap in [
            "publisher_confirms",
            "exchange_exchange_bindings",
            "basic.nack",
            "consumer_cancel_notify",
            "connection.blocked",
            "consumer_priorities",
            "authentication_failure_close",
            "per_consumer_qos",
            "direct_reply_to",
        ] {
            caps.insert(cap, FieldValue::Bool(true));
        }
        let mut props = FieldTable::default();
        props.insert("capabilities", FieldValue::Table(caps));
        props.insert("cluster_name", s("ferrymq@localhost"));
        props.insert("copyright", s("Copyright (c) the FerryMQ authors"));
        props.insert("information", s("Licensed under the Apache License 2.0"));
        props.insert(
            "platform",
            s(&format!("Rust {}", env!("CARGO_PKG_RUST_VERSION"))),
        );
        props.insert("product", s(&self.ctx.config.product));
        props.insert("version", s(env!("CARGO_PKG_VERSION")));
        props
    }

    // ---- main loop ----

    async fn serve(&mut self, shutdown: &CancellationToken) -> End {
        let hb = Duration::from_secs(self.heartbeat.max(1) as u64);
        let mut ticker = tokio::time::interval(if self.heartbeat == 0 {
            Duration::from_secs(3600)
        } else {
            hb / 2
        });
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.on_blocked_change(); // an alarm already raised before this connection opened
        loop {
            self.account();
            if let Err(e) = self.flush().await {
                debug!(peer = %self.peer, error = %e, "AMQP write failed");
                return End::Closed;
            }
            self.check_alarms();
            let wait_sync = self
                .channels
                .iter()
                .any(|(_, c)| c.confirms.as_ref().is_some_and(|c| c.waits_for_sync()));
            let reading = !(self.blocked && self.has_published);
            let want = self.frame_remaining();
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => {
                    let close = AmqpError::connection(code::CONNECTION_FORCED, "broker forced connection closure with reason 'shutdown'");
                    self.send_close(&close);
                    return End::AwaitCloseOk;
                }
                Some(event) = self.sink_rx.recv() => {
                    self.on_sink(event);
                    for _ in 1..DELIVERY_BATCH {
                        match self.sink_rx.try_recv() {
                            Ok(event) => self.on_sink(event),
                            Err(_) => break,
                        }
                        if self.out.len() >= FLUSH_AT {
                            break;
                        }
                    }
                }
                r = self.inbuf.read_from(&mut self.reader, want), if reading => match r {
                    Ok(0) | Err(_) => return End::Closed,
                    Ok(read) => {
                        self.last_recv = Instant::now();
                        match self.on_input(read).await {
                            Ok(None) => {}
                            Ok(Some(end)) => return end,
                            Err(e) => {
                                self.send_close(&e);
                                return End::AwaitCloseOk;
                            }
                        }
                    }
                },
                r = self.sync.changed(), if wait_sync => {
                    if r.is_err() {
                        return End::Closed;
                    }
                }
                Ok(()) = self.blocked_rx.changed() => self.on_blocked_change(),
                Ok(()) = self.memory_rx.changed() => self.on_blocked_change(),
                _ = ticker.tick(), if self.heartbeat > 0 => {
                    if reading && self.last_recv.elapsed() > hb * 2 {
                        warn!(peer = %self.peer, timeout_s = self.heartbeat, "missed heartbeats from client, closing");
                        return End::Closed;
                    }
                    if self.last_sent.elapsed() >= hb / 2 {
                        codec::encode_heartbeat(&mut self.out);
                    }
                }
            }
            self.release_confirms();
        }
    }

    /// Decode and handle every complete frame in the read buffer (`read` bytes came in); then hand what was
    /// published to the queues.
    async fn on_input(&mut self, read: usize) -> Result<Option<End>, AmqpError> {
        let result = self.on_frames().await;
        if self.flush_publishes().await && read >= YIELD_AFTER {
            // A fast publisher: let the queues just fed (woken onto this worker) and their consumers run
            // before reading more, so it feeds consumers instead of a backlog. (After a small read the loop
            // parks on the socket anyway, and a yield would only wake another worker.)
            tokio::task::yield_now().await;
        }
        result
    }

    async fn on_frames(&mut self) -> Result<Option<End>, AmqpError> {
        loop {
            let Some(frame) = self.next_frame()? else {
                self.inbuf.release_if_empty();
                return Ok(None);
            };
            let channel = frame_channel(&frame);
            // The publish path takes no await unless a publish must wait (`methods::publish`).
            let step = match frame {
                Frame::Method(ch @ 1.., method @ Method::BasicPublish(_)) => {
                    self.on_publish_method(ch, method)
                }
                Frame::Header(ch @ 1.., header) => {
                    self.has_published = true;
                    self.on_header(ch, header)
                }
                Frame::Body(ch @ 1.., body) => {
                    self.has_published = true;
                    self.on_body(ch, body)
                }
                frame => {
                    if let Frame::Method(..) = frame {
                        // Whatever this method does, it comes after the publishes before it.
                        self.flush_publishes().await;
                    }
                    match self.on_frame(frame).await {
                        Ok(Some(end)) => return Ok(Some(end)),
                        Ok(None) => Ok(PublishStep::Done),
                        Err(e) => Err(e),
                    }
                }
            };
            let result = match step {
                Ok(PublishStep::Done) => Ok(()),
                Ok(step) => self.finish_step(step).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => {}
                Err(e) if e.scope == Scope::Channel && channel != 0 => {
                    self.close_channel_with(channel, &e)
                }
                Err(e) => return Err(e),
            }
            if self.out.len() >= FLUSH_AT {
                self.flush().await.map_err(io_closed)?;
            }
        }
    }

    async fn on_frame(&mut self, frame: Frame) -> Result<Option<End>, AmqpError> {
        match frame {
            Frame::Heartbeat(0) => Ok(None),
            Frame::Heartbeat(_) => Err(AmqpError::connection(
                code::FRAME_ERROR,
                "heartbeat frame on a non-zero channel",
            )),
            Frame::Method(0, method) => self.on_connection_method(method),
            Frame::Method(ch, method) => self.on_channel_method(ch, method).await.map(|_| None),
            Frame::Header(0, _) | Frame::Body(0, _) => Err(AmqpError::connection(
                code::UNEXPECTED_FRAME,
                "content frame on channel 0",
            )),
            Frame::Header(ch, header) => {
                self.has_published = true;
                let step = self.on_header(ch, header)?;
                self.finish_step(step).await.map(|_| None)
            }
            Frame::Body(ch, body) => {
                self.has_published = true;
                let step = self.on_body(ch, body)?;
                self.finish_step(step).await.map(|_| None)
            }
        }
    }

    /// The next whole frame in the read buffer. One whose parts outlive it and that is small next to the
    /// read chunk does not keep the chunk alive: a body is copied out by the codec, the arguments of an
    /// exchange or queue method are decoded from a copy of the frame.
    fn next_frame(&mut self) -> Result<Option<Frame>, AmqpError> {
        let body = match outliving_frame(self.inbuf.bytes()) {
            Some((len, Outliving::Body)) if self.inbuf.pins(len) => codec::BodyPayload::Copied,
            Some((len, Outliving::Arguments)) if self.inbuf.pins(len) => {
                let mut own = self.inbuf.split_copy(len);
                return Ok(codec::decode_frame(&mut own, self.frame_max)?);
            }
            _ => codec::BodyPayload::Split,
        };
        Ok(codec::decode_frame_with(
            self.inbuf.bytes(),
            self.frame_max,
            body,
        )?)
    }

    /// Bytes the partly buffered frame still needs (0 when none is started or its size is not known yet), so
    /// that the next read makes room for all of it in one chunk.
    fn frame_remaining(&mut self) -> usize {
        let buf = self.inbuf.bytes();
        let Some(size) = buf.get(3..7) else {
            return 0;
        };
        let size = u32::from_be_bytes([size[0], size[1], size[2], size[3]]);
        let total = size as usize + codec::FRAME_OVERHEAD;
        let within = self.frame_max == 0 || total <= self.frame_max as usize;
        if within {
            total.saturating_sub(buf.len())
        } else {
            0
        }
    }

    fn on_connection_method(&mut self, method: Method) -> Result<Option<End>, AmqpError> {
        match method {
            Method::ConnectionClose(close) => {
                debug!(peer = %self.peer, code = close.reply_code, text = ?close.reply_text, "client closed connection");
                self.send_method(0, &Method::ConnectionCloseOk);
                Ok(Some(End::Closed))
            }
            Method::ConnectionUpdateSecret(_) => {
                self.send_method(0, &Method::ConnectionUpdateSecretOk);
                Ok(None)
            }
            Method::ConnectionBlocked(_) | Method::ConnectionUnblocked => Ok(None),
            // Anything else, connection.close-ok included (the server has not sent connection.close: that
            // path is `await_close_ok`), is out of sequence; RabbitMQ's rabbit_reader answers 504 the same way.
            other => Err(AmqpError::connection(
                code::CHANNEL_ERROR,
                format!(
                    "unexpected method {} in connection state running",
                    method_name(&other)
                ),
            )
            .during(other.class_id(), other.method_id())),
        }
    }

    // ---- closing ----

    pub(super) fn send_close(&mut self, e: &AmqpError) {
        debug!(peer = %self.peer, code = e.code, text = %e.text, "closing AMQP connection");
        let close = ConnectionClose {
            reply_code: e.code,
            reply_text: e.reply_text(),
            class_id: e.class_id,
            method_id: e.method_id,
        };
        self.send_method(0, &Method::ConnectionClose(close));
    }

    /// A failure before the connection opened: report it (when the client can hear it) and stop.
    async fn fail(&mut self, e: AmqpError) {
        let silent = e.code == code::ACCESS_REFUSED && !self.caps.authentication_failure_close;
        if !silent {
            self.send_close(&e);
            if self.flush().await.is_ok() {
                self.await_close_ok().await;
            }
        }
    }

    /// After our connection.close, at most [`CLOSE_OK_WAIT`]: AMQP 0-9-1 connection.close rule, "any received
    /// methods except Close and Close-OK MUST be discarded. The response to receiving a Close after sending
    /// Close must be to send Close-Ok." A crossing close is answered and we keep waiting for the peer's
    /// close-ok (as RabbitMQ's rabbit_reader does), so the peer reads our close-ok before the socket closes.
    async fn await_close_ok(&mut self) {
        if self.flush().await.is_err() {
            return;
        }
        let wait = async {
            loop {
                match self.read_frame().await {
                    Ok(Some(Frame::Method(0, Method::ConnectionCloseOk))) | Ok(None) | Err(_) => {
                        return;
                    }
                    Ok(Some(Frame::Method(0, Method::ConnectionClose(_)))) => {
                        self.send_method(0, &Method::ConnectionCloseOk);
                        if self.flush().await.is_err() {
                            return;
                        }
                    }
                    Ok(Some(_)) => {}
                }
            }
        };
        let _ = tokio::time::timeout(CLOSE_OK_WAIT, wait).await;
    }

    async fn cleanup(&mut self) {
        let channels = self.channels.ids();
        for ch in channels {
            self.drop_channel(ch);
        }
        if let Some(session) = &self.session {
            session.close().await;
        }
    }

    // ---- events from the core ----

    /// Looks at the alarms right before a read (without waiting for the `select!` to notice a change).
    fn check_alarms(&mut self) {
        let changed = |rx: &watch::Receiver<bool>| rx.has_changed().unwrap_or(false);
        if changed(&self.blocked_rx) || changed(&self.memory_rx) {
            self.on_blocked_change();
        }
    }

    /// A resource alarm changed: block publishers (stop reading from connections that publish, tell clients
    /// that asked for connection.blocked) or unblock them.
    fn on_blocked_change(&mut self) {
        let disk = *self.blocked_rx.borrow_and_update();
        let memory = *self.memory_rx.borrow_and_update();
        let blocked = disk || memory;
        if blocked == self.blocked {
            return;
        }
        self.blocked = blocked;
        if !blocked {
            // The heartbeat monitor was paused while the socket went unread.
            self.last_recv = Instant::now();
        }
        if self.caps.connection_blocked {
            let method = if blocked {
                let reason = if memory {
                    "low on memory"
                } else {
                    "low on disk"
                };
                Method::ConnectionBlocked(codec::ConnectionBlocked {
                    reason: reason.into(),
                })
            } else {
                Method::ConnectionUnblocked
            };
            self.send_method(0, &method);
        }
    }

    fn on_sink(&mut self, event: SinkEvent) {
        match event {
            SinkEvent::Deliver(d) => self.on_deliveries(d),
            SinkEvent::Cancelled { consumer } => {
                let Some(route) = self.consumers.remove(&consumer) else {
                    return;
                };
                if let Some(channel) = self.channels.get_mut(&route.channel) {
                    channel.consumers.remove(&route.tag);
                }
                if self.caps.consumer_cancel_notify {
                    let cancel = codec::BasicCancel {
                        consumer_tag: route.tag.to_string(),
                        no_wait: true,
                    };
                    self.send_method(route.channel, &Method::BasicCancel(cancel));
                }
            }
        }
    }

    /// Writes a queue's deliveries to one consumer; the queue gets their write-window credit back once they
    /// reach the socket.
    fn on_deliveries(&mut self, d: Deliveries) {
        let count = u32::try_from(d.items.len()).unwrap_or(u32::MAX);
        let bytes: u64 = d.items.iter().map(|i| i.message.body.len() as u64).sum();
        let Some(route) = self.consumers.get(&d.consumer) else {
            // Cancelled or channel gone while the deliveries were in flight: give them back.
            let tags = d.items.iter().map(|i| i.tag).collect();
            d.queue
                .settle(tags, crate::core::Settle::Requeue, Some(d.consumer));
            d.queue.written(d.consumer, count, bytes);
            return;
        };
        let (ch, no_ack) = (route.channel, route.no_ack);
        let Some(channel) = self.channels.get_mut(&ch) else {
            return;
        };
        for item in &d.items {
            let unacked = (!no_ack).then(|| super::channel::Unacked {
                queue: d.queue.clone(),
                tag: item.tag,
                consumer: Some(d.consumer),
            });
            let delivery_tag = channel.deliver(unacked);
            let m = &item.message;
            codec::encode_deliver(
                ch,
                &route.tag,
                delivery_tag,
                item.redelivered,
                &m.exchange,
                &m.routing_key,
                &Outgoing(m),
                &m.body,
                self.frame_max,
                &mut self.out,
            );
        }
        match self
            .written
            .iter_mut()
            .find(|(q, k, _, _)| *k == d.consumer && *q == d.queue)
        {
            Some(entry) => {
                entry.2 += count;
                entry.3 += bytes;
            }
            None => self.written.push((d.queue, d.consumer, count, bytes)),
        }
    }

    /// Send every confirm whose publish is now settled (synced, refused, or failed).
    fn release_confirms(&mut self) {
        let mut frames = Vec::new();
        let mut out = Vec::new();
        for (ch, channel) in self.channels.iter_mut() {
            if let Some(confirms) = channel.confirms.as_mut() {
                confirms.release(&self.sync, &mut frames);
                out.extend(frames.drain(..).map(|f| (ch, f)));
            }
        }
        for (ch, f) in out {
            let method = if f.ack {
                Method::BasicAck(codec::BasicAck {
                    delivery_tag: f.tag,
                    multiple: f.multiple,
                })
            } else {
                Method::BasicNack(codec::BasicNack {
                    delivery_tag: f.tag,
                    multiple: f.multiple,
                    requeue: false,
                })
            };
            self.send_method(ch, &method);
        }
    }
}

/// What of a frame outlives its handling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outliving {
    /// A body: it becomes the message's.
    Body,
    /// A method of the exchange or queue class: its argument table stays with the entity.
    Arguments,
}

/// The length of the whole frame at the front of `buf` if it is buffered and keeps slices of the buffer
/// beyond its handling, and what does. Other methods decode into owned values, and a content header keeps
/// its properties in a copy of its own (the codec makes it).
fn outliving_frame(buf: &[u8]) -> Option<(usize, Outliving)> {
    let head = buf.get(..7)?;
    let size = u32::from_be_bytes([head[3], head[4], head[5], head[6]]) as usize;
    let total = size.checked_add(codec::FRAME_OVERHEAD)?;
    if buf.len() < total {
        return None;
    }
    let keeps = match head[0] {
        codec::FRAME_BODY => Outliving::Body,
        codec::FRAME_METHOD if matches!(buf.get(7..9), Some([0, 40] | [0, 50])) => {
            Outliving::Arguments
        }
        _ => return None,
    };
    Some((total, keeps))
}

fn frame_channel(frame: &Frame) -> u16 {
    match frame {
        Frame::Method(c, _) | Frame::Header(c, _) | Frame::Body(c, _) | Frame::Heartbeat(c) => *c,
    }
}

fn io_closed(e: std::io::Error) -> AmqpError {
    AmqpError::connection(code::CONNECTION_FORCED, format!("socket error: {e}"))
}

/// A method's name for error texts, e.g. `basic.publish`.
pub(super) fn method_name(m: &Method) -> String {
    let debug = format!("{m:?}");
    let variant = debug
        .split(['(', ' ', '{'])
        .next()
        .unwrap_or_default()
        .to_owned();
    let mut out = String::new();
    for (i, c) in variant.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push(if out.contains('.') { '-' } else { '.' });
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// Extract user and password from a SASL response (PLAIN: `\0user\0pass`; AMQPLAIN: a field table body).
fn credentials(mechanism: &str, response: &Bytes) -> Result<(String, String), AmqpError> {
    let refuse =
        |why: &str| AmqpError::connection(code::ACCESS_REFUSED, why.to_owned()).during(10, 11);
    match mechanism {
        "PLAIN" => {
            let mut parts = response.split(|b| *b == 0);
            let _authzid = parts.next();
            let user = parts
                .next()
                .ok_or_else(|| refuse("malformed PLAIN response"))?;
            let pass = parts
                .next()
                .ok_or_else(|| refuse("malformed PLAIN response"))?;
            Ok((
                String::from_utf8_lossy(user).into_owned(),
                String::from_utf8_lossy(pass).into_owned(),
            ))
        }
        "AMQPLAIN" => {
            let mut framed = BytesMut::with_capacity(response.len() + 4);
            framed.extend_from_slice(&(response.len() as u32).to_be_bytes());
            framed.extend_from_slice(response);
            let table = codec::decode_field_table(&mut framed.freeze())
                .map_err(|_| refuse("malformed AMQPLAIN response"))?;
            let get = |k: &str| table.get(k).and_then(|v| v.as_str()).map(str::to_owned);
            Ok((
                get("LOGIN").unwrap_or_default(),
                get("PASSWORD").unwrap_or_default(),
            ))
        }
        other => Err(refuse(&format!(
            "unsupported authentication mechanism '{other}'"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_names_read_like_the_spec() {
        assert_eq!(method_name(&Method::ConnectionOpenOk), "connection.open-ok");
        assert_eq!(method_name(&Method::TxSelect), "tx.select");
    }

    #[test]
    fn bodies_and_entity_arguments_outlive_their_frame() {
        let frame = |f: Frame| {
            let mut out = BytesMut::new();
            codec::encode_frame(&f, &mut out);
            out
        };
        let body = frame(Frame::Body(1, Bytes::from_static(b"x")));
        assert_eq!(outliving_frame(&body), Some((9, Outliving::Body)));
        assert_eq!(outliving_frame(&body[..8]), None, "not all buffered yet");
        let header = frame(Frame::Header(1, Box::default()));
        assert_eq!(
            outliving_frame(&header),
            None,
            "the codec copies the properties"
        );
        let declare = frame(Frame::Method(
            1,
            Method::QueueDeclare(codec::QueueDeclare::default()),
        ));
        assert_eq!(
            outliving_frame(&declare),
            Some((declare.len(), Outliving::Arguments))
        );
        let exchange = frame(Frame::Method(
            1,
            Method::ExchangeBind(codec::ExchangeBind::default()),
        ));
        assert_eq!(
            outliving_frame(&exchange),
            Some((exchange.len(), Outliving::Arguments))
        );
        let publish = frame(Frame::Method(
            1,
            Method::BasicPublish(codec::BasicPublish::default()),
        ));
        assert_eq!(
            outliving_frame(&publish),
            None,
            "decoded into owned strings"
        );
        assert_eq!(outliving_frame(&frame(Frame::Heartbeat(0))), None);
    }

    #[test]
    fn plain_credentials() {
        let (u, p) = credentials("PLAIN", &Bytes::from_static(b"\0guest\0secret")).unwrap();
        assert_eq!((u.as_str(), p.as_str()), ("guest", "secret"));
        assert!(credentials("PLAIN", &Bytes::from_static(b"nonul")).is_err());
        assert!(credentials("EXTERNAL", &Bytes::new()).is_err());
    }
}
