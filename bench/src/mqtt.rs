//! `ferrymq-bench mqtt`: MQTT 3.1.1 load with a pipelined raw client, so that the broker and not the client is
//! the limit (the same reasoning as the AMQP bench's raw engine).
//!
//! Two scenarios:
//! - `flow` (default): `--publishers` connections publish to one topic at `--qos` while `--subscribers`
//!   connections subscribed to it at the same QoS receive; one subscriber is the 1 -> 1 case, ten the
//!   1 -> 10 fan-out. Publishers append pre-encoded PUBLISH packets to a write buffer and write up to 128 KiB
//!   at a time, patching the send time into each payload; at QoS 1 and 2 they keep at most `--window`
//!   publishes unacknowledged (PUBACK, or PUBREC answered with PUBREL and then PUBCOMP) and reuse packet ids
//!   in order, which MQTT's in-order acknowledgement makes safe. Subscribers decode in place, take one clock
//!   reading per read for the latency, and answer QoS 1/2 deliveries in the same batched way.
//! - `idle`: `--connections` connections complete CONNECT (keep-alive off) from `--sources` loopback source
//!   addresses (127.0.0.1, 127.0.0.2, ...), `--parallel` at a time, and stay open for `--hold` seconds; the
//!   report gives connections per second and, with `--pid`, the broker's RSS per connection.
//!
//! Every connection is one task, reading and writing through one `select!` of cancel-safe `read_buf` and
//! `write` calls: no locks, no per-message allocation. One JSON line per run, as for AMQP.

mod wire;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::{Buf as _, BytesMut};
use futures_util::StreamExt as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{Instant as TokioInstant, sleep_until};
use tokio_util::sync::CancellationToken;

use crate::{Clock, Latency, Report, RunArgs, Sampler, rate, round, rss_kb};
use wire::{Incoming, PublishTemplate};

/// Stop filling the write buffer beyond this many bytes.
const WRITE_BATCH: usize = 128 * 1024;
/// Free space kept in the read buffer before each read.
const READ_RESERVE: usize = 64 * 1024;
/// The drain ends early when no delivery arrived for this long (QoS 0 may drop).
const QUIET: Duration = Duration::from_secs(2);
/// Time allowed for CONNECT/CONNACK and SUBSCRIBE/SUBACK.
const HANDSHAKE: Duration = Duration::from_secs(30);

/// What a run does.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Publishers to subscribers through one topic.
    Flow,
    /// Many idle connections.
    Idle,
}

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Broker address.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Broker MQTT port.
    #[arg(long, default_value_t = 1883)]
    pub port: u16,
    #[arg(long, value_enum, default_value_t = Scenario::Flow)]
    pub scenario: Scenario,
    /// QoS of the publishes and of the subscriptions (0, 1 or 2).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,
    /// Publishing connections.
    #[arg(long, default_value_t = 1)]
    pub publishers: usize,
    /// Subscribing connections, each subscribed to the one topic (10 for the 1 -> 10 fan-out).
    #[arg(long, default_value_t = 1)]
    pub subscribers: usize,
    /// Payload size in bytes (latency needs at least 8).
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Unacknowledged QoS 1/2 publishes per publisher.
    #[arg(long, default_value_t = 256)]
    pub window: u16,
    /// Topic prefix; the run publishes to `<prefix>/<process id>`.
    #[arg(long, default_value = "bench")]
    pub topic_prefix: String,
    /// `idle`: connections to open.
    #[arg(long, default_value_t = 15_000)]
    pub connections: usize,
    /// `idle`: connections being opened at once.
    #[arg(long, default_value_t = 256)]
    pub parallel: usize,
    /// `idle`: loopback source addresses to spread the connections over (127.0.0.1 .. 127.0.0.N).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u8).range(1..=254))]
    pub sources: u8,
    /// `idle`: seconds to hold the connections open before measuring the broker's RSS.
    #[arg(long, default_value_t = 3.0)]
    pub hold: f64,
    #[command(flatten)]
    pub run: RunArgs,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    args.run.validate()?;
    match args.scenario {
        Scenario::Flow => flow(args).await,
        Scenario::Idle => idle(args).await,
    }
}

fn base_report(args: &Args, scenario: &str) -> Report {
    Report {
        label: args
            .run
            .label
            .clone()
            .unwrap_or_else(|| format!("{}:{}", args.host, args.port)),
        protocol: "mqtt",
        scenario: Some(scenario.to_owned()),
        qos: Some(args.qos),
        size: args.size,
        rate: args.run.rate,
        ..Report::default()
    }
}

/// One connection after CONNACK: its halves and what was read past the CONNACK.
struct Conn {
    rd: OwnedReadHalf,
    wr: OwnedWriteHalf,
    rbuf: BytesMut,
}

impl Conn {
    async fn open(
        addr: SocketAddr,
        source: Option<IpAddr>,
        client_id: &str,
    ) -> anyhow::Result<Self> {
        let stream = connect_from(addr, source).await?;
        let (rd, wr) = stream.into_split();
        let mut conn = Self {
            rd,
            wr,
            rbuf: BytesMut::with_capacity(READ_RESERVE),
        };
        conn.wr.write_all(&wire::connect(client_id, 0)).await?;
        match conn.expect_reply().await? {
            Incoming::ConnAck { code: 0 } => Ok(conn),
            other => bail!("{client_id}: CONNECT refused: {other:?}"),
        }
    }

    async fn subscribe(&mut self, filter: &str, qos: u8) -> anyhow::Result<()> {
        self.wr.write_all(&wire::subscribe(filter, qos)).await?;
        match self.expect_reply().await? {
            Incoming::SubAck { granted } if granted == qos => Ok(()),
            other => bail!("SUBSCRIBE {filter} at QoS {qos}: {other:?}"),
        }
    }

    /// The next packet, within [`HANDSHAKE`].
    async fn expect_reply(&mut self) -> anyhow::Result<Incoming> {
        tokio::time::timeout(HANDSHAKE, async {
            loop {
                if let Some(packet) = wire::next(&mut self.rbuf)? {
                    return Ok(packet);
                }
                self.rbuf.reserve(READ_RESERVE);
                if self.rd.read_buf(&mut self.rbuf).await? == 0 {
                    bail!("the broker closed the connection");
                }
            }
        })
        .await
        .context("no answer from the broker")?
    }
}

async fn connect_from(addr: SocketAddr, source: Option<IpAddr>) -> anyhow::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket
        .connect(addr)
        .await
        .with_context(|| format!("connect {addr}"))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// What a publisher did.
#[derive(Default)]
struct PubStats {
    sent: u64,
    errors: u64,
    /// When its last publish was written (QoS 0) or acknowledged (QoS 1/2).
    finished: Option<Instant>,
}

/// What a subscriber did.
#[derive(Default)]
struct SubStats {
    received: u64,
    errors: u64,
    latency: Latency,
    last: Option<Instant>,
}

/// A publisher's share of the run.
struct PubPlan {
    template: PublishTemplate,
    qos: u8,
    window: u64,
    count: Option<u64>,
    /// Seconds between publishes, 0 for as fast as possible.
    interval: f64,
    deadline: TokioInstant,
    drain: Duration,
}

async fn flow(args: Args) -> anyhow::Result<()> {
    if args.publishers == 0 {
        bail!("--publishers must be at least 1");
    }
    let addr = SocketAddr::new(args.host, args.port);
    let topic = format!("{}/{}", args.topic_prefix, std::process::id());
    let clock = Clock::new();
    let received = Arc::new(AtomicU64::new(0));
    let stop_subscribers = CancellationToken::new();

    let mut subscribers = Vec::new();
    for i in 0..args.subscribers {
        let mut conn =
            Conn::open(addr, None, &format!("bench-sub-{i}-{}", std::process::id())).await?;
        conn.subscribe(&topic, args.qos).await?;
        let (received, stop) = (received.clone(), stop_subscribers.clone());
        subscribers.push(tokio::spawn(subscriber(conn, clock, received, stop)));
    }
    let mut publisher_conns = Vec::new();
    for i in 0..args.publishers {
        publisher_conns
            .push(Conn::open(addr, None, &format!("bench-pub-{i}-{}", std::process::id())).await?);
    }

    let sampler = Sampler::start(args.run.pid)?;
    let started = Instant::now();
    let deadline = TokioInstant::now() + args.run.publish_limit();
    let per_publisher_rate = args.run.rate / args.publishers as f64;
    let publishers: Vec<_> = publisher_conns
        .into_iter()
        .enumerate()
        .map(|(i, conn)| {
            let plan = PubPlan {
                template: PublishTemplate::new(&topic, args.qos, args.size),
                qos: args.qos,
                window: u64::from(args.window.max(1)),
                count: args.run.count.map(|c| share(c, args.publishers, i)),
                interval: if per_publisher_rate > 0.0 {
                    1.0 / per_publisher_rate
                } else {
                    0.0
                },
                deadline,
                drain: Duration::from_secs_f64(args.run.drain_timeout),
            };
            tokio::spawn(publisher(conn, plan, clock))
        })
        .collect();
    let mut pub_stats = Vec::new();
    for p in publishers {
        pub_stats.push(p.await?);
    }
    let sent: u64 = pub_stats.iter().map(|p| p.sent).sum();
    let publish_end = pub_stats
        .iter()
        .filter_map(|p| p.finished)
        .max()
        .unwrap_or(started);

    let expected = sent * args.subscribers as u64;
    wait_for_deliveries(&received, expected, args.run.drain_timeout).await;
    stop_subscribers.cancel();
    let mut latency = Latency::new();
    let mut report = base_report(&args, "flow");
    let mut last = publish_end;
    for s in subscribers {
        let s = s.await?;
        latency.merge(&s.latency);
        report.received += s.received;
        report.errors += s.errors;
        last = last.max(s.last.unwrap_or(last));
    }
    let usage = sampler.finish().await;
    report.publishers = args.publishers;
    report.consumers = args.subscribers;
    report.queues = args.subscribers;
    report.confirm = args.qos > 0;
    report.sent = sent;
    report.errors += pub_stats.iter().map(|p| p.errors).sum::<u64>();
    report.duration_s = round(publish_end.duration_since(started).as_secs_f64(), 3);
    report.send_rate = rate(sent, publish_end.duration_since(started));
    report.recv_rate = rate(report.received, last.duration_since(started));
    report.set_latency(&latency);
    report.set_usage(&usage);
    report.print()
}

/// Publisher `i`'s share of `total` messages.
fn share(total: u64, n: usize, i: usize) -> u64 {
    let n = n as u64;
    total / n + u64::from((i as u64) < total % n)
}

/// Wait until every expected delivery arrived, or none arrived for [`QUIET`], or `timeout` seconds passed.
async fn wait_for_deliveries(received: &AtomicU64, expected: u64, timeout: f64) {
    let give_up = Instant::now() + Duration::from_secs_f64(timeout);
    let mut seen = received.load(Ordering::Relaxed);
    let mut quiet_since = Instant::now();
    while seen < expected && Instant::now() < give_up && quiet_since.elapsed() < QUIET {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = received.load(Ordering::Relaxed);
        if now != seen {
            seen = now;
            quiet_since = Instant::now();
        }
    }
}

/// Publish until the deadline or the count, keeping at most `window` QoS 1/2 publishes unacknowledged.
async fn publisher(mut conn: Conn, plan: PubPlan, clock: Clock) -> PubStats {
    let mut stats = PubStats::default();
    if let Err(e) = publish(&mut conn, &plan, clock, &mut stats).await {
        eprintln!("ferrymq-bench: publisher: {e:#}");
        stats.errors += 1;
    }
    stats
}

async fn publish(
    conn: &mut Conn,
    plan: &PubPlan,
    clock: Clock,
    stats: &mut PubStats,
) -> anyhow::Result<()> {
    let mut wbuf = BytesMut::with_capacity(WRITE_BATCH * 2);
    let mut next_id: u16 = 1;
    let mut done_acks = 0u64; // PUBACKs (QoS 1) or PUBCOMPs (QoS 2)
    let mut publishing = true;
    let mut drain_until = None;
    let started = TokioInstant::now();
    loop {
        let now = TokioInstant::now();
        if publishing && (now >= plan.deadline || plan.count.is_some_and(|c| stats.sent >= c)) {
            publishing = false;
            drain_until = Some(now + plan.drain);
        }
        let due = |sent: u64| started + Duration::from_secs_f64(sent as f64 * plan.interval);
        if publishing {
            let sent_ns = clock.now_ns();
            while wbuf.len() < WRITE_BATCH
                && (plan.qos == 0 || stats.sent - done_acks < plan.window)
                && plan.count.is_none_or(|c| stats.sent < c)
                && (plan.interval == 0.0 || due(stats.sent) <= now)
            {
                plan.template.put(&mut wbuf, next_id, sent_ns);
                stats.sent += 1;
                next_id = next_id.checked_add(1).unwrap_or(1);
            }
        }
        let outstanding = if plan.qos == 0 {
            0
        } else {
            stats.sent - done_acks
        };
        if !publishing && wbuf.is_empty() && outstanding == 0 {
            stats.finished = Some(Instant::now());
            return Ok(());
        }
        if drain_until.is_some_and(|d| now >= d) {
            bail!("{outstanding} publishes still unacknowledged at the end of the drain");
        }
        let wake = if publishing && plan.interval > 0.0 {
            due(stats.sent).min(plan.deadline)
        } else {
            drain_until.unwrap_or(plan.deadline)
        };
        conn.rbuf.reserve(READ_RESERVE);
        tokio::select! {
            read = conn.rd.read_buf(&mut conn.rbuf) => {
                if read? == 0 {
                    bail!("the broker closed the connection");
                }
                done_acks += take_acks(&mut conn.rbuf, &mut wbuf)?;
            }
            written = conn.wr.write(&wbuf), if !wbuf.is_empty() => wbuf.advance(written?),
            _ = sleep_until(wake), if wbuf.is_empty() => {}
        }
    }
}

/// Handle the acknowledgements buffered in `rbuf`: PUBREC is answered with PUBREL; returns how many
/// publishes are now complete (PUBACK or PUBCOMP).
fn take_acks(rbuf: &mut BytesMut, wbuf: &mut BytesMut) -> anyhow::Result<u64> {
    let mut complete = 0;
    while let Some(packet) = wire::next(rbuf)? {
        match packet {
            Incoming::Ack {
                kind: wire::PUBACK | wire::PUBCOMP,
                ..
            } => complete += 1,
            Incoming::Ack {
                kind: wire::PUBREC,
                id,
            } => wire::put_ack(wbuf, wire::PUBREL, id),
            other => bail!("unexpected packet for a publisher: {other:?}"),
        }
    }
    Ok(complete)
}

/// Receive until stopped, acknowledging QoS 1/2 deliveries.
async fn subscriber(
    mut conn: Conn,
    clock: Clock,
    received: Arc<AtomicU64>,
    stop: CancellationToken,
) -> SubStats {
    let mut stats = SubStats::default();
    if let Err(e) = receive(&mut conn, clock, &received, &stop, &mut stats).await {
        eprintln!("ferrymq-bench: subscriber: {e:#}");
        stats.errors += 1;
    }
    stats
}

async fn receive(
    conn: &mut Conn,
    clock: Clock,
    received: &AtomicU64,
    stop: &CancellationToken,
    stats: &mut SubStats,
) -> anyhow::Result<()> {
    let mut wbuf = BytesMut::with_capacity(4096);
    loop {
        conn.rbuf.reserve(READ_RESERVE);
        tokio::select! {
            biased;
            _ = stop.cancelled() => return Ok(()),
            written = conn.wr.write(&wbuf), if !wbuf.is_empty() => wbuf.advance(written?),
            read = conn.rd.read_buf(&mut conn.rbuf) => {
                if read? == 0 {
                    bail!("the broker closed the connection");
                }
                let now_ns = clock.now_ns();
                let n = take_deliveries(&mut conn.rbuf, &mut wbuf, &mut stats.latency, now_ns)?;
                stats.received += n;
                received.fetch_add(n, Ordering::Relaxed);
                stats.last = Some(Instant::now());
            }
        }
    }
}

/// Count the deliveries buffered in `rbuf`, record their latency and queue their acknowledgements.
fn take_deliveries(
    rbuf: &mut BytesMut,
    wbuf: &mut BytesMut,
    latency: &mut Latency,
    now_ns: u64,
) -> anyhow::Result<u64> {
    let mut delivered = 0;
    while let Some(packet) = wire::next(rbuf)? {
        match packet {
            Incoming::Publish { qos, id, sent_ns } => {
                delivered += 1;
                if let Some(sent) = sent_ns {
                    latency.record(now_ns.saturating_sub(sent));
                }
                match qos {
                    1 => wire::put_ack(wbuf, wire::PUBACK, id),
                    2 => wire::put_ack(wbuf, wire::PUBREC, id),
                    _ => {}
                }
            }
            Incoming::Ack {
                kind: wire::PUBREL,
                id,
            } => wire::put_ack(wbuf, wire::PUBCOMP, id),
            Incoming::Other(_) => {}
            other => bail!("unexpected packet for a subscriber: {other:?}"),
        }
    }
    Ok(delivered)
}

/// Open `--connections` idle connections and report the rate and the broker's RSS per connection.
async fn idle(args: Args) -> anyhow::Result<()> {
    let addr = SocketAddr::new(args.host, args.port);
    let rss_before = args.run.pid.and_then(rss_kb);
    let started = Instant::now();
    let sources = args.sources;
    let opened: Vec<anyhow::Result<Conn>> = futures_util::stream::iter(0..args.connections)
        .map(|i| {
            let source = IpAddr::V4(Ipv4Addr::new(
                127,
                0,
                0,
                1 + (i % usize::from(sources)) as u8,
            ));
            async move { Conn::open(addr, Some(source), &format!("bench-idle-{i}")).await }
        })
        .buffer_unordered(args.parallel.max(1))
        .collect()
        .await;
    let elapsed = started.elapsed();
    let failures = opened.iter().filter(|c| c.is_err()).count();
    if let Some(Err(e)) = opened.iter().find(|c| c.is_err()) {
        eprintln!("ferrymq-bench: {failures} connections failed; the first: {e:#}");
    }
    let held: Vec<Conn> = opened.into_iter().filter_map(Result::ok).collect();
    tokio::time::sleep(Duration::from_secs_f64(args.hold.max(0.0))).await;
    let rss_after = args.run.pid.and_then(rss_kb);

    let mut report = base_report(&args, "idle");
    report.qos = None;
    report.connections = Some(held.len() as u64);
    report.errors = failures as u64;
    report.duration_s = round(elapsed.as_secs_f64(), 3);
    report.connect_rate = Some(rate(held.len() as u64, elapsed));
    if let (Some(before), Some(after)) = (rss_before, rss_after) {
        report.rss_mb = Some(round(after as f64 / 1024.0, 1));
        report.rss_before_mb = Some(round(before as f64 / 1024.0, 1));
        if !held.is_empty() {
            let per = after.saturating_sub(before) as f64 / held.len() as f64;
            report.rss_per_conn_kib = Some(round(per, 2));
        }
    }
    drop(held);
    report.print()
}
