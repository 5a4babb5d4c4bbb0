# Shared by the fuzz scripts (sourced, not run): run cargo-fuzz targets in turn for FUZZ_SECONDS in all, from
# and into the committed corpus in fuzz/corpus/<target>, then optionally minimize each corpus. The sourcing
# script sets NAME (its log prefix) and DEFAULT_TARGETS, then calls run_fuzz.

log() { echo "$NAME: $*" >&2; }

run_fuzz() {
  local seconds="${FUZZ_SECONDS:-600}" toolchain="${TOOLCHAIN:-nightly}" target
  local targets
  read -r -a targets <<< "${TARGETS:-$DEFAULT_TARGETS}"
  local per_target=$((seconds / ${#targets[@]}))
  for target in "${targets[@]}"; do
    log "$target: ${per_target}s from fuzz/corpus/$target"
    mkdir -p "fuzz/corpus/$target"
    (cd fuzz && cargo +"$toolchain" fuzz run "$target" "corpus/$target" -- \
      -max_total_time="$per_target" -max_len=65536 -print_final_stats=1)
  done
  if [[ "${MINIMIZE:-0}" == 1 ]]; then
    for target in "${targets[@]}"; do
      log "$target: minimizing the corpus"
      (cd fuzz && cargo +"$toolchain" fuzz cmin "$target" "corpus/$target")
    done
  fi
  log "no crash in ${seconds}s over: ${targets[*]}"
}
