//! The `--client raw` engine: a minimal AMQP 0-9-1 client for the hot path of the benchmark.
//!
//! lapin is a complete client, and so spends per message what a complete client must (a promise, a
//! channel clone, a frame list, a parsed delivery with its own buffers and an acker). On a 2-core machine
//! that shared with the broker it caps a 1-publisher/1-consumer run well below what a fast broker
//! does, so the load generator and not the broker would be measured. This engine keeps one task per
//! connection, no locks and no per-message allocation:
//!
//! - publishers copy a pre-encoded method + header + body frame template per message into one write
//!   buffer, patch the send time into the first 8 body bytes, and write large batches; with confirms they
//!   track outstanding tags in a ring and stop filling when the window is full;
//! - consumers parse basic.deliver, content header and body frames in place from the read buffer, take
//!   one clock reading per read, and send one multiple basic.ack per `--multi-ack-every` deliveries.
//!
//! Everything else (handshake, errors) goes through the `ferrymq-amqp-codec` crate. It speaks PLAIN over
//! plain TCP (amqp:// only) on channel 1, and answers the server's heartbeat setting by sending
//! heartbeats. Queue setup and teardown stay with lapin.

use std::collections::VecDeque;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};
use ferrymq_amqp_codec::{
    BasicConsume, BasicProperties, BasicPublish, BasicQos, ConfirmSelect, ConnectionClose,
    ConnectionOpen, ConnectionStartOk, ConnectionTuneOk, FRAME_BODY, FRAME_END, FRAME_HEADER,
    FRAME_HEARTBEAT, FRAME_METHOD, FieldTable, FieldValue, Frame, Method, PROTOCOL_HEADER, class,
    decode_frame, encode_content, encode_heartbeat, encode_method,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::{Instant as TokioInstant, sleep_until};
use tokio_util::sync::CancellationToken;

use super::super::{Clock, Latency};
use super::{Args, ConStats, PubStats};

/// The channel every raw connection uses.
const CH: u16 = 1;
/// Stop filling the write buffer beyond this many bytes (one write syscall carries about this much).
const WRITE_BATCH: usize = 128 * 1024;
/// Keep at least this much free space in the read buffer before each read.
const READ_RESERVE: usize = 64 * 1024;

/// The parts of an amqp:// URL the raw client needs.
#[derive(Debug, Clone)]
pub struct Url {
    host: String,
    port: u16,
    user: String,
    pass: String,
    vhost: String,
}

impl Url {
    /// Parses `amqp://user:pass@host:port/vhost` as RabbitMQ's URI spec reads it: user, password and
    /// vhost are percent-decoded, no path means vhost "/", an empty path ("/") the vhost "".
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let rest = match url.split_once("://") {
            Some(("amqp", rest)) => rest,
            Some((scheme, _)) => {
                bail!("--client raw speaks amqp:// only, not {scheme}:// (use --client lapin)")
            }
            None => bail!("not an AMQP URL: {url}"),
        };
        let (authority, path) = match rest.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (rest, None),
        };
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (user, pass) = match userinfo {
            Some(u) => match u.split_once(':') {
                Some((user, pass)) => (decode(user)?, decode(pass)?),
                None => (decode(u)?, String::new()),
            },
            None => ("guest".to_string(), "guest".to_string()),
        };
        let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
            // [v6]:port
            let (h, p) = h.split_once(']').context("bad IPv6 host in URL")?;
            (h.to_string(), p.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (hostport.to_string(), None),
            }
        };
        let port = match port {
            Some(p) if !p.is_empty() => p.parse().with_context(|| format!("bad port {p:?}"))?,
            _ => 5672,
        };
        let host = if host.is_empty() {
            "localhost".into()
        } else {
            host
        };
        let vhost = match path {
            None => "/".to_string(),
            Some(p) => decode(p.split(['?', '#']).next().unwrap_or(""))?,
        };
        Ok(Self {
            host,
            port,
            user,
            pass,
            vhost,
        })
    }
}

fn decode(s: &str) -> anyhow::Result<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3).context("bad percent escape in URL")?;
            out.push(u8::from_str_radix(hex, 16).context("bad percent escape in URL")?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).context("URL part is not UTF-8")
}

/// An open connection with channel 1 open.
pub struct Conn {
    stream: TcpStream,
    rbuf: BytesMut,
    frame_max: u32,
    heartbeat: u16,
}

impl Conn {
    pub async fn connect(url: &Url, name: &str) -> anyhow::Result<Self> {
        let stream = TcpStream::connect((url.host.as_str(), url.port))
            .await
            .with_context(|| format!("{name}: connect {}:{}", url.host, url.port))?;
        stream.set_nodelay(true)?;
        let mut c = Self {
            stream,
            rbuf: BytesMut::with_capacity(READ_RESERVE),
            frame_max: 0,
            heartbeat: 0,
        };
        c.handshake(url, name)
            .await
            .with_context(|| format!("{name}: AMQP handshake with {}:{}", url.host, url.port))?;
        Ok(c)
    }

    async fn handshake(&mut self, url: &Url, name: &str) -> anyhow::Result<()> {
        self.stream.write_all(&PROTOCOL_HEADER).await?;
        match self.recv_method().await? {
            Method::ConnectionStart(_) => {}
            m => bail!("expected connection.start, got {}", m.name()),
        }
        let mut caps = FieldTable::new();
        for c in [
            "publisher_confirms",
            "basic.nack",
            "consumer_cancel_notify",
            "connection.blocked",
        ] {
            caps.insert(c, FieldValue::Bool(true));
        }
        let mut props = FieldTable::new();
        props.insert("product", FieldValue::from("ferrymq-bench"));
        props.insert("version", FieldValue::from(env!("CARGO_PKG_VERSION")));
        props.insert("platform", FieldValue::from("Rust"));
        props.insert("capabilities", FieldValue::Table(caps));
        props.insert("connection_name", FieldValue::from(name));
        let mut response = Vec::with_capacity(2 + url.user.len() + url.pass.len());
        response.push(0);
        response.extend_from_slice(url.user.as_bytes());
        response.push(0);
        response.extend_from_slice(url.pass.as_bytes());
        self.send(&Method::ConnectionStartOk(ConnectionStartOk {
            client_properties: props,
            mechanism: "PLAIN".into(),
            response: Bytes::from(response),
            locale: "en_US".into(),
        }))
        .await?;
        let tune = match self.recv_method().await? {
            Method::ConnectionTune(t) => t,
            m => bail!("expected connection.tune, got {}", m.name()),
        };
        self.frame_max = if tune.frame_max == 0 {
            131_072
        } else {
            tune.frame_max
        };
        self.heartbeat = tune.heartbeat;
        self.send(&Method::ConnectionTuneOk(ConnectionTuneOk {
            channel_max: if tune.channel_max == 0 {
                2047
            } else {
                tune.channel_max
            },
            frame_max: self.frame_max,
            heartbeat: self.heartbeat,
        }))
        .await?;
        self.send(&Method::ConnectionOpen(ConnectionOpen {
            virtual_host: url.vhost.clone(),
        }))
        .await?;
        match self.recv_method().await? {
            Method::ConnectionOpenOk => {}
            m => bail!("expected connection.open-ok, got {}", m.name()),
        }
        self.send_on(CH, &Method::ChannelOpen).await?;
        match self.recv_method().await? {
            Method::ChannelOpenOk => Ok(()),
            m => bail!("expected channel.open-ok, got {}", m.name()),
        }
    }

    async fn send(&mut self, m: &Method) -> anyhow::Result<()> {
        let ch = if m.class_id() == class::CONNECTION {
            0
        } else {
            CH
        };
        self.send_on(ch, m).await
    }

    async fn send_on(&mut self, ch: u16, m: &Method) -> anyhow::Result<()> {
        let mut out = BytesMut::new();
        encode_method(ch, m, &mut out);
        self.stream.write_all(&out).await?;
        Ok(())
    }

    /// The next method from the server, skipping heartbeats. A close from the server is answered and
    /// returned as an error.
    async fn recv_method(&mut self) -> anyhow::Result<Method> {
        loop {
            while let Some(frame) = decode_frame(&mut self.rbuf, 0)? {
                match frame {
                    Frame::Method(_, Method::ConnectionClose(c)) => {
                        let _ = self.send_on(0, &Method::ConnectionCloseOk).await;
                        bail!(
                            "server closed the connection: {} {}",
                            c.reply_code,
                            c.reply_text
                        );
                    }
                    Frame::Method(ch, Method::ChannelClose(c)) => {
                        let _ = self.send_on(ch, &Method::ChannelCloseOk).await;
                        bail!(
                            "server closed the channel: {} {}",
                            c.reply_code,
                            c.reply_text
                        );
                    }
                    Frame::Method(_, m) => return Ok(m),
                    _ => {}
                }
            }
            self.rbuf.reserve(READ_RESERVE);
            if self.stream.read_buf(&mut self.rbuf).await? == 0 {
                bail!("server closed the socket");
            }
        }
    }

    async fn rpc(&mut self, m: &Method) -> anyhow::Result<Method> {
        self.send(m).await?;
        self.recv_method().await
    }

    pub async fn confirm_select(&mut self) -> anyhow::Result<()> {
        match self
            .rpc(&Method::ConfirmSelect(ConfirmSelect { no_wait: false }))
            .await?
        {
            Method::ConfirmSelectOk => Ok(()),
            m => bail!("expected confirm.select-ok, got {}", m.name()),
        }
    }

    /// basic.qos (when `prefetch` is given) and one basic.consume per queue.
    pub async fn subscribe(
        &mut self,
        queues: &[String],
        no_ack: bool,
        prefetch: Option<u16>,
    ) -> anyhow::Result<()> {
        if let Some(prefetch_count) = prefetch {
            match self
                .rpc(&Method::BasicQos(BasicQos {
                    prefetch_size: 0,
                    prefetch_count,
                    global: false,
                }))
                .await?
            {
                Method::BasicQosOk => {}
                m => bail!("expected basic.qos-ok, got {}", m.name()),
            }
        }
        for q in queues {
            match self
                .rpc(&Method::BasicConsume(BasicConsume {
                    queue: q.clone(),
                    no_ack,
                    ..BasicConsume::default()
                }))
                .await
                .with_context(|| format!("basic.consume {q}"))?
            {
                Method::BasicConsumeOk(_) => {}
                m => bail!("expected basic.consume-ok, got {}", m.name()),
            }
        }
        Ok(())
    }

    /// Closes the connection politely, waiting up to `wait` for close-ok. The socket must not be dropped
    /// before the server has read everything: if the server writes to a socket we closed, our kernel
    /// answers with a reset and the server's kernel discards publishes it had not read yet.
    pub async fn close(mut self, wait: Duration) {
        let close = Method::ConnectionClose(ConnectionClose {
            reply_code: 200,
            reply_text: "bye".into(),
            class_id: 0,
            method_id: 0,
        });
        let _ = tokio::time::timeout(wait, async {
            self.send_on(0, &close).await?;
            // Deliveries and confirms may still be in flight before close-ok.
            loop {
                while let Some(frame) = decode_frame(&mut self.rbuf, 0)? {
                    if let Frame::Method(
                        _,
                        Method::ConnectionCloseOk | Method::ConnectionClose(_),
                    ) = frame
                    {
                        return Ok::<(), anyhow::Error>(());
                    }
                }
                self.rbuf.reserve(READ_RESERVE);
                if self.stream.read_buf(&mut self.rbuf).await? == 0 {
                    return Ok(());
                }
            }
        })
        .await;
    }

    fn heartbeat_every(&self) -> Duration {
        if self.heartbeat == 0 {
            // Never fires within a run, keeps the select simple.
            Duration::from_secs(86_400)
        } else {
            Duration::from_secs(u64::from(self.heartbeat).div_ceil(2).max(1))
        }
    }
}

/// Publisher confirm bookkeeping: tags from `base` on, 0 = outstanding, 1 = acked, 2 = nacked.
struct Confirms {
    base: u64,
    states: VecDeque<u8>,
    acked: u64,
    nacked: u64,
}

impl Confirms {
    fn new() -> Self {
        Self {
            base: 1,
            states: VecDeque::new(),
            acked: 0,
            nacked: 0,
        }
    }

    fn outstanding(&self) -> usize {
        self.states.len()
    }

    fn published(&mut self) {
        self.states.push_back(0);
    }

    fn settle(&mut self, tag: u64, multiple: bool, nack: bool) {
        let v = if nack { 2 } else { 1 };
        if tag >= self.base {
            let idx = (tag - self.base) as usize;
            if multiple {
                for s in self.states.iter_mut().take(idx + 1) {
                    if *s == 0 {
                        *s = v;
                    }
                }
            } else if let Some(s) = self.states.get_mut(idx) {
                *s = v;
            }
        }
        while let Some(&s) = self.states.front() {
            match s {
                1 => self.acked += 1,
                2 => self.nacked += 1,
                _ => break,
            }
            self.states.pop_front();
            self.base += 1;
        }
    }
}

/// A message template for one queue: the frames of a publish with a zero body, and where in them the
/// first 8 body bytes sit.
struct Template {
    bytes: Vec<u8>,
    ts_at: Option<usize>,
}

fn templates(args: &Args, queues: &[String], frame_max: u32) -> Vec<Template> {
    let props = BasicProperties {
        delivery_mode: args.persistent.then_some(2),
        ..BasicProperties::default()
    };
    let body = Bytes::from(vec![0u8; args.size]);
    queues
        .iter()
        .map(|q| {
            let publish = Method::BasicPublish(BasicPublish {
                routing_key: q.clone(),
                ..BasicPublish::default()
            });
            let mut prefix = BytesMut::new();
            encode_content(
                CH,
                &publish,
                class::BASIC,
                &props,
                &Bytes::new(),
                frame_max,
                &mut prefix,
            );
            let mut full = BytesMut::new();
            encode_content(
                CH,
                &publish,
                class::BASIC,
                &props,
                &body,
                frame_max,
                &mut full,
            );
            // The first body frame follows the method and header frames: 7 bytes of frame header, then
            // the payload.
            let ts_at = (args.size >= 8).then_some(prefix.len() + 7);
            Template {
                bytes: full.to_vec(),
                ts_at,
            }
        })
        .collect()
}

/// Handles a method the server sent outside the hot path: returns an error for closes and cancels.
fn control(m: Method, blocked: &mut bool, wbuf: &mut BytesMut) -> anyhow::Result<()> {
    match m {
        Method::ConnectionClose(c) => {
            encode_method(0, &Method::ConnectionCloseOk, wbuf);
            Err(anyhow!(
                "server closed the connection: {} {}",
                c.reply_code,
                c.reply_text
            ))
        }
        Method::ChannelClose(c) => {
            encode_method(CH, &Method::ChannelCloseOk, wbuf);
            Err(anyhow!(
                "server closed the channel: {} {}",
                c.reply_code,
                c.reply_text
            ))
        }
        Method::BasicCancel(c) => Err(anyhow!("server cancelled consumer {}", c.consumer_tag)),
        Method::ConnectionBlocked(b) => {
            eprintln!("connection blocked by the server: {}", b.reason);
            *blocked = true;
            Ok(())
        }
        Method::ConnectionUnblocked => {
            *blocked = false;
            Ok(())
        }
        _ => Ok(()),
    }
}

#[allow(clippy::too_many_arguments)]
pub async fn publisher(
    conn: Conn,
    id: usize,
    args: Arc<Args>,
    queues: Arc<Vec<String>>,
    clock: Clock,
    t0: Instant,
    quota: u64,
    deadline: Instant,
    hard_stop: Instant,
) -> PubStats {
    let mut stats = PubStats::default();
    let mut heartbeats = tokio::time::interval(conn.heartbeat_every());
    heartbeats.reset();
    let Conn {
        mut stream,
        mut rbuf,
        frame_max,
        ..
    } = conn;
    let (mut rh, mut wh) = stream.split();
    let templates = templates(&args, &queues, frame_max);
    let window = if args.confirm {
        args.confirm_window
    } else {
        usize::MAX
    };
    let per_pub_rate = args.run.rate / args.publishers as f64;
    let mut confirms = Confirms::new();
    let mut wbuf = BytesMut::with_capacity(2 * WRITE_BATCH);
    let mut created: u64 = 0;
    // Bytes appended to / written from wbuf, to tell how many messages are out if we must give up.
    let (mut appended, mut written) = (0u64, 0u64);
    let mut next_q = id % templates.len();
    let mut blocked = false;
    let mut failure: Option<anyhow::Error> = None;
    let mut timer = pin!(sleep_until(TokioInstant::from_std(deadline)));
    let mut timer_at = deadline;

    loop {
        let now = Instant::now();
        let stopping = created >= quota || now >= deadline || failure.is_some();
        if !stopping && !blocked {
            let allowed = if per_pub_rate > 0.0 {
                (((now - t0).as_secs_f64() * per_pub_rate) as u64 + 1).min(quota)
            } else {
                quota
            };
            while wbuf.len() < WRITE_BATCH && created < allowed && confirms.outstanding() < window {
                let t = &templates[next_q];
                next_q += 1;
                if next_q == templates.len() {
                    next_q = 0;
                }
                let start = wbuf.len();
                wbuf.extend_from_slice(&t.bytes);
                if let Some(at) = t.ts_at {
                    wbuf[start + at..start + at + 8].copy_from_slice(&clock.now_ns().to_le_bytes());
                }
                appended += t.bytes.len() as u64;
                created += 1;
                if args.confirm {
                    confirms.published();
                }
            }
        }
        if failure.is_some() {
            break;
        }
        if stopping && wbuf.is_empty() && confirms.outstanding() == 0 {
            break;
        }
        // The timer only watches what can happen: the hard stop once stopping, else the deadline and,
        // when the next rate-limited message could be buffered, its due time. (A fired timer is ready
        // until reset, so it must never be left at an instant that changes nothing.)
        let wake = if stopping {
            hard_stop
        } else if per_pub_rate > 0.0
            && created < quota
            && !blocked
            && confirms.outstanding() < window
            && wbuf.len() < WRITE_BATCH
        {
            (t0 + Duration::from_secs_f64(created as f64 / per_pub_rate)).min(deadline)
        } else {
            deadline
        };
        if wake != timer_at {
            timer_at = wake;
            timer.as_mut().reset(TokioInstant::from_std(wake));
        }
        if rbuf.capacity() - rbuf.len() < READ_RESERVE / 4 {
            rbuf.reserve(READ_RESERVE);
        }
        tokio::select! {
            biased;
            r = rh.read_buf(&mut rbuf) => match r {
                Ok(0) => failure = Some(anyhow!("server closed the socket")),
                Ok(_) => loop {
                    match decode_frame(&mut rbuf, 0) {
                        Ok(None) => break,
                        Ok(Some(Frame::Method(_, Method::BasicAck(a)))) => {
                            confirms.settle(a.delivery_tag, a.multiple, false)
                        }
                        Ok(Some(Frame::Method(_, Method::BasicNack(n)))) => {
                            confirms.settle(n.delivery_tag, n.multiple, true)
                        }
                        Ok(Some(Frame::Method(_, m))) => {
                            if let Err(e) = control(m, &mut blocked, &mut wbuf) {
                                failure = Some(e);
                                break;
                            }
                        }
                        Ok(Some(_)) => {}
                        Err(e) => {
                            failure = Some(anyhow!("bad frame from the server: {e}"));
                            break;
                        }
                    }
                },
                Err(e) => failure = Some(e.into()),
            },
            w = wh.write(&wbuf), if !wbuf.is_empty() => match w {
                Ok(n) => {
                    wbuf.advance(n);
                    written += n as u64;
                }
                Err(e) => failure = Some(e.into()),
            },
            _ = heartbeats.tick() => {
                encode_heartbeat(&mut wbuf);
                appended += 8;
            }
            _ = &mut timer => {
                if stopping {
                    failure = Some(anyhow!(
                        "{} messages unconfirmed and {} bytes unsent at the drain timeout",
                        confirms.outstanding(),
                        wbuf.len()
                    ));
                }
            }
        }
    }
    if args.confirm {
        stats.sent = confirms.acked;
        stats.nacked = confirms.nacked;
    } else {
        // Messages still in the buffer when giving up count as not sent (estimated by average size).
        let unsent = if appended > 0 {
            ((appended - written) as f64 / appended as f64 * created as f64).ceil() as u64
        } else {
            0
        };
        stats.sent = created.saturating_sub(unsent);
    }
    if let Some(e) = failure {
        eprintln!("publisher {id}: {e:#}");
        stats.errors += 1;
    }
    stats.finished = Some(Instant::now());
    Conn {
        stream,
        rbuf,
        frame_max,
        heartbeat: 0,
    }
    .close(
        hard_stop
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(2)),
    )
    .await;
    stats
}

/// Where the consumer is inside a delivery.
enum Content {
    /// Waiting for a basic.deliver.
    Idle,
    /// Got basic.deliver, waiting for the content header.
    Header,
    /// Waiting for `left` more body bytes; `first` = the next body frame is the first one.
    Body { left: u64, first: bool },
}

/// What a pass over the read buffer found.
#[derive(Default)]
struct Parsed {
    messages: u64,
    /// Delivery tag of the last delivery completed in this pass (0 if none was).
    last_tag: u64,
}

/// Parses every whole frame at the front of `rbuf` in place, recording the latency of complete
/// deliveries at `now`. Anything but deliveries goes to [`control`]. `current_tag` carries the tag of a
/// delivery whose frames span passes.
#[allow(clippy::too_many_arguments)]
fn parse_deliveries(
    rbuf: &mut BytesMut,
    state: &mut Content,
    current_tag: &mut u64,
    pending_ts: &mut Option<u64>,
    now: u64,
    latency: &mut Latency,
    blocked: &mut bool,
    wbuf: &mut BytesMut,
) -> anyhow::Result<Parsed> {
    let mut out = Parsed::default();
    let mut pos = 0;
    let buf = &rbuf[..];
    let result = loop {
        let Some(h) = buf.get(pos..pos + 7) else {
            break Ok(());
        };
        let kind = h[0];
        let size = u32::from_be_bytes([h[3], h[4], h[5], h[6]]) as usize;
        let Some(frame) = buf.get(pos..pos + 7 + size + 1) else {
            break Ok(());
        };
        if frame[7 + size] != FRAME_END {
            break Err(anyhow!("bad frame end from the server"));
        }
        let payload = &frame[7..7 + size];
        pos += 8 + size;
        let mut complete = false;
        match kind {
            FRAME_METHOD if payload.len() >= 4 && payload[..4] == [0, 60, 0, 60] => {
                // basic.deliver: consumer-tag (shortstr), delivery-tag (longlong), ...
                let tag_len = *payload.get(4).unwrap_or(&0) as usize;
                let Some(t) = payload.get(5 + tag_len..13 + tag_len) else {
                    break Err(anyhow!("short basic.deliver"));
                };
                let mut b = [0u8; 8];
                b.copy_from_slice(t);
                *current_tag = u64::from_be_bytes(b);
                *state = Content::Header;
                *pending_ts = None;
            }
            FRAME_METHOD => {
                let mut p = Bytes::copy_from_slice(payload);
                match Method::decode(&mut p) {
                    Ok(m) => {
                        if let Err(e) = control(m, blocked, wbuf) {
                            break Err(e);
                        }
                    }
                    Err(e) => break Err(anyhow!("bad method from the server: {e}")),
                }
            }
            FRAME_HEADER => {
                let Some(s) = payload.get(4..12) else {
                    break Err(anyhow!("short content header"));
                };
                let mut b = [0u8; 8];
                b.copy_from_slice(s);
                let left = u64::from_be_bytes(b);
                if left == 0 {
                    complete = true;
                } else {
                    *state = Content::Body { left, first: true };
                }
            }
            FRAME_BODY => {
                if let Content::Body { left, first } = state {
                    if *first && payload.len() >= 8 {
                        let mut b = [0u8; 8];
                        b.copy_from_slice(&payload[..8]);
                        *pending_ts = Some(u64::from_le_bytes(b));
                    }
                    *first = false;
                    *left = left.saturating_sub(payload.len() as u64);
                    complete = *left == 0;
                }
            }
            FRAME_HEARTBEAT => {}
            other => break Err(anyhow!("unknown frame type {other} from the server")),
        }
        if complete {
            out.messages += 1;
            out.last_tag = *current_tag;
            if let Some(ts) = pending_ts.take() {
                latency.record(now.saturating_sub(ts));
            }
            *state = Content::Idle;
        }
    };
    rbuf.advance(pos);
    result.map(|()| out)
}

pub async fn consumer(
    conn: Conn,
    args: Arc<Args>,
    clock: Clock,
    received: Arc<AtomicU64>,
    stop: CancellationToken,
) -> ConStats {
    let mut stats = ConStats::default();
    let mut heartbeats = tokio::time::interval(conn.heartbeat_every());
    heartbeats.reset();
    let Conn {
        mut stream,
        mut rbuf,
        frame_max,
        ..
    } = conn;
    let (mut rh, mut wh) = stream.split();
    let ack_every = args.ack_every();
    let mut wbuf = BytesMut::with_capacity(4096);
    let mut state = Content::Idle;
    let mut pending_ts = None;
    let mut unacked: u64 = 0;
    let mut last_tag: u64 = 0;
    let mut current_tag: u64 = 0;
    let mut last_ns: u64 = 0;
    let mut blocked = false;
    let mut failure: Option<anyhow::Error> = None;
    let mut stopped = pin!(stop.cancelled());
    // Deliveries may already sit in the buffer from the subscribe round trips.
    let mut first = !rbuf.is_empty();
    loop {
        if first {
            first = false;
        } else {
            if rbuf.capacity() - rbuf.len() < READ_RESERVE / 4 {
                rbuf.reserve(READ_RESERVE);
            }
            tokio::select! {
                biased;
                _ = &mut stopped => break,
                w = wh.write(&wbuf), if !wbuf.is_empty() => {
                    match w {
                        Ok(n) => wbuf.advance(n),
                        Err(e) => failure = Some(e.into()),
                    }
                    if failure.is_some() { break; }
                    continue;
                }
                r = rh.read_buf(&mut rbuf) => match r {
                    Ok(0) => { failure = Some(anyhow!("server closed the socket")); break; }
                    Ok(_) => {}
                    Err(e) => { failure = Some(e.into()); break; }
                },
                _ = heartbeats.tick() => { encode_heartbeat(&mut wbuf); continue; }
            }
        }
        let now = clock.now_ns();
        let parsed = parse_deliveries(
            &mut rbuf,
            &mut state,
            &mut current_tag,
            &mut pending_ts,
            now,
            &mut stats.latency,
            &mut blocked,
            &mut wbuf,
        );
        match parsed {
            Ok(p) => {
                if p.messages > 0 {
                    stats.received += p.messages;
                    received.fetch_add(p.messages, Ordering::Relaxed);
                    last_ns = now;
                    if args.manual_ack {
                        unacked += p.messages;
                        last_tag = p.last_tag;
                        if unacked >= ack_every {
                            unacked = 0;
                            put_ack(&mut wbuf, last_tag);
                        }
                    }
                }
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    if unacked > 0 && failure.is_none() {
        put_ack(&mut wbuf, last_tag);
    }
    if !wbuf.is_empty() {
        let _ = tokio::time::timeout(Duration::from_secs(2), wh.write_all(&wbuf)).await;
    }
    if let Some(e) = failure {
        eprintln!("consumer: {e:#}");
        stats.errors += 1;
    }
    stats.last = (stats.received > 0).then(|| clock.instant_at(last_ns));
    Conn {
        stream,
        rbuf,
        frame_max,
        heartbeat: 0,
    }
    .close(Duration::from_secs(2))
    .await;
    stats
}

/// Appends basic.ack(tag, multiple).
fn put_ack(wbuf: &mut BytesMut, tag: u64) {
    // Hand-encoded: this runs once per --multi-ack-every deliveries.
    wbuf.put_u8(FRAME_METHOD);
    wbuf.put_u16(CH);
    wbuf.put_u32(13);
    wbuf.put_u16(60);
    wbuf.put_u16(80);
    wbuf.put_u64(tag);
    wbuf.put_u8(1);
    wbuf.put_u8(FRAME_END);
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrymq_amqp_codec::BasicAck;

    #[test]
    fn hand_encoded_ack_matches_the_codec() {
        let mut a = BytesMut::new();
        put_ack(&mut a, 42);
        let mut b = BytesMut::new();
        encode_method(
            CH,
            &Method::BasicAck(BasicAck {
                delivery_tag: 42,
                multiple: true,
            }),
            &mut b,
        );
        assert_eq!(a, b);
    }

    #[test]
    fn a_delivery_split_across_reads_reports_its_own_tag() {
        let mut frames = BytesMut::new();
        for tag in [7, 8] {
            ferrymq_amqp_codec::encode_deliver(
                CH,
                "c",
                tag,
                false,
                "",
                "q",
                &ferrymq_amqp_codec::BasicProperties::default(),
                &Bytes::from_static(&[0u8; 32]),
                131_072,
                &mut frames,
            );
        }
        // Feed the first delivery whole plus the second one's method frame, then the rest.
        let one = frames.len() / 2;
        let method_len = 7
            + 1
            + u32::from_be_bytes([
                frames[one + 3],
                frames[one + 4],
                frames[one + 5],
                frames[one + 6],
            ]) as usize;
        let (mut state, mut tag, mut ts) = (Content::Idle, 0, None);
        let (mut latency, mut blocked, mut wbuf) = (Latency::new(), false, BytesMut::new());
        let mut rbuf = BytesMut::from(&frames[..one + method_len]);
        let mut pass = |rbuf: &mut BytesMut| {
            parse_deliveries(
                rbuf,
                &mut state,
                &mut tag,
                &mut ts,
                0,
                &mut latency,
                &mut blocked,
                &mut wbuf,
            )
            .map(|p| (p.messages, p.last_tag))
            .expect("valid frames")
        };
        assert_eq!(pass(&mut rbuf), (1, 7));
        rbuf.extend_from_slice(&frames[one + method_len..]);
        assert_eq!(pass(&mut rbuf), (1, 8), "the tag read in the earlier pass");
    }

    #[test]
    fn urls() {
        let u = Url::parse("amqp://guest:gu%40st@127.0.0.1:5673/%2f").expect("valid URL");
        assert_eq!(
            (
                u.user.as_str(),
                u.pass.as_str(),
                u.host.as_str(),
                u.port,
                u.vhost.as_str()
            ),
            ("guest", "gu@st", "127.0.0.1", 5673, "/")
        );
        let u = Url::parse("amqp://localhost").expect("valid URL");
        assert_eq!((u.port, u.vhost.as_str()), (5672, "/"));
        let u = Url::parse("amqp://h:1/").expect("valid URL");
        assert_eq!(u.vhost, "");
        assert!(Url::parse("amqps://h").is_err());
    }

    #[test]
    fn confirms_out_of_order_and_multiple() {
        let mut c = Confirms::new();
        for _ in 0..5 {
            c.published();
        }
        c.settle(2, false, false);
        assert_eq!((c.acked, c.outstanding()), (0, 5));
        c.settle(1, false, true);
        assert_eq!((c.acked, c.nacked, c.outstanding()), (1, 1, 3));
        c.settle(5, true, false);
        assert_eq!((c.acked, c.nacked, c.outstanding()), (4, 1, 0));
    }
}
