#!/usr/bin/env bash
# SQS throughput: `ferrymq-bench sqs` (SendMessageBatch / ReceiveMessage / DeleteMessageBatch, AWS JSON 1.0,
# SigV4-signed) against FerryMQ and moto_server (../shared/peers/start.sh moto, port 5000) in the same run, one
# JSON line each. FerryMQ runs the release build on the journal with one [[aws.keys]] entry, so every request's
# signature is verified and every message is synced before SendMessageBatch answers.
#   scripts/bench-sqs.sh            (DURATION=10 PRODUCERS=32 CONSUMERS=16 SIZE=256 to change the load)
# Target (the SQS issue): at least 20,000 messages/s through the one queue. Throughput is bound by the journal's
# sync latency, not the broker's CPU: more concurrent producers put more messages in each group commit.
set -euo pipefail
cd "$(dirname "$0")/.."
port=${FERRYMQ_BENCH_SQS_PORT:-19325}
duration=${DURATION:-10}
producers=${PRODUCERS:-32}
consumers=${CONSUMERS:-16}
size=${SIZE:-256}

cargo build --release --quiet --bin ferrymq -p ferrymq
cargo build --release --quiet -p ferrymq-bench --bin ferrymq-bench

up() { (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null; }

data=$(mktemp -d)
cat >"$data.toml" <<TOML
[[aws.keys]]
access_key_id = "ferrymq-bench"
secret_access_key = "ferrymq-bench-secret"
TOML
RUST_LOG=warn target/release/ferrymq --config "$data.toml" --data-dir "$data" --bind 127.0.0.1 \
  --amqp-port 0 --http-port 0 --mqtt-port 0 --mqtt-ws-port 0 --aws-port "$port" >"$data.log" 2>&1 &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$data" "$data.toml" "$data.log"' EXIT
for _ in $(seq 100); do up "$port" && break; sleep 0.1; done

endpoints=(--endpoint "http://127.0.0.1:$port")
if ../shared/peers/start.sh moto >/dev/null 2>&1 && up 5000; then
  endpoints+=(--endpoint http://127.0.0.1:5000)
else
  echo "bench-sqs: moto_server did not start; FerryMQ only" >&2
fi
target/release/ferrymq-bench sqs "${endpoints[@]}" --pid "$pid" --duration "$duration" \
  --producers "$producers" --consumers "$consumers" --size "$size"
