//! `ferrymq-bench floor`: the latency floor of this machine for the broker's topology, measured with a null
//! broker.
//!
//! A latency run (`amqp --rate 5000`) crosses two processes twice: the publisher writes to the broker, the
//! broker writes to the consumer, and the consumer shares the publisher's process. This subcommand runs the
//! same shape with nothing in the middle but a forwarder: it starts itself again as a child process
//! (`floor --serve`) that accepts two connections and copies the first one's bytes to the second with one
//! blocking thread (a read and a write per burst: no broker can do less), then publishes timestamped records
//! at the given rate with the same runtime and the same timer-driven bursts as the AMQP publisher, and reads
//! them back on the second connection. The report's percentiles are what the machine alone costs (wake-ups
//! of idle CPUs, scheduling, loopback TCP): a broker's p99 at the same rate cannot be expected below them.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::{Clock, Latency, Report, rate};

/// The read buffers' size, and so the largest record.
const BUF: usize = 64 * 1024;

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Records per second, sent in the bursts a 1 ms runtime timer gives (as `amqp --rate`).
    #[arg(long, default_value_t = 5000.0)]
    pub rate: f64,
    /// Seconds to publish for.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Record size in bytes (at least 8: the timestamp).
    #[arg(long, default_value_t = 16)]
    pub size: usize,
    /// Free-form name copied to the report.
    #[arg(long, default_value = "null-forwarder")]
    pub label: String,
    /// The forwarder polls its socket in a busy loop instead of sleeping in read: it never needs waking,
    /// so what remains is the client's side alone (and one core is spent on it).
    #[arg(long)]
    pub spin: bool,
    /// Run as the forwarder: listen on this address, print the bound port, forward the first accepted
    /// connection to the second (started by the measuring side; not meant to be run by hand).
    #[arg(long, hide = true)]
    pub serve: Option<String>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    if let Some(addr) = &args.serve {
        return serve(addr, args.spin);
    }
    if !(8..=BUF).contains(&args.size) {
        bail!("--size must be 8 (the timestamp) to {BUF} bytes");
    }
    if !(args.rate > 0.0
        && args.rate.is_finite()
        && args.duration > 0.0
        && args.duration.is_finite())
    {
        bail!("--rate and --duration must be positive");
    }
    let (mut child, port) = spawn_forwarder(args.spin)?;
    let result = measure(&args, port).await;
    let _ = child.kill();
    let _ = child.wait();
    result?.print()
}

/// Starts `ferrymq-bench floor --serve 127.0.0.1:0` and reads the port it bound from its first line.
fn spawn_forwarder(spin: bool) -> anyhow::Result<(Child, u16)> {
    let exe = std::env::current_exe().context("cannot find this program to start the forwarder")?;
    let mut child = Command::new(exe)
        .args(["floor", "--serve", "127.0.0.1:0"])
        .args(spin.then_some("--spin"))
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .context("cannot start the forwarder")?;
    let mut line = String::new();
    let port = child
        .stdout
        .take()
        .context("forwarder stdout")
        .and_then(|out| Ok(BufReader::new(out).read_line(&mut line)?))
        .and_then(|_| {
            line.trim()
                .parse()
                .with_context(|| format!("forwarder said {line:?}"))
        });
    match port {
        Ok(port) => Ok((child, port)),
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(e)
        }
    }
}

/// The null broker: one thread, read from the first connection (blocking, or polling with `spin`), write to
/// the second.
fn serve(addr: &str, spin: bool) -> anyhow::Result<()> {
    let listener = std::net::TcpListener::bind(addr)?;
    println!("{}", listener.local_addr()?.port());
    std::io::stdout().flush()?;
    let (mut from, _) = listener.accept()?;
    let (mut to, _) = listener.accept()?;
    from.set_nodelay(true)?;
    to.set_nodelay(true)?;
    from.set_nonblocking(spin)?;
    let mut buf = vec![0u8; BUF];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::hint::spin_loop();
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        to.write_all(&buf[..n])?;
    }
}

async fn measure(args: &Args, port: u16) -> anyhow::Result<Report> {
    let mut publisher = TcpStream::connect(("127.0.0.1", port)).await?;
    // The forwarder takes the first accepted connection as its source.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut consumer = TcpStream::connect(("127.0.0.1", port)).await?;
    publisher.set_nodelay(true)?;
    consumer.set_nodelay(true)?;
    let total = (args.rate * args.duration).ceil() as u64;
    let size = args.size;
    let clock = Clock::new();

    let reader = tokio::spawn(async move {
        let mut latency = Latency::new();
        let mut buf = vec![0u8; BUF];
        let (mut filled, mut received) = (0usize, 0u64);
        while received < total {
            let n = consumer.read(&mut buf[filled..]).await?;
            if n == 0 {
                bail!("the forwarder closed after {received} records");
            }
            let now = clock.now_ns();
            filled += n;
            let whole = filled / size * size;
            for record in buf[..whole].chunks_exact(size) {
                let sent = u64::from_le_bytes(record[..8].try_into().expect("8 bytes"));
                latency.record(now.saturating_sub(sent));
                received += 1;
            }
            buf.copy_within(whole..filled, 0);
            filled -= whole;
        }
        Ok((latency, received, Instant::now()))
    });

    let t0 = Instant::now();
    let mut sent = 0u64;
    let mut burst = Vec::new();
    while sent < total {
        let due = (((t0.elapsed().as_secs_f64()) * args.rate) as u64 + 1).min(total);
        burst.clear();
        while sent < due {
            let start = burst.len();
            burst.resize(start + size, 0);
            burst[start..start + 8].copy_from_slice(&clock.now_ns().to_le_bytes());
            sent += 1;
        }
        publisher.write_all(&burst).await?;
        let next = t0 + Duration::from_secs_f64(sent as f64 / args.rate);
        tokio::time::sleep_until(next.into()).await;
    }
    let publish_time = t0.elapsed();
    let (latency, received, done) = tokio::time::timeout(Duration::from_secs(30), reader)
        .await
        .context("records still missing 30 s after the last was sent")???;

    let mut report = Report {
        label: args.label.clone(),
        protocol: "floor",
        publishers: 1,
        consumers: 1,
        size,
        rate: args.rate,
        duration_s: publish_time.as_secs_f64(),
        sent,
        received,
        send_rate: rate(sent, publish_time),
        recv_rate: rate(received, done - t0),
        ..Report::default()
    };
    report.set_latency(&latency);
    Ok(report)
}
