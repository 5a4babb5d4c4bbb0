#!/usr/bin/env bash
# MQTT connection scale: as many idle MQTT connections as the hard open-file limit allows (less 2,000; at least
# 15,000 wanted), from 127.0.0.x source addresses, against FerryMQ and Mosquitto; one JSON line each with the
# connections held, connections/s and the broker's RSS per connection (target: <= 10 KiB, so that 100,000 fit
# in 1 GiB). It is bench-mqtt.sh's `idle` scenario on its own; the same environment applies
# (IDLE_CONNECTIONS, FERRYMQ_PORT, MOSQUITTO_PORT, FERRYMQ and BENCH).
#
#   scripts/conn-scale-mqtt.sh
#   IDLE_CONNECTIONS=15000 scripts/conn-scale-mqtt.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SCENARIOS=idle exec bash scripts/bench-mqtt.sh
