# Shared by the soak and connection-scale scripts (sourced, not run): build the release broker and run one
# FerryMQ process that is stopped on exit. The sourcing script sets NAME and sources bench-common.sh first.

# Builds the broker in release mode; sets FERRYMQ to its path.
build_ferrymq() {
  log "building (release)"
  cargo build --release --bin ferrymq >&2
  FERRYMQ="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/release/ferrymq"
}

# The FerryMQ process start_ferrymq started, stopped on exit (and only that one).
FERRYMQ_PID=""
DATA_DIR="$(mktemp -d)"
stop_ferrymq() {
  if [ -n "$FERRYMQ_PID" ]; then kill "$FERRYMQ_PID" 2>/dev/null || true; wait "$FERRYMQ_PID" 2>/dev/null || true; fi
  FERRYMQ_PID=""
}
cleanup_ferrymq() {
  stop_ferrymq
  rm -rf "$DATA_DIR" "$DATA_DIR.log" "$DATA_DIR.toml"
}
trap cleanup_ferrymq EXIT

# start_ferrymq PORT [flags...]: start on 127.0.0.1:PORT with data in DATA_DIR; false when it does not come up.
start_ferrymq() {
  local port="$1"
  shift
  if up "$port"; then
    log "something already listens on 127.0.0.1:$port: not starting FerryMQ there"
    return 1
  fi
  "$FERRYMQ" --data-dir "$DATA_DIR" --bind 127.0.0.1 --amqp-port "$port" --http-port 0 --mqtt-port 0 --mqtt-ws-port 0 --aws-port 0 "$@" >"$DATA_DIR.log" 2>&1 &
  FERRYMQ_PID=$!
  if ! wait_up "$port" 30; then
    log "FerryMQ did not come up:"
    tail -n 20 "$DATA_DIR.log" >&2 || true
    stop_ferrymq
    return 1
  fi
}
