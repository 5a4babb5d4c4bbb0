#!/usr/bin/env bash
# Connection scale: start a release FerryMQ allowed SCALE_CONNECTIONS connections, open that many idle AMQP
# connections from 127.0.0.x sources (default: the hard open-file limit less 2,000, left for the descriptor
# reserve and the handshake budget; at least 15,000 wanted) while a second client publishes with confirms at
# 200/s and times each publish; print one JSON line with the connections opened, RSS per connection and the
# publish p50/p99/max during the storm.
#
#   scripts/conn-scale-amqp.sh
#   SCALE_CONNECTIONS=15000 scripts/conn-scale-amqp.sh
#
# Environment: SCALE_CONNECTIONS, FERRYMQ_PORT (5672), SCALE_ARGS (extra conn-scale-amqp.py flags).
# Needs python3 with pika and a hard open-file limit above the connection count (`ulimit -Hn`).
set -euo pipefail
cd "$(dirname "$0")/.."
NAME=conn-scale-amqp
# shellcheck source=scripts/bench-common.sh
. scripts/bench-common.sh
# shellcheck source=scripts/ferrymq-release.sh
. scripts/ferrymq-release.sh

HARD="$(ulimit -Hn)"
if [ "$HARD" = unlimited ]; then HARD=1048576; fi
SCALE_CONNECTIONS="${SCALE_CONNECTIONS:-$((HARD - 2000))}"
FERRYMQ_PORT="${FERRYMQ_PORT:-5672}"
read -r -a SCALE_EXTRA <<<"${SCALE_ARGS:-}"
if [ "$SCALE_CONNECTIONS" -lt 15000 ]; then
  log "warning: $SCALE_CONNECTIONS connections (hard open-file limit $HARD) is below the 15,000 wanted"
fi
python3 -c 'import pika' 2>/dev/null || pip install -q pika >&2

build_ferrymq
# The broker raises its soft limit to the hard one and fits max_connections under it (logged if lowered).
start_ferrymq "$FERRYMQ_PORT" --max-connections "$((SCALE_CONNECTIONS + 10))" || exit 1
grep -i "lowering\|open-file" "$DATA_DIR.log" >&2 || true
python3 scripts/conn-scale-amqp.py --port "$FERRYMQ_PORT" --pid "$FERRYMQ_PID" --count "$SCALE_CONNECTIONS" \
  "${SCALE_EXTRA[@]}"
