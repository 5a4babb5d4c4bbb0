# Shared by the interop scripts (sourced, not run): the broker build FERRYMQ_INTEROP_PROFILE asks for (release
# by default, debug for what CI has built already) and a fresh broker per run.

profile=${FERRYMQ_INTEROP_PROFILE:-release}
if [ "$profile" = release ]; then
  cargo build --release --quiet --bin ferrymq
  broker=target/release/ferrymq
else
  cargo build --quiet --bin ferrymq
  broker=target/debug/ferrymq
fi

up() { (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null; }

# with_ferrymq PORT BROKER-FLAGS... -- COMMAND...: runs COMMAND against a fresh broker (its own data dir, on
# 127.0.0.1) started with BROKER-FLAGS and waited for on PORT; stops it and returns COMMAND's status.
with_ferrymq() {
  local port="$1" data pid rc=0 flags=()
  shift
  while [ "$#" -gt 0 ] && [ "$1" != -- ]; do flags+=("$1"); shift; done
  shift
  data=$(mktemp -d)
  RUST_LOG=warn "$broker" --data-dir "$data" --bind 127.0.0.1 "${flags[@]}" >"$data.log" 2>&1 &
  pid=$!
  # Stopped on the way out too (an interrupted run must not leave it holding the port).
  trap "kill -TERM $pid 2>/dev/null || true" EXIT
  for _ in $(seq 100); do up "$port" && break; sleep 0.1; done
  if up "$port"; then
    "$@" || rc=$?
  else
    echo "interop: the broker did not come up on 127.0.0.1:$port; its log:" >&2
    cat "$data.log" >&2
    rc=1
  fi
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  trap - EXIT
  rm -rf "$data" "$data.log"
  return $rc
}
