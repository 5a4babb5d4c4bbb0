//! `ferrymq-bench sqs`: SQS batch load over AWS JSON 1.0 with SigV4-signed requests, against one or more
//! endpoints in the same run (FerryMQ and moto, say: one JSON line each).
//!
//! Layout of a run, per endpoint: DeleteQueue then CreateQueue of `--queue`; producers loop on
//! SendMessageBatch (`--batch` messages of `--size` bytes); consumers loop on ReceiveMessage (10 at most,
//! long polling 1 s) then DeleteMessageBatch of what they got; after the duration (or count) consumers get up
//! to --drain-timeout to receive everything that was sent. Every worker has its own keep-alive HTTP/1.1
//! connection (`http`), and signs every request (`sign`), so the broker's signature check is part of what is
//! measured when it has keys configured.
//!
//! Each body starts with the send time (20 decimal digits, nanoseconds since a base instant shared by the
//! process); consumers record now - send time in a histogram.

mod http;
mod sign;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use super::{Clock, Latency, Report, RunArgs, Sampler, host_port, rate};
use http::Connection;
use sign::Signer;

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Endpoint URL (http://host:port); repeat it to bench several in one run, one JSON line each.
    #[arg(long = "endpoint", default_value = "http://127.0.0.1:9324")]
    pub endpoints: Vec<String>,
    /// Region to sign for.
    #[arg(long, default_value = "us-east-1")]
    pub region: String,
    /// Access key id to sign with.
    #[arg(long, default_value = "ferrymq-bench")]
    pub access_key: String,
    /// Secret access key to sign with.
    #[arg(long, default_value = "ferrymq-bench-secret")]
    pub secret_key: String,
    /// Queue name (deleted and created again at the start).
    #[arg(long, default_value = "ferrymq-bench-sqs")]
    pub queue: String,
    /// Concurrent SendMessageBatch loops.
    #[arg(long, default_value_t = 4)]
    pub producers: usize,
    /// Concurrent ReceiveMessage + DeleteMessageBatch loops.
    #[arg(long, default_value_t = 4)]
    pub consumers: usize,
    /// Messages per SendMessageBatch (1 to 10).
    #[arg(long, default_value_t = 10)]
    pub batch: usize,
    /// Message body size in bytes (at least 20: the send time).
    #[arg(long, default_value_t = 256)]
    pub size: usize,
    #[command(flatten)]
    pub run: RunArgs,
}

/// Shared counters of one endpoint's run.
#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    received: AtomicU64,
    errors: AtomicU64,
    /// Consumers stop at their next receive.
    stop: AtomicBool,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    args.run.validate()?;
    if !(1..=10).contains(&args.batch) {
        bail!("--batch must be between 1 and 10");
    }
    if args.size < 20 {
        bail!("--size must be at least 20 (the send time)");
    }
    let args = Arc::new(args);
    for (i, endpoint) in args.endpoints.iter().enumerate() {
        // The broker process (--pid) is sampled on the first endpoint only.
        let pid = if i == 0 { args.run.pid } else { None };
        bench_one(&args, endpoint, pid).await?.print()?;
    }
    Ok(())
}

async fn bench_one(args: &Arc<Args>, endpoint: &str, pid: Option<u32>) -> anyhow::Result<Report> {
    let signer = Arc::new(Signer::new(
        &args.access_key,
        &args.secret_key,
        &args.region,
    ));
    let addr = host_port(endpoint);
    let mut setup = Connection::open(&addr).await?;
    let url = setup_queue(&mut setup, &signer, &args.queue).await?;
    let clock = Clock::new();
    let counters = Arc::new(Counters::default());
    let sampler = Sampler::start(pid)?;
    let t0 = Instant::now();
    let deadline = t0 + args.run.publish_limit();
    let per_producer = args
        .run
        .count
        .map(|c| c.div_ceil(args.producers.max(1) as u64));
    let mut consumers = Vec::new();
    for _ in 0..args.consumers {
        let conn = Connection::open(&addr).await?;
        let w = Worker::new(conn, &signer, &url, &counters, clock);
        consumers.push(tokio::spawn(w.consume()));
    }
    let mut producers = Vec::new();
    for _ in 0..args.producers {
        let conn = Connection::open(&addr).await?;
        let w = Worker::new(conn, &signer, &url, &counters, clock);
        producers.push(tokio::spawn(w.produce(
            args.clone(),
            deadline,
            per_producer,
        )));
    }
    for p in producers {
        p.await.context("producer task")?;
    }
    let pub_time = t0.elapsed();
    let drain_until = Instant::now() + Duration::from_secs_f64(args.run.drain_timeout);
    while counters.received.load(Ordering::Acquire) < counters.sent.load(Ordering::Acquire)
        && Instant::now() < drain_until
        && args.consumers > 0
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let recv_time = t0.elapsed();
    let mut latency = Latency::new();
    counters.stop.store(true, Ordering::Release);
    for c in consumers {
        if let Ok(Ok(h)) = tokio::time::timeout(Duration::from_secs(5), c).await {
            latency.merge(&h);
        }
    }
    let usage = sampler.finish().await;
    let _ = call(
        &mut setup,
        &signer,
        "DeleteQueue",
        &json!({"QueueUrl": url}),
    )
    .await;
    let mut report = Report {
        label: args.run.label.clone().unwrap_or(addr),
        protocol: "sqs",
        publishers: args.producers,
        consumers: args.consumers,
        queues: 1,
        size: args.size,
        confirm: true,
        persistent: true,
        manual_ack: true,
        ..Report::default()
    };
    report.sent = counters.sent.load(Ordering::Acquire);
    report.received = counters.received.load(Ordering::Acquire);
    report.errors = counters.errors.load(Ordering::Acquire);
    report.duration_s = super::round(pub_time.as_secs_f64(), 3);
    report.send_rate = rate(report.sent, pub_time);
    report.recv_rate = rate(report.received, recv_time);
    report.set_latency(&latency);
    report.set_usage(&usage);
    Ok(report)
}

/// Deletes and creates the bench queue; returns its URL.
async fn setup_queue(
    conn: &mut Connection,
    signer: &Signer,
    queue: &str,
) -> anyhow::Result<String> {
    if let Ok(got) = call(conn, signer, "GetQueueUrl", &json!({"QueueName": queue})).await
        && let Some(url) = got["QueueUrl"].as_str()
    {
        call(conn, signer, "DeleteQueue", &json!({"QueueUrl": url})).await?;
    }
    let created = call(conn, signer, "CreateQueue", &json!({"QueueName": queue})).await?;
    created["QueueUrl"]
        .as_str()
        .map(str::to_owned)
        .context("CreateQueue answered no QueueUrl")
}

/// One signed AWS JSON 1.0 call; an error reply is an error.
async fn call(
    conn: &mut Connection,
    signer: &Signer,
    action: &str,
    input: &Value,
) -> anyhow::Result<Value> {
    let body = serde_json::to_vec(input)?;
    let target = format!("AmazonSQS.{action}");
    let headers = signer.headers(conn.host(), &target, &body);
    let (status, reply) = conn.post(&headers, &body).await?;
    if status != 200 {
        bail!(
            "{action}: HTTP {status}: {}",
            String::from_utf8_lossy(&reply)
        );
    }
    Ok(serde_json::from_slice(&reply)?)
}

/// One producer's or consumer's connection and what it shares.
struct Worker {
    conn: Connection,
    signer: Arc<Signer>,
    url: String,
    counters: Arc<Counters>,
    clock: Clock,
}

impl Worker {
    fn new(
        conn: Connection,
        signer: &Arc<Signer>,
        url: &str,
        counters: &Arc<Counters>,
        clock: Clock,
    ) -> Self {
        Self {
            conn,
            signer: signer.clone(),
            url: url.to_owned(),
            counters: counters.clone(),
            clock,
        }
    }

    async fn produce(mut self, args: Arc<Args>, deadline: Instant, limit: Option<u64>) {
        let padding = "x".repeat(args.size - 20);
        let mut sent = 0u64;
        while Instant::now() < deadline && limit.is_none_or(|l| sent < l) {
            let entries: Vec<Value> = (0..args.batch)
                .map(|i| {
                    let body = format!("{:020}{padding}", self.clock.now_ns());
                    json!({"Id": i.to_string(), "MessageBody": body})
                })
                .collect();
            let input = json!({"QueueUrl": self.url, "Entries": entries});
            match call(&mut self.conn, &self.signer, "SendMessageBatch", &input).await {
                Ok(reply) => {
                    let ok = reply["Successful"].as_array().map_or(0, Vec::len) as u64;
                    sent += ok;
                    self.counters.sent.fetch_add(ok, Ordering::AcqRel);
                }
                Err(_) => {
                    self.counters.errors.fetch_add(1, Ordering::AcqRel);
                    if self.reconnect().await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    async fn consume(mut self) -> Latency {
        let mut latency = Latency::new();
        while !self.counters.stop.load(Ordering::Acquire) {
            let input = json!({"QueueUrl": self.url, "MaxNumberOfMessages": 10, "WaitTimeSeconds": 1, "VisibilityTimeout": 60});
            let reply = match call(&mut self.conn, &self.signer, "ReceiveMessage", &input).await {
                Ok(reply) => reply,
                Err(_) => {
                    self.counters.errors.fetch_add(1, Ordering::AcqRel);
                    if self.reconnect().await.is_err() {
                        return latency;
                    }
                    continue;
                }
            };
            let messages = reply["Messages"].as_array().cloned().unwrap_or_default();
            if messages.is_empty() {
                continue;
            }
            let now = self.clock.now_ns();
            let mut entries = Vec::with_capacity(messages.len());
            for (i, m) in messages.iter().enumerate() {
                let sent_ns = m["Body"]
                    .as_str()
                    .and_then(|b| b.get(..20))
                    .and_then(|t| t.parse::<u64>().ok());
                if let Some(t) = sent_ns {
                    latency.record(now.saturating_sub(t));
                }
                entries.push(json!({"Id": i.to_string(), "ReceiptHandle": m["ReceiptHandle"]}));
            }
            let input = json!({"QueueUrl": self.url, "Entries": entries});
            if call(&mut self.conn, &self.signer, "DeleteMessageBatch", &input)
                .await
                .is_err()
            {
                self.counters.errors.fetch_add(1, Ordering::AcqRel);
            }
            self.counters
                .received
                .fetch_add(messages.len() as u64, Ordering::AcqRel);
        }
        latency
    }

    async fn reconnect(&mut self) -> anyhow::Result<()> {
        self.conn = Connection::open(self.conn.host()).await?;
        Ok(())
    }
}
