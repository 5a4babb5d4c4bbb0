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
DEFAULT_TARGETS="amqp_frames amqp_field_table"
# shellcheck source=scripts/fuzz-common.sh
. scripts/fuzz-common.sh
run_fuzz
