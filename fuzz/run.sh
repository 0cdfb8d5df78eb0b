#!/usr/bin/env bash
# Runs every fuzz target (or those named) for SECONDS each, one after the
# other, seeded from the repository's fixtures; prints each target's exec
# count and any crash, and exits non-zero when a target crashed.
#
#   fuzz/run.sh            # 10 s each
#   fuzz/run.sh 600        # 10 minutes each, as the hardening issue asks
#   fuzz/run.sh 60 cvd smi_csv
#
# Needs cargo-fuzz (`cargo install --locked cargo-fuzz`); the libFuzzer build
# needs nightly features, enabled on a stable toolchain with RUSTC_BOOTSTRAP=1.
# The corpus grows in fuzz/corpus/TARGET (not committed); a crash leaves its
# input in fuzz/artifacts/TARGET/, to replay with
# `RUSTC_BOOTSTRAP=1 cargo fuzz run TARGET fuzz/artifacts/TARGET/crash-...`.
set -euo pipefail
cd "$(dirname "$0")"
fuzz="$PWD"
root="$(cd .. && pwd)"
seconds="${1:-10}"
shift $(( $# > 0 ? 1 : 0 ))
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || (( seconds == 0 )); then
  echo "usage: fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]" >&2
  exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "cargo-fuzz is not installed: run cargo install --locked cargo-fuzz" >&2
  exit 2
fi
export RUSTC_BOOTSTRAP=1
mapfile -t all < <(cargo fuzz list)
targets=("$@")
(( ${#targets[@]} )) || targets=("${all[@]}")

# Seeds: the fixtures and examples that exercise each parser, plus the small
# hand-written ones in fuzz/seeds/TARGET.
seed() { # TARGET: prints the seed folders and files of TARGET
  local t="$1"
  [[ -d "$fuzz/seeds/$t" ]] && echo "$fuzz/seeds/$t"
  case "$t" in
    snapshot | plugin_output | agent_answer) echo "$fuzz/gen/snapshots" ;;
    smi_csv) echo "$fuzz/gen/smi" ;;
    config_file | agents_file) echo "$fuzz/gen/$t" ;;
  esac
}
# (libFuzzer takes folders only.)
rm -rf "$fuzz/gen" && mkdir -p "$fuzz"/gen/{snapshots,smi,config_file,agents_file}
cp "$root"/examples/*.json "$fuzz/gen/snapshots/"
cp "$root/examples/site-config.toml" "$fuzz/gen/config_file/"
cp "$root/examples/agents.toml" "$fuzz/gen/agents_file/"
for dir in "$root"/tests/fixtures/smi/*/; do
  [[ -f "$dir/query-gpu.csv" ]] || continue
  name="$(basename "$dir")"
  # smi_csv's input: a byte choosing the fields (even: every field, odd: an
  # old driver's), the --query-gpu output, NUL, the --query-compute-apps output.
  for pick in 0 1; do
    { printf '%s' "$pick"; cat "$dir/query-gpu.csv"; printf '\0'
      [[ -f "$dir/compute-apps.csv" ]] && cat "$dir/compute-apps.csv"; } > "$fuzz/gen/smi/$name-$pick"
  done
done

cargo fuzz build
failed=()
printf '%-16s %12s %8s  %s\n' target execs seconds result
for t in "${targets[@]}"; do
  mkdir -p "$fuzz/corpus/$t"
  log="$fuzz/artifacts/$t.log"
  mkdir -p "$fuzz/artifacts/$t"
  mapfile -t seeds < <(seed "$t")
  start=$SECONDS
  # -seed=1: the same mutations each run, so that CI runs are repeatable.
  if cargo fuzz run "$t" "$fuzz/corpus/$t" "${seeds[@]}" -- \
      -max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
      -seed=1 -artifact_prefix="$fuzz/artifacts/$t/" >"$log" 2>&1; then
    result=ok
  else
    result="CRASH (see $log)"
    failed+=("$t")
  fi
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
  printf '%-16s %12s %8s  %s\n' "$t" "${execs:-?}" "$(( SECONDS - start ))" "$result"
done
if (( ${#failed[@]} )); then
  for t in "${failed[@]}"; do
    echo "--- $t:" >&2
    grep -E -m1 -A12 'panicked|ERROR: (libFuzzer|AddressSanitizer)' "$fuzz/artifacts/$t.log" >&2 || tail -20 "$fuzz/artifacts/$t.log" >&2
    ls "$fuzz/artifacts/$t/" >&2
  done
  echo "fuzz: ${#failed[@]} target(s) crashed: ${failed[*]}; replay an input with RUSTC_BOOTSTRAP=1 cargo fuzz run TARGET fuzz/artifacts/TARGET/crash-..." >&2
  exit 1
fi
