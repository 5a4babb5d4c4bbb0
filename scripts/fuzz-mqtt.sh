#!/usr/bin/env bash
# Fuzz the MQTT codec (protocols/mqtt) with cargo-fuzz: the mqtt_* targets in fuzz/ (packets of 3.1, 3.1.1 and
# 5.0 with a round-trip check; topic names and filters) run in turn, sharing FUZZ_SECONDS (default 600: ten
# minutes in all), starting from and adding to the committed corpus in fuzz/corpus/<target>. A crash stops the
# run and leaves its input in fuzz/artifacts/<target>/; turn each into a regression test in the codec's tests
# before fixing it. Not run by CI.
#
#   scripts/fuzz-mqtt.sh                   # ten minutes over both targets
#   FUZZ_SECONDS=60 scripts/fuzz-mqtt.sh   # a quick pass
#   TARGETS=mqtt_packets scripts/fuzz-mqtt.sh
#   MINIMIZE=1 scripts/fuzz-mqtt.sh        # afterwards, shrink each corpus to the inputs that add coverage
#
# Needs a nightly toolchain (libFuzzer's instrumentation) and cargo-fuzz (`cargo install cargo-fuzz`).
set -euo pipefail
cd "$(dirname "$0")/.."
NAME=fuzz-mqtt
DEFAULT_TARGETS="mqtt_packets mqtt_topics"
# shellcheck source=scripts/fuzz-common.sh
. scripts/fuzz-common.sh
run_fuzz
