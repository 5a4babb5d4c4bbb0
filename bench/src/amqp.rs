//! `ferrymq-bench amqp`: AMQP 0-9-1 publish/consume load.
//!
//! Two client engines drive publishers and consumers: `raw` (default, [`raw`]), a minimal built-in
//! client that costs the load generator next to nothing per message, and `lapin`, the complete client
//! library, as a cross-check and for amqps://. Queue setup and teardown always use lapin.
//!
//! Layout of a run: one setup connection deletes and declares `bench-q-0..N` (durable iff --persistent);
//! every consumer and every publisher gets its own connection and channel; consumers subscribe first;
//! then publishers publish to the default exchange, round robin over the queues, until the duration or
//! count is reached; then consumers get up to --drain-timeout to receive everything that was sent; the
//! queues are deleted and one JSON line is printed.
//!
//! Each body starts with the send time (8 bytes, little endian, nanoseconds since a base instant shared
//! by the whole process); consumers record now - send time in a histogram.
//!
//! The client must not be the bottleneck. With lapin, publishes are pipelined (a window of in-flight
//! `basic_publish` futures, each of which resolves once its frames are written), and with --confirm a
//! window of outstanding confirms is awaited as they arrive rather than one at a time.

use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures_util::stream::{FuturesUnordered, StreamExt as _, select_all};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, Consumer};
use tokio::time::sleep_until;
use tokio_util::sync::CancellationToken;

use super::{Clock, Latency, Report, RunArgs, Sampler, host_port, rate};

mod raw;

/// Which client drives publishers and consumers.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    /// Minimal built-in AMQP client: no per-message allocation, batched writes, in-place parsing.
    Raw,
    /// lapin, a complete client library (heavier per message; a cross-check, and for amqps://).
    Lapin,
}

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// AMQP URL of the broker (vhost URL-encoded: %2f is "/").
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    pub url: String,
    /// Publishing connections (one channel each).
    #[arg(long, default_value_t = 1)]
    pub publishers: usize,
    /// Consuming connections (one channel each). With fewer consumers than queues a consumer subscribes
    /// to several queues.
    #[arg(long, default_value_t = 1)]
    pub consumers: usize,
    /// Queues bench-q-0..N, published to round robin.
    #[arg(long, default_value_t = 1)]
    pub queues: usize,
    /// Message body size in bytes (latency needs at least 8).
    #[arg(long, default_value_t = 16)]
    pub size: usize,
    #[command(flatten)]
    pub run: RunArgs,
    /// Publisher confirms (confirm.select); `sent` then counts confirmed messages.
    #[arg(long)]
    pub confirm: bool,
    /// Outstanding unconfirmed publishes per publisher with --confirm.
    #[arg(long, default_value_t = 256)]
    pub confirm_window: usize,
    /// With --client lapin and without --confirm: publishes handed to lapin but not yet written, per
    /// publisher (the raw client writes in batches of up to 128 KiB instead).
    #[arg(long, default_value_t = 1024)]
    pub pipeline: usize,
    /// delivery-mode 2 and durable queues.
    #[arg(long)]
    pub persistent: bool,
    /// Consumers acknowledge (basic.ack multiple=true every --multi-ack-every deliveries); otherwise
    /// no-ack consumers.
    #[arg(long)]
    pub manual_ack: bool,
    /// With --manual-ack: one multiple ack per this many deliveries (capped at --prefetch).
    #[arg(long, default_value_t = 100)]
    pub multi_ack_every: u64,
    /// basic.qos prefetch count per consumer channel (0 = unlimited; only matters with --manual-ack).
    #[arg(long, default_value_t = 1000)]
    pub prefetch: u16,
    /// Queue name prefix.
    #[arg(long, default_value = "bench-q-")]
    pub queue_prefix: String,
    /// Client engine for publishers and consumers (queue setup always uses lapin).
    #[arg(long, value_enum, default_value_t = Client::Raw)]
    pub client: Client,
    /// Use the queues as they are: declare them without deleting them first, and leave them (and what is
    /// in them) at the end. For backlog runs: fill with `--consumers 0`, restart the broker, then drain with
    /// `--publishers 0 --count N`.
    #[arg(long)]
    pub keep_queues: bool,
}

impl Args {
    /// Deliveries per multiple ack: --multi-ack-every, at least 1 and at most the prefetch window.
    fn ack_every(&self) -> u64 {
        if self.prefetch > 0 {
            self.multi_ack_every.clamp(1, u64::from(self.prefetch))
        } else {
            self.multi_ack_every.max(1)
        }
    }
}

/// What a publisher did.
#[derive(Default)]
struct PubStats {
    sent: u64,
    nacked: u64,
    errors: u64,
    /// When its last publish was written (or confirmed).
    finished: Option<Instant>,
}

/// What a consumer did.
#[derive(Default)]
struct ConStats {
    received: u64,
    errors: u64,
    latency: Latency,
    last: Option<Instant>,
}

enum PubConn {
    Lapin(Channel),
    Raw(raw::Conn),
}

enum Outcome {
    Sent,
    Nacked,
    Error(lapin::Error),
}

async fn connect(url: &str, name: String) -> anyhow::Result<(Connection, Channel)> {
    let conn = Connection::connect(
        url,
        ConnectionProperties::default().with_connection_name(name.clone().into()),
    )
    .await
    .with_context(|| format!("{name}: cannot connect to {}", redact(url)))?;
    let ch = conn
        .create_channel()
        .await
        .with_context(|| format!("{name}: channel.open"))?;
    Ok((conn, ch))
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, rest)), Some(_)) => {
            let (auth, host) = rest.rsplit_once('@').unwrap_or(("", rest));
            let user = auth.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}")
        }
        _ => url.to_string(),
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    args.run.validate()?;
    if args.publishers == 0 && args.consumers == 0 {
        bail!("nothing to do: --publishers and --consumers are both 0");
    }
    if args.queues == 0 {
        bail!("--queues must be at least 1");
    }
    if args.confirm && args.confirm_window == 0 || args.pipeline == 0 {
        bail!("--confirm-window and --pipeline must be at least 1");
    }
    let raw_url = match args.client {
        Client::Raw => Some(raw::Url::parse(&args.url)?),
        Client::Lapin => None,
    };
    let args = Arc::new(args);
    let names: Arc<Vec<String>> = Arc::new(
        (0..args.queues)
            .map(|i| format!("{}{i}", args.queue_prefix))
            .collect(),
    );
    let queue_names: Arc<Vec<ShortString>> =
        Arc::new(names.iter().map(|n| n.as_str().into()).collect());

    // Setup: fresh queues (or the existing ones with --keep-queues).
    let (setup_conn, mut setup_ch) = connect(&args.url, "ferrymq-bench-setup".into()).await?;
    for q in queue_names.iter() {
        // RabbitMQ answers delete of a missing queue with delete-ok; a broker that closes the channel
        // with 404 instead is fine too: open a new channel and go on.
        if !args.keep_queues
            && setup_ch
                .queue_delete(q.clone(), QueueDeleteOptions::default())
                .await
                .is_err()
        {
            setup_ch = setup_conn
                .create_channel()
                .await
                .context("channel.open after queue.delete")?;
        }
        setup_ch
            .queue_declare(
                q.clone(),
                QueueDeclareOptions {
                    durable: args.persistent,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .with_context(|| format!("queue.declare {q}"))?;
    }

    let clock = Clock::new();
    let received = Arc::new(AtomicU64::new(0));
    let stop_consumers = CancellationToken::new();

    // Consumers first, so nothing published is missed.
    let mut consumer_conns = Vec::new();
    let mut consumer_tasks = Vec::new();
    for c in 0..args.consumers {
        let mine: Vec<usize> = if args.consumers >= args.queues {
            vec![c % args.queues]
        } else {
            (0..args.queues)
                .filter(|q| q % args.consumers == c)
                .collect()
        };
        let name = format!("ferrymq-bench-con-{c}");
        if let Some(url) = &raw_url {
            let mut conn = raw::Conn::connect(url, &name).await?;
            let qs: Vec<String> = mine.iter().map(|&q| names[q].clone()).collect();
            conn.subscribe(
                &qs,
                !args.manual_ack,
                args.manual_ack.then_some(args.prefetch),
            )
            .await
            .with_context(|| format!("{name}: subscribe"))?;
            consumer_tasks.push(tokio::spawn(raw::consumer(
                conn,
                args.clone(),
                clock,
                received.clone(),
                stop_consumers.clone(),
            )));
            continue;
        }
        let (conn, ch) = connect(&args.url, name).await?;
        if args.manual_ack {
            ch.basic_qos(args.prefetch, BasicQosOptions::default())
                .await
                .context("basic.qos")?;
        }
        let mut streams = Vec::new();
        for q in mine {
            streams.push(
                ch.basic_consume(
                    queue_names[q].clone(),
                    format!("ferrymq-bench-{c}-{q}").into(),
                    BasicConsumeOptions {
                        no_ack: !args.manual_ack,
                        ..BasicConsumeOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .with_context(|| format!("basic.consume {}", queue_names[q]))?,
            );
        }
        consumer_tasks.push(tokio::spawn(consumer(
            ch,
            streams,
            args.clone(),
            clock,
            received.clone(),
            stop_consumers.clone(),
        )));
        consumer_conns.push(conn);
    }

    let mut publisher_chans = Vec::new();
    let mut publisher_conns = Vec::new();
    for p in 0..args.publishers {
        let name = format!("ferrymq-bench-pub-{p}");
        if let Some(url) = &raw_url {
            let mut conn = raw::Conn::connect(url, &name).await?;
            if args.confirm {
                conn.confirm_select()
                    .await
                    .with_context(|| format!("{name}: confirm.select"))?;
            }
            publisher_chans.push(PubConn::Raw(conn));
            continue;
        }
        let (conn, ch) = connect(&args.url, name).await?;
        if args.confirm {
            ch.confirm_select(ConfirmSelectOptions::default())
                .await
                .context("confirm.select")?;
        }
        publisher_chans.push(PubConn::Lapin(ch));
        publisher_conns.push(conn);
    }

    // Go.
    let sampler = Sampler::start(args.run.pid)?;
    let t0 = Instant::now();
    let deadline = t0 + args.run.publish_limit();
    let hard_stop = deadline + Duration::from_secs_f64(args.run.drain_timeout);
    let n = args.publishers as u64;
    let pub_tasks: Vec<_> = publisher_chans
        .into_iter()
        .enumerate()
        .map(|(p, ch)| {
            let quota = match args.run.count {
                Some(total) => total / n + u64::from((p as u64) < total % n),
                None => u64::MAX,
            };
            match ch {
                PubConn::Lapin(ch) => tokio::spawn(publisher(
                    ch,
                    p,
                    args.clone(),
                    queue_names.clone(),
                    clock,
                    t0,
                    quota,
                    deadline,
                    hard_stop,
                )),
                PubConn::Raw(conn) => tokio::spawn(raw::publisher(
                    conn,
                    p,
                    args.clone(),
                    names.clone(),
                    clock,
                    t0,
                    quota,
                    deadline,
                    hard_stop,
                )),
            }
        })
        .collect();

    let mut report = Report {
        label: args
            .run
            .label
            .clone()
            .unwrap_or_else(|| host_port(&args.url)),
        protocol: "amqp",
        publishers: args.publishers,
        consumers: args.consumers,
        queues: args.queues,
        size: args.size,
        confirm: args.confirm,
        persistent: args.persistent,
        manual_ack: args.manual_ack,
        rate: args.run.rate,
        ..Report::default()
    };

    let mut pub_end = t0;
    for t in pub_tasks {
        match t.await {
            Ok(s) => {
                report.sent += s.sent;
                report.nacked += s.nacked;
                report.errors += s.errors;
                if let Some(f) = s.finished {
                    pub_end = pub_end.max(f);
                }
            }
            Err(e) => {
                eprintln!("publisher task failed: {e}");
                report.errors += 1;
            }
        }
    }

    // Drain: wait until every sent message arrived (with no-ack consumers nacked ones never arrive). A
    // consume-only run with --count waits for that many instead.
    let expected = match args.run.count {
        Some(count) if args.publishers == 0 => count,
        _ => report.sent,
    };
    if args.consumers > 0 {
        let drain_until = Instant::now() + Duration::from_secs_f64(args.run.drain_timeout);
        let mut last_seen = received.load(Ordering::Relaxed);
        let mut last_progress = Instant::now();
        while received.load(Ordering::Relaxed) < expected && Instant::now() < drain_until {
            tokio::time::sleep(Duration::from_millis(5)).await;
            let now_seen = received.load(Ordering::Relaxed);
            if now_seen != last_seen {
                last_seen = now_seen;
                last_progress = Instant::now();
            } else if args.run.count.is_none()
                && args.publishers == 0
                && last_progress.elapsed() > Duration::from_secs(1)
            {
                break;
            }
        }
        if args.publishers == 0 && args.run.count.is_none() {
            // Consume-only run: nothing to compare against, stop at the deadline.
            sleep_until(deadline.into()).await;
        }
    }
    stop_consumers.cancel();
    let usage = sampler.finish().await;

    let mut latency = Latency::new();
    let mut recv_end = t0;
    for t in consumer_tasks {
        match t.await {
            Ok(s) => {
                report.received += s.received;
                report.errors += s.errors;
                latency.merge(&s.latency);
                if let Some(l) = s.last {
                    recv_end = recv_end.max(l);
                }
            }
            Err(e) => {
                eprintln!("consumer task failed: {e}");
                report.errors += 1;
            }
        }
    }

    let pub_time = pub_end - t0;
    report.duration_s = super::round(pub_time.as_secs_f64(), 3);
    report.send_rate = rate(report.sent, pub_time);
    report.recv_rate = rate(report.received, recv_end - t0);
    report.set_latency(&latency);
    report.set_usage(&usage);
    if report.received < expected && args.consumers > 0 {
        eprintln!(
            "warning: {} of {} expected messages not received within --drain-timeout",
            expected - report.received,
            expected
        );
    }

    // Teardown: close clients, delete the queues.
    for c in consumer_conns.iter().chain(publisher_conns.iter()) {
        let _ = tokio::time::timeout(Duration::from_secs(5), c.close(200, "bye".into())).await;
    }
    for q in queue_names.iter().filter(|_| !args.keep_queues) {
        if let Err(e) = tokio::time::timeout(
            Duration::from_secs(30),
            setup_ch.queue_delete(q.clone(), QueueDeleteOptions::default()),
        )
        .await
        .map_err(anyhow::Error::from)
        .and_then(|r| r.map_err(anyhow::Error::from))
        {
            eprintln!("warning: deleting {q}: {e}");
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), setup_conn.close(200, "bye".into())).await;

    report.print()
}

/// One publish: resolves when its frames are written, or with --confirm when the broker confirmed it.
async fn publish_one(
    ch: &Channel,
    routing_key: ShortString,
    body: Vec<u8>,
    props: BasicProperties,
) -> Outcome {
    let confirm = match ch
        .basic_publish(
            ShortString::from(""),
            routing_key,
            BasicPublishOptions::default(),
            &body,
            props,
        )
        .await
    {
        Ok(c) => c,
        Err(e) => return Outcome::Error(e),
    };
    // Always await the confirm future: it resolves at once without confirm mode, and dropping it
    // unresolved would park it in the channel's list for wait_for_confirms.
    match confirm.await {
        Ok(Confirmation::Nack(_)) => Outcome::Nacked,
        Ok(_) => Outcome::Sent,
        Err(e) => Outcome::Error(e),
    }
}

#[allow(clippy::too_many_arguments)]
async fn publisher(
    ch: Channel,
    id: usize,
    args: Arc<Args>,
    queues: Arc<Vec<ShortString>>,
    clock: Clock,
    t0: Instant,
    quota: u64,
    deadline: Instant,
    hard_stop: Instant,
) -> PubStats {
    let mut stats = PubStats::default();
    let window = if args.confirm {
        args.confirm_window
    } else {
        args.pipeline
    };
    let per_pub_rate = args.run.rate / args.publishers as f64;
    let props = if args.persistent {
        BasicProperties::default().with_delivery_mode(2)
    } else {
        BasicProperties::default()
    };
    let mut inflight = FuturesUnordered::new();
    let mut created: u64 = 0;
    let mut next_q = id % queues.len();
    let mut first_error: Option<lapin::Error> = None;

    loop {
        let now = Instant::now();
        let stopping = created >= quota || now >= deadline || first_error.is_some();
        // How many messages may have been created by now.
        let allowed = if per_pub_rate > 0.0 {
            let due = ((now - t0).as_secs_f64() * per_pub_rate) as u64 + 1;
            due.min(quota)
        } else {
            quota
        };
        if !stopping {
            while inflight.len() < window && created < allowed {
                let mut body = vec![0u8; args.size];
                if args.size >= 8 {
                    body[..8].copy_from_slice(&clock.now_ns().to_le_bytes());
                }
                let rk = queues[next_q].clone();
                next_q = (next_q + 1) % queues.len();
                inflight.push(publish_one(&ch, rk, body, props.clone()));
                created += 1;
            }
        }
        if stopping && inflight.is_empty() {
            break;
        }
        // When rate-limited, wake up for the next message that falls due.
        let next_due = if per_pub_rate > 0.0 && !stopping && created < quota {
            (t0 + Duration::from_secs_f64(created as f64 / per_pub_rate)).min(deadline)
        } else if stopping {
            hard_stop
        } else {
            deadline
        };
        if inflight.is_empty() {
            sleep_until(next_due.into()).await;
            continue;
        }
        let done = tokio::select! {
            biased;
            d = inflight.next() => d,
            _ = sleep_until(next_due.into()) => {
                if stopping {
                    // Hard stop reached with publishes still outstanding.
                    stats.errors += inflight.len() as u64;
                    eprintln!("publisher {id}: {} publishes still outstanding at the drain timeout", inflight.len());
                    break;
                }
                continue;
            }
        };
        let Some(outcome) = done else { continue };
        let mut handle = |o: Outcome, stats: &mut PubStats| match o {
            Outcome::Sent => stats.sent += 1,
            Outcome::Nacked => stats.nacked += 1,
            Outcome::Error(e) => {
                stats.errors += 1;
                if first_error.is_none() {
                    first_error = Some(e);
                }
            }
        };
        handle(outcome, &mut stats);
        // Take whatever else already completed without going back through the refill logic.
        while let Some(Some(o)) = futures_util::FutureExt::now_or_never(inflight.next()) {
            handle(o, &mut stats);
        }
    }
    if let Some(e) = first_error {
        eprintln!("publisher {id}: {e}");
    }
    stats.finished = Some(Instant::now());
    stats
}

async fn consumer(
    ch: Channel,
    streams: Vec<Consumer>,
    args: Arc<Args>,
    clock: Clock,
    received: Arc<AtomicU64>,
    stop: CancellationToken,
) -> ConStats {
    let mut stats = ConStats::default();
    let ack_every = args.ack_every();
    let mut unacked: u64 = 0;
    let mut last_tag: u64 = 0;
    let mut last_ns: u64 = 0;
    let mut deliveries = select_all(streams);
    let mut stopped = pin!(stop.cancelled());
    loop {
        let next = tokio::select! {
            biased;
            d = deliveries.next() => d,
            _ = &mut stopped => break,
        };
        let d = match next {
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                eprintln!("consumer: {e}");
                stats.errors += 1;
                break;
            }
            None => break,
        };
        let now = clock.now_ns();
        last_ns = now;
        if d.data.len() >= 8 && args.size >= 8 {
            let mut ts = [0u8; 8];
            ts.copy_from_slice(&d.data[..8]);
            stats
                .latency
                .record(now.saturating_sub(u64::from_le_bytes(ts)));
        }
        stats.received += 1;
        received.fetch_add(1, Ordering::Relaxed);
        if args.manual_ack {
            unacked += 1;
            last_tag = d.delivery_tag;
            if unacked >= ack_every {
                unacked = 0;
                if let Err(e) = ch
                    .basic_ack(last_tag, BasicAckOptions { multiple: true })
                    .await
                {
                    eprintln!("consumer: basic.ack: {e}");
                    stats.errors += 1;
                    break;
                }
            }
        }
    }
    stats.last = (stats.received > 0).then(|| clock.instant_at(last_ns));
    if unacked > 0 {
        let _ = ch
            .basic_ack(last_tag, BasicAckOptions { multiple: true })
            .await;
    }
    stats
}
