#!/usr/bin/env bash
# AMQP benchmark: the same scenarios against FerryMQ and RabbitMQ in one run on one machine, one JSON line per
# run on stdout (progress on stderr). Compare ratios, not absolute numbers (docs/ARCHITECTURE.md §9).
#
#   scripts/bench-amqp.sh                 # 10 s per run
#   DURATION=5 scripts/bench-amqp.sh      # shorter runs
#   OUT=bench.jsonl scripts/bench-amqp.sh # also append the JSON lines to a file
#
# Scenarios, each against FerryMQ then RabbitMQ:
#   a  transient, 16 B, 1 publisher / 1 consumer, as fast as possible       (target: >= 1M msg/s, >= 8x RabbitMQ)
#   b  transient, 16 B, fixed 5000 msg/s: latency                          (target: p99 < 0.2 ms)
#      preceded by `ferrymq-bench floor`: the same records and rate through a null forwarder process, the
#      machine's latency floor for this shape (docs/ARCHITECTURE.md §9)
#   c  persistent + publisher confirms + manual acks, 1 KiB                 (target: no slower than BASELINE)
#   a through the relay (a plain TCP forwarder in front of each broker): the cost of moving the bytes alone.
#
# Environment: DURATION (s, default 10), FERRYMQ_PORT (5672), RABBITMQ_PORT (5673, as shared/peers/start.sh
# sets it up), RELAY_PORT (5690), RELAY=0 to skip the relay runs, FERRYMQ_ARGS (extra broker flags),
# BENCH_ARGS (extra ferrymq-bench flags, e.g. "--client lapin"), PEERS (path of shared/peers/start.sh),
# SCENARIOS (default "a b c"), FERRYMQ and BENCH (paths of already built binaries: both set skips the release
# build), BASELINE (path of another `ferrymq` binary, e.g. a build of main, run as target "baseline" on
# BASELINE_PORT, default 5674, so a change is compared with what it changes in the same run).
set -euo pipefail
cd "$(dirname "$0")/.."
NAME=bench-amqp
# shellcheck source=scripts/bench-common.sh
. scripts/bench-common.sh

DURATION="${DURATION:-10}"
FERRYMQ_PORT="${FERRYMQ_PORT:-5672}"
RABBITMQ_PORT="${RABBITMQ_PORT:-5673}"
RELAY_PORT="${RELAY_PORT:-5690}"
RELAY="${RELAY:-1}"
PEERS="${PEERS:-../shared/peers/start.sh}"
OUT="${OUT:-}"
SCENARIOS="${SCENARIOS:-a b c}"
BASELINE="${BASELINE:-}"
BASELINE_PORT="${BASELINE_PORT:-5674}"
read -r -a FERRYMQ_EXTRA <<<"${FERRYMQ_ARGS:-}"
read -r -a BENCH_EXTRA <<<"${BENCH_ARGS:-}"

if [ -z "${FERRYMQ:-}" ] || [ -z "${BENCH:-}" ]; then build_release; fi

# Processes this script starts, stopped on exit (and only those).
FERRYMQ_PID=""
BASELINE_PID=""
RELAY_PID=""
DATA_DIR="$(mktemp -d)"
FERRYMQ_LOG="$DATA_DIR.log"
BASELINE_DIR="$(mktemp -d)"
cleanup() {
  local pid
  for pid in "$RELAY_PID" "$FERRYMQ_PID" "$BASELINE_PID"; do
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  done
  rm -rf "$DATA_DIR" "$FERRYMQ_LOG" "$BASELINE_DIR" "$BASELINE_DIR.log"
}
trap cleanup EXIT

log "starting RabbitMQ ($PEERS rabbitmq)"
"$PEERS" rabbitmq >&2 || log "peer start script failed"
RABBITMQ_PID=""
if wait_up "$RABBITMQ_PORT" 5; then
  RABBITMQ_PID="$(pgrep -f 'beam.smp.*rabbit' | head -n1 || true)"
  [ -n "$RABBITMQ_PID" ] || RABBITMQ_PID="$(pgrep -f beam.smp | head -n1 || true)"
else
  log "RabbitMQ is not listening on 127.0.0.1:$RABBITMQ_PORT: skipping its runs"
fi

start_ferrymq() { # binary port data-dir log: prints the pid, or nothing when it did not come up
  local bin="$1" port="$2" dir="$3" logf="$4"
  if up "$port"; then
    log "something already listens on 127.0.0.1:$port: not starting $bin there"
    return 0
  fi
  log "starting $bin on 127.0.0.1:$port (data in $dir, log in $logf)"
  "$bin" --data-dir "$dir" --bind 127.0.0.1 --amqp-port "$port" --http-port 0 \
    --mqtt-port 0 --mqtt-ws-port 0 --aws-port 0 \
    "${FERRYMQ_EXTRA[@]}" >"$logf" 2>&1 &
  local pid=$!
  if wait_up "$port" 30; then
    echo "$pid"
  else
    log "$bin did not come up; its log:"
    tail -n 20 "$logf" >&2 || true
    kill "$pid" 2>/dev/null || true
  fi
}

FERRYMQ_PID="$(start_ferrymq "$FERRYMQ" "$FERRYMQ_PORT" "$DATA_DIR" "$FERRYMQ_LOG")"
if [ -n "$BASELINE" ]; then
  BASELINE_PID="$(start_ferrymq "$BASELINE" "$BASELINE_PORT" "$BASELINE_DIR" "$BASELINE_DIR.log")"
fi

emit() { # one JSON line
  echo "$1"
  if [ -n "$OUT" ]; then echo "$1" >>"$OUT"; fi
}

bench() { # label port pid args...
  local label="$1" port="$2" pid="$3"
  shift 3
  local pid_args=()
  [ -n "$pid" ] && pid_args=(--pid "$pid")
  log "run $label"
  local line
  if line="$("$BENCH" amqp --url "amqp://guest:guest@127.0.0.1:$port/%2f" --label "$label" \
    --duration "$DURATION" "${pid_args[@]}" "$@" "${BENCH_EXTRA[@]}")"; then
    emit "$line"
  else
    log "run $label failed"
  fi
  sleep 2 # let the broker settle before the next run
}

targets=()
[ -n "$FERRYMQ_PID" ] && targets+=("ferrymq:$FERRYMQ_PORT:$FERRYMQ_PID")
[ -n "$BASELINE_PID" ] && targets+=("baseline:$BASELINE_PORT:$BASELINE_PID")
[ -n "$RABBITMQ_PID" ] && targets+=("rabbitmq:$RABBITMQ_PORT:$RABBITMQ_PID")
[ ${#targets[@]} -gt 0 ] || { log "no broker to benchmark"; exit 1; }

for scenario in $SCENARIOS; do
  if [ "$scenario" = b ]; then
    # The machine's own floor for this shape: the same records at the same rate through a null forwarder.
    log "run floor-b-latency-5k"
    if line="$("$BENCH" floor --rate 5000 --duration "$DURATION" --label floor-b-latency-5k)"; then
      emit "$line"
    else
      log "run floor-b-latency-5k failed"
    fi
  fi
  for t in "${targets[@]}"; do
    IFS=: read -r name port pid <<<"$t"
    case "$scenario" in
      a) bench "$name-a-transient-16B" "$port" "$pid" --publishers 1 --consumers 1 --size 16 ;;
      b) bench "$name-b-latency-5k" "$port" "$pid" --publishers 1 --consumers 1 --size 16 --rate 5000 ;;
      c) bench "$name-c-persistent-confirm-1KiB" "$port" "$pid" --publishers 1 --consumers 1 --size 1024 \
        --persistent --confirm --manual-ack ;;
    esac
  done
done

if [ "$RELAY" = 1 ] && up "$RELAY_PORT"; then
  log "something already listens on 127.0.0.1:$RELAY_PORT: skipping the relay runs (set RELAY_PORT)"
elif [ "$RELAY" = 1 ]; then
  for t in "${targets[@]}"; do
    IFS=: read -r name port pid <<<"$t"
    "$BENCH" relay --listen "127.0.0.1:$RELAY_PORT" --target "127.0.0.1:$port" --label "relay-$name" >&2 &
    RELAY_PID=$!
    if wait_up "$RELAY_PORT" 10; then
      bench "$name-a-via-relay" "$RELAY_PORT" "$pid" --publishers 1 --consumers 1 --size 16
    else
      log "relay did not come up on 127.0.0.1:$RELAY_PORT"
    fi
    kill "$RELAY_PID" 2>/dev/null || true
    wait "$RELAY_PID" 2>/dev/null || true
    RELAY_PID=""
  done
fi
