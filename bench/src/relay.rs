//! `ferrymq-bench relay`: a trivial TCP forwarder (a copy loop per direction), the "relay" baseline of docs/ARCHITECTURE.md §9.
//!
//! Benchmarking a broker through the relay (`amqp --url amqp://...@127.0.0.1:<listen>`) puts one more
//! process copying every byte on the same machine: the gap between the direct and the relayed run shows
//! what the bytes alone cost on this machine, i.e. how close to the machine's limit the broker is.
//! Runs until SIGINT/SIGTERM (or --duration), then prints one JSON line with what it forwarded.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Serialize;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{SignalKind, signal};

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Address to accept client connections on.
    #[arg(long, default_value = "127.0.0.1:5690")]
    pub listen: String,
    /// Address every accepted connection is forwarded to (loopback in practice).
    #[arg(long)]
    pub target: String,
    /// Stop after this many seconds (default: run until SIGINT/SIGTERM).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Copy buffer size per direction, bytes.
    #[arg(long, default_value_t = 64 * 1024)]
    pub buffer: usize,
    /// Free-form name copied to the report.
    #[arg(long)]
    pub label: Option<String>,
}

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    to_target: AtomicU64,
    to_client: AtomicU64,
    errors: AtomicU64,
}

#[derive(Serialize)]
struct Report {
    label: String,
    protocol: &'static str,
    listen: String,
    target: String,
    duration_s: f64,
    connections: u64,
    bytes_to_target: u64,
    bytes_to_client: u64,
    errors: u64,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let listener = TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let local = listener.local_addr()?;
    eprintln!("relay: {local} -> {}", args.target);
    let counters = Arc::new(Counters::default());
    let started = Instant::now();
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let until = args
        .duration
        .map(|d| tokio::time::Instant::now() + Duration::from_secs_f64(d.max(0.0)));
    let limit = async {
        match until {
            Some(t) => tokio::time::sleep_until(t).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(limit);
    loop {
        tokio::select! {
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            _ = &mut limit => break,
            accepted = listener.accept() => {
                let (client, _) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        eprintln!("relay: accept: {e}");
                        counters.errors.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                counters.connections.fetch_add(1, Ordering::Relaxed);
                let target = args.target.clone();
                let counters = counters.clone();
                let buffer = args.buffer;
                tokio::spawn(async move {
                    if let Err(e) = forward(client, &target, buffer, &counters).await {
                        eprintln!("relay: {e:#}");
                        counters.errors.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        }
    }
    let report = Report {
        label: args.label.clone().unwrap_or_else(|| "relay".into()),
        protocol: "relay",
        listen: local.to_string(),
        target: args.target.clone(),
        duration_s: super::round(started.elapsed().as_secs_f64(), 3),
        connections: counters.connections.load(Ordering::Relaxed),
        bytes_to_target: counters.to_target.load(Ordering::Relaxed),
        bytes_to_client: counters.to_client.load(Ordering::Relaxed),
        errors: counters.errors.load(Ordering::Relaxed),
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

async fn forward(
    client: TcpStream,
    target: &str,
    buffer: usize,
    counters: &Counters,
) -> anyhow::Result<()> {
    let upstream = TcpStream::connect(target)
        .await
        .with_context(|| format!("connect {target}"))?;
    client.set_nodelay(true)?;
    upstream.set_nodelay(true)?;
    let (cr, cw) = client.into_split();
    let (ur, uw) = upstream.into_split();
    // copy_bidirectional, with byte counts kept up to date while the connection is open.
    let (up, down) = tokio::join!(
        pump(cr, uw, buffer, &counters.to_target),
        pump(ur, cw, buffer, &counters.to_client)
    );
    up.and(down)
}

/// Copies one direction until EOF, then shuts the write side down so the peer sees the EOF too.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    buffer: usize,
    count: &AtomicU64,
) -> anyhow::Result<()> {
    let mut buf = vec![0u8; buffer.max(1)];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            // A peer resetting the connection at the end of a run is not worth reporting.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => return Err(e.into()),
        };
        if let Err(e) = to.write_all(&buf[..n]).await {
            if matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
            ) {
                return Ok(());
            }
            return Err(e.into());
        }
        count.fetch_add(n as u64, Ordering::Relaxed);
    }
    let _ = to.shutdown().await;
    Ok(())
}
