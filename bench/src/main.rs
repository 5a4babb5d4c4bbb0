//! `ferrymq-bench`: load generator for FerryMQ and peer brokers. Prints one JSON line per run.
//!
//!   ferrymq-bench amqp --url amqp://guest:guest@127.0.0.1:5672/%2f --publishers 1 --consumers 1 --duration 10
//!   ferrymq-bench sqs --endpoint http://127.0.0.1:9324 --endpoint http://127.0.0.1:5000 --duration 10
//!   ferrymq-bench mqtt --port 1883 --qos 1 --subscribers 10 --duration 10
//!   ferrymq-bench mqtt --port 1883 --scenario idle --connections 15000 --pid PID
//!   ferrymq-bench floor --rate 5000 --duration 10
//!   ferrymq-bench relay --listen 127.0.0.1:5690 --target 127.0.0.1:5672
//!
//! See docs/ARCHITECTURE.md §9 for the method (same machine, same run, compare ratios). This file is
//! only the command line and the runtime; the drivers and the report live in the library (`lib.rs`).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use ferrymq_bench::{amqp, floor, mqtt, relay, sqs};

#[derive(Parser, Debug)]
#[command(
    name = "ferrymq-bench",
    version,
    about = "Load generator for FerryMQ and peer brokers; prints one JSON line per run"
)]
struct Cli {
    /// Runtime worker threads (default: number of CPUs).
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// AMQP 0-9-1 publish/consume load (publishers x consumers x queues).
    Amqp(amqp::Args),
    /// SQS batch send/receive/delete over AWS JSON 1.0, signed (one JSON line per --endpoint).
    Sqs(sqs::Args),
    /// MQTT 3.1.1 load: QoS 0/1/2 publish/subscribe and fan-out (`--scenario flow`), or many idle
    /// connections (`--scenario idle`).
    Mqtt(mqtt::Args),
    /// The machine's latency floor: timestamped records at a fixed rate through a null forwarder in a
    /// second process (the topology of `amqp --rate`, with no broker work).
    Floor(floor::Args),
    /// Trivial TCP forwarder, the "relay" baseline: bench through it to see the machine's limit.
    Relay(relay::Args),
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferrymq-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(n) = cli.threads {
        rt.worker_threads(n.max(1));
    }
    let rt = rt.build()?;
    let result = rt.block_on(async move {
        match cli.command {
            Command::Amqp(a) => amqp::run(a).await,
            Command::Mqtt(a) => mqtt::run(a).await,
            Command::Floor(a) => floor::run(a).await,
            Command::Relay(a) => relay::run(a).await,
            Command::Sqs(a) => sqs::run(a).await,
        }
    });
    // Do not wait for client library tasks still winding down.
    rt.shutdown_timeout(std::time::Duration::from_millis(100));
    result
}
