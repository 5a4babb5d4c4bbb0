#!/usr/bin/env bash
# Backlog benchmark, a durable backlog larger than memory: fill one durable queue with COUNT persistent messages
# (publisher confirms, no consumer), restart the broker on the same data dir, then drain the backlog with manual
# acks. Prints the broker's RSS after the fill, the recovery time and RSS after the restart, and the drain rate,
# as one JSON line on stdout (progress on stderr). Target: 10M x 1 KiB queued with RSS <= 512 MiB, drained at
# full speed.
#
#   scripts/bench-backlog.sh                      # 10M x 1 KiB (needs ~12 GB of free disk)
#   COUNT=1000000 scripts/bench-backlog.sh        # smaller
#   PEER=rabbitmq COUNT=1000000 scripts/bench-backlog.sh   # the same against RabbitMQ (shared/peers/start.sh)
#
# Environment: COUNT (10000000), SIZE (1024), PORT (5681 for FerryMQ; RabbitMQ uses 5673), DATA_DIR (a fresh
# temporary directory, removed at the end unless KEEP=1), FERRYMQ_ARGS (extra broker flags), PEERS; FERRYMQ and
# BENCH (paths of already built `ferrymq` and `ferrymq-bench` binaries, e.g. an older build to compare with: both
# set skips the release build), RESTART_SIGNAL (TERM: a clean shutdown before the restart; KILL: a crash).
set -euo pipefail
cd "$(dirname "$0")/.."
NAME=bench-backlog
# shellcheck source=scripts/bench-common.sh
. scripts/bench-common.sh

COUNT="${COUNT:-10000000}"
SIZE="${SIZE:-1024}"
PEER="${PEER:-ferrymq}"
PEERS="${PEERS:-../shared/peers/start.sh}"
KEEP="${KEEP:-0}"
RESTART_SIGNAL="${RESTART_SIGNAL:-TERM}"
read -r -a FERRYMQ_EXTRA <<<"${FERRYMQ_ARGS:-}"

rss_mb() { awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$1/status" 2>/dev/null || echo null; }
peak_mb() { awk '/VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$1/status" 2>/dev/null || echo null; }
now() { date +%s.%N; }

if [ -z "${FERRYMQ:-}" ] || [ -z "${BENCH:-}" ]; then build_release; fi

PID=""
DATA_DIR="${DATA_DIR:-$(mktemp -d)}"
LOG="$DATA_DIR.log"
cleanup() {
  if [ -n "$PID" ] && [ "$PEER" = ferrymq ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
  if [ "$KEEP" != 1 ]; then rm -rf "$DATA_DIR" "$LOG"; fi
}
trap cleanup EXIT

start_ferrymq() { # sets PID, and UP_S: seconds until the AMQP port answered (recovery runs before listeners open)
  local t0
  t0="$(now)"
  "$FERRYMQ" --data-dir "$DATA_DIR" --bind 127.0.0.1 --amqp-port "$PORT" --http-port 0 --mqtt-port 0 --mqtt-ws-port 0 --aws-port 0 \
    "${FERRYMQ_EXTRA[@]}" \
    >>"$LOG" 2>&1 &
  PID=$!
  for _ in $(seq 6000); do
    up "$PORT" && { UP_S="$(awk -v a="$(now)" -v b="$t0" 'BEGIN { printf "%.2f", a - b }')"; return 0; }
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.1
  done
  log "FerryMQ did not come up; its log:"; tail -n 20 "$LOG" >&2; exit 1
}

case "$PEER" in
  ferrymq)
    PORT="${PORT:-5681}"
    if up "$PORT"; then log "something already listens on 127.0.0.1:$PORT (set PORT)"; exit 1; fi
    log "starting FerryMQ on 127.0.0.1:$PORT (data in $DATA_DIR, log in $LOG)"
    start_ferrymq
    ;;
  rabbitmq)
    PORT="${PORT:-5673}"
    "$PEERS" rabbitmq >&2 || true
    up "$PORT" || { log "RabbitMQ is not listening on 127.0.0.1:$PORT"; exit 1; }
    PID="$(pgrep -f 'beam.smp.*rabbit' | head -n1 || pgrep -f beam.smp | head -n1)"
    ;;
  *) log "PEER must be ferrymq or rabbitmq"; exit 1 ;;
esac
URL="amqp://guest:guest@127.0.0.1:$PORT/%2f"
COMMON=(--url "$URL" --size "$SIZE" --persistent --queue-prefix backlog-q- --pid "$PID" --drain-timeout 3600)

log "fill: $COUNT x $SIZE B persistent, confirmed, no consumer"
FILL="$("$BENCH" amqp "${COMMON[@]}" --confirm --consumers 0 --count "$COUNT" --keep-queues --label "$PEER-fill")"
echo "$FILL" >&2
sleep 2
RSS_FULL="$(rss_mb "$PID")"
log "RSS with the backlog queued: $RSS_FULL MB"

RECOVERY_S=null
RSS_RECOVERED=null
PEAK_RECOVERY=null
if [ "$PEER" = ferrymq ]; then
  log "restart (SIG$RESTART_SIGNAL, then start on the same data dir)"
  kill "-$RESTART_SIGNAL" "$PID"; wait "$PID" 2>/dev/null || true
  start_ferrymq
  RECOVERY_S="$UP_S"
  RSS_RECOVERED="$(rss_mb "$PID")"
  PEAK_RECOVERY="$(peak_mb "$PID")"
  log "up again after $RECOVERY_S s, RSS $RSS_RECOVERED MB (peak $PEAK_RECOVERY MB); $(grep -a 'journal recovered' "$LOG" | tail -n1)"
  COMMON=(--url "$URL" --size "$SIZE" --persistent --queue-prefix backlog-q- --pid "$PID" --drain-timeout 3600)
fi

log "drain: manual acks"
DRAIN="$("$BENCH" amqp "${COMMON[@]}" --manual-ack --publishers 0 --count "$COUNT" --keep-queues --label "$PEER-drain")"
echo "$DRAIN" >&2
field() { sed -n "s/.*\"$2\":\([^,}]*\).*/\1/p" <<<"$1"; }
printf '{"peer":"%s","restart":"%s","count":%s,"size":%s,"fill_rate":%s,"rss_full_mb":%s,"recovery_s":%s,"rss_recovered_mb":%s,"rss_peak_recovery_mb":%s,"drain_rate":%s,"drain_received":%s,"drain_rss_max_mb":%s}\n' \
  "$PEER" "SIG$RESTART_SIGNAL" "$COUNT" "$SIZE" "$(field "$FILL" send_rate)" "$RSS_FULL" "$RECOVERY_S" "$RSS_RECOVERED" "$PEAK_RECOVERY" \
  "$(field "$DRAIN" recv_rate)" "$(field "$DRAIN" received)" "$(field "$DRAIN" rss_max_mb)"
