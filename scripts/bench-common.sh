# Shared by the bench scripts (sourced, not run): logging, port probes, and the release build.
# The sourcing script sets NAME (its log prefix) first.

log() { echo "$NAME: $*" >&2; }
up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_up() { # port seconds
  for _ in $(seq $(($2 * 10))); do up "$1" && return 0; sleep 0.1; done
  return 1
}

# Builds the broker and the bench (its own workspace crate, hence -p) in release mode; sets FERRYMQ and BENCH to
# their paths.
build_release() {
  log "building (release)"
  cargo build --release -p ferrymq -p ferrymq-bench --bin ferrymq --bin ferrymq-bench >&2
  local target_dir
  target_dir="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
  BENCH="$target_dir/release/ferrymq-bench"
  FERRYMQ="$target_dir/release/ferrymq"
}
