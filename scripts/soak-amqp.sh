#!/usr/bin/env bash
# AMQP soak (not a test): publishers at full speed (persistent, confirmed, SOAK_SIZE bytes, default 256),
# consumers ten times slower, for SOAK_SECONDS (default 600) against FerryMQ and then RabbitMQ on the same
# machine. The backlog grows by design, so FerryMQ's disk alarm is set to leave at most SOAK_DISK_BUDGET bytes
# (default 4 GiB) to the run: past that its publishers are blocked (connection.blocked), which is what a soak
# should see, instead of a shared disk filling up (FerryMQ persists 70,000 1-KiB messages a second here). Prints one JSON summary
# line per broker on stdout (RSS first/max/last, acked vs delivered vs still queued, publish and deliver
# rates, seconds blocked by connection.blocked); samples every 10 s go to stderr and to SOAK_CSV when set.
#
#   scripts/soak-amqp.sh                      # 10 minutes each
#   SOAK_SECONDS=60 scripts/soak-amqp.sh      # a quick look
#   RABBITMQ=0 scripts/soak-amqp.sh           # FerryMQ only
#
# Environment: SOAK_SECONDS, SOAK_SIZE, SOAK_DISK_BUDGET, FERRYMQ_PORT (5672), RABBITMQ_PORT (5673, as shared/peers/start.sh sets it up),
# FERRYMQ_ARGS (extra broker flags, e.g. "--memory-high-water 268435456"), SOAK_ARGS (extra soak-amqp.py
# flags), PEERS (path of shared/peers/start.sh), RABBITMQ=0 to skip RabbitMQ. Needs python3 with pika.
set -euo pipefail
cd "$(dirname "$0")/.."
NAME=soak-amqp
# shellcheck source=scripts/bench-common.sh
. scripts/bench-common.sh
# shellcheck source=scripts/ferrymq-release.sh
. scripts/ferrymq-release.sh

SOAK_SECONDS="${SOAK_SECONDS:-600}"
FERRYMQ_PORT="${FERRYMQ_PORT:-5672}"
RABBITMQ_PORT="${RABBITMQ_PORT:-5673}"
PEERS="${PEERS:-../shared/peers/start.sh}"
read -r -a FERRYMQ_EXTRA <<<"${FERRYMQ_ARGS:-}"
read -r -a SOAK_EXTRA <<<"${SOAK_ARGS:-}"
SOAK_SIZE="${SOAK_SIZE:-256}"
SOAK_DISK_BUDGET="${SOAK_DISK_BUDGET:-4294967296}"
CSV=()
if [ -n "${SOAK_CSV:-}" ]; then CSV=(--csv "$SOAK_CSV"); fi

python3 -c 'import pika' 2>/dev/null || pip install -q pika >&2

build_ferrymq

soak() { # label port pid
  log "$1: ${SOAK_SECONDS}s on 127.0.0.1:$2 (pid $3)"
  python3 scripts/soak-amqp.py --label "$1" --port "$2" --pid "$3" --seconds "$SOAK_SECONDS" \
    --size "$SOAK_SIZE" "${CSV[@]}" "${SOAK_EXTRA[@]}"
}

free_bytes="$(df -B1 --output=avail "$DATA_DIR" | tail -n1)"
printf '[store]\ndisk_low_water = %s\n' "$((free_bytes > SOAK_DISK_BUDGET ? free_bytes - SOAK_DISK_BUDGET : 0))" \
  >"$DATA_DIR.toml"
log "FerryMQ disk alarm at $(( (free_bytes - SOAK_DISK_BUDGET) / 1048576 )) MiB free"
if start_ferrymq "$FERRYMQ_PORT" --config "$DATA_DIR.toml" "${FERRYMQ_EXTRA[@]}"; then
  soak ferrymq "$FERRYMQ_PORT" "$FERRYMQ_PID"
  stop_ferrymq
fi

if [ "${RABBITMQ:-1}" != 0 ]; then
  "$PEERS" rabbitmq >&2 || log "peer start script failed"
  if wait_up "$RABBITMQ_PORT" 5; then
    pid="$(pgrep -f 'beam.smp.*rabbit' | head -n1 || true)"
    soak rabbitmq "$RABBITMQ_PORT" "${pid:-0}"
  else
    log "RabbitMQ is not listening on 127.0.0.1:$RABBITMQ_PORT: skipped"
  fi
fi
