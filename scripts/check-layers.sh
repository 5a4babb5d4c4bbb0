#!/usr/bin/env bash
# The layering rules of docs/ARCHITECTURE.md ("Layers"), checked on the source text so that a violation fails CI
# rather than waiting for a review. Each rule names a directory and what its code may not name:
#   - the core (src/core) names no protocol codec, no front end, no transport, no HTTP and no config;
#   - the store (src/store) names none of those and not the core either (it knows only its own records);
#   - a front end (src/amqp, and src/mqtt, src/stomp, src/aws when they exist) names no other front end and
#     not the store: it reaches persistence only through the core's publisher and receipts.
# `bash scripts/check-layers.sh` prints each violation with its file and line and exits 1 if there is any.
set -uo pipefail
cd "$(dirname "$0")/.."

status=0
front_ends=(amqp mqtt stomp aws)

# forbid DIR PATTERN WHY: fail on any line of DIR's Rust files matching PATTERN (an extended regex).
forbid() {
  local dir=$1 pattern=$2 why=$3
  [ -d "$dir" ] || return 0
  local hits
  hits=$(grep -rnE --include='*.rs' "$pattern" "$dir" | grep -vE '^[^:]+:[0-9]+:\s*//' || true)
  if [ -n "$hits" ]; then
    echo "layering: $dir must not name $why:"
    echo "$hits" | sed 's/^/  /'
    status=1
  fi
}

protocol_crates='ferrymq_amqp_codec|ferrymq_mqtt_codec|mqttbytes|mqtt_proto|tungstenite|quick_xml'
outer_layers='crate::(amqp|mqtt|stomp|aws|transport|admin|server|config)\b|\baxum\b|\btokio_rustls\b'

forbid src/core "$protocol_crates" "a protocol crate"
forbid src/core "$outer_layers" "a front end, the transport, HTTP or the config"
forbid src/store "$protocol_crates" "a protocol crate"
forbid src/store "$outer_layers|crate::core\b" "the core, a front end, the transport, HTTP or the config"
for fe in "${front_ends[@]}"; do
  others=$(printf '%s\n' "${front_ends[@]}" | grep -vx "$fe" | paste -sd'|')
  forbid "src/$fe" "crate::store\b" "the store (use the core's Publisher / Receipt / SyncView)"
  forbid "src/$fe" "crate::($others)\b" "another front end"
done

if [ "$status" = 0 ]; then
  echo "layering: ok (core and store name no protocol, store names no core, front ends name no store)"
fi
exit "$status"
