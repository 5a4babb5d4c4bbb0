#!/usr/bin/env bash
# Fuzz the AMQP 0-9-1 codec (protocols/amqp) with cargo-fuzz: every target in fuzz/ runs in turn, sharing
# FUZZ_SECONDS (default 600: ten minutes in all), starting from and adding to the committed corpus in
# fuzz/corpus/<target>. A crash stops the run and leaves its input in fuzz/artifacts/<target>/; turn each
# into a regression test in protocols/amqp/tests/fuzz_regressions.rs before fixing it.
#
#   scripts/fuzz-amqp.sh                   # ten minutes over all targets
#   FUZZ_SECONDS=60 scripts/fuzz-amqp.sh   # a quick pass
#   TARGETS=amqp_frames scripts/fuzz-amqp.sh
#   MINIMIZE=1 scripts/fuzz-amqp.sh        # afterwards, shrink each corpus to the inputs that add coverage
#
# Needs a nightly toolchain (libFuzzer's instrumentation) and cargo-fuzz (`cargo install cargo-fuzz`). The
# fuzz crate is outside the root workspace, so neither CI nor `cargo build` compiles it.
set -euo pipefail
cd "$(dirname "$0")/.."
NAME=fuzz-amqp
log() { echo "$NAME: $*" >&2; }

FUZZ_SECONDS="${FUZZ_SECONDS:-600}"
TOOLCHAIN="${TOOLCHAIN:-nightly}"
read -r -a targets <<< "${TARGETS:-$(cd fuzz && cargo +"$TOOLCHAIN" fuzz list | tr '\n' ' ')}"
per_target=$((FUZZ_SECONDS / ${#targets[@]}))

for target in "${targets[@]}"; do
  log "$target: ${per_target}s from fuzz/corpus/$target"
  mkdir -p "fuzz/corpus/$target"
  (cd fuzz && cargo +"$TOOLCHAIN" fuzz run "$target" "corpus/$target" -- \
    -max_total_time="$per_target" -max_len=65536 -print_final_stats=1)
done

if [[ "${MINIMIZE:-0}" == 1 ]]; then
  for target in "${targets[@]}"; do
    log "$target: minimizing the corpus"
    (cd fuzz && cargo +"$TOOLCHAIN" fuzz cmin "$target" "corpus/$target")
  done
fi
log "no crash in ${FUZZ_SECONDS}s over: ${targets[*]}"
