#!/usr/bin/env bash
# AMQP soak (not a test): publishers at full speed (persistent, confirmed, 1 KiB), consumers ten times slower,
# for SOAK_SECONDS (default 600) against FerryMQ and then RabbitMQ on the same machine. Prints one JSON summary
# line per broker on stdout (RSS first/max/last, acked vs delivered vs still queued, publish and deliver
# rates, seconds blocked by connection.blocked); samples every 10 s go to stderr and to SOAK_CSV when set.
#
#   scripts/soak-amqp.sh                      # 10 minutes each
#   SOAK_SECONDS=60 scripts/soak-amqp.sh      # a quick look
#   RABBITMQ=0 scripts/soak-amqp.sh           # FerryMQ only
#
# Environment: SOAK_SECONDS, FERRYMQ_PORT (5672), RABBITMQ_PORT (5673, as shared/peers/start.sh sets it up),
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
CSV=()
if [ -n "${SOAK_CSV:-}" ]; then CSV=(--csv "$SOAK_CSV"); fi

python3 -c 'import pika' 2>/dev/null || pip install -q pika >&2

build_ferrymq

soak() { # label port pid
  log "$1: ${SOAK_SECONDS}s on 127.0.0.1:$2 (pid $3)"
  python3 scripts/soak-amqp.py --label "$1" --port "$2" --pid "$3" --seconds "$SOAK_SECONDS" \
    "${CSV[@]}" "${SOAK_EXTRA[@]}"
}

if start_ferrymq "$FERRYMQ_PORT" "${FERRYMQ_EXTRA[@]}"; then
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
