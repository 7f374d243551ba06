#!/usr/bin/env bash
# Every accuracy figure of docs/iot.md, on the shared doh_iot captures.
#   PHLOEM_DATA_DIR=../shared/data benchmarks/iot/run_eval.sh [OUT]
# OUT defaults to benchmarks/iot/results/<today>/eval. Each run writes <name>.txt (the table as
# printed), <name>.json (the scores, split stated inside) and, for the temporal and experiment
# protocols, report_<name>/ (report.md, curves.png, confusion matrices). About 30 min on a
# 2-core VM, most of it the MLP and the leave-one-device-out runs.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${PHLOEM_DATA_DIR:?set PHLOEM_DATA_DIR to the shared data folder}"
OUT=${1:-benchmarks/iot/results/$(date -u +%Y-%m-%d)/eval}
mkdir -p "$OUT"
P=${PHLOEM:-.venv/bin/phloem}
export COLUMNS=200  # rich tables at full width in the .txt files

run() {  # name, then the arguments of `phloem iot evaluate`
  local name=$1; shift
  echo "== $name: phloem iot evaluate $*"
  "$P" iot evaluate "$@" --json "$OUT/$name.json" > "$OUT/$name.txt"
}

# temporal split of the first run: train 2023-10-19..25, test 10-26..28 (22 devices)
run temporal_full --protocol temporal --report "$OUT/report_temporal_full"
run temporal_sld --protocol temporal --features sld --report "$OUT/report_temporal_sld"
# what a resolver log (dnsmasq, unbound, Pi-hole) carries: names, types, counts, order
run temporal_log --protocol temporal --features log
run temporal_full_mlp --protocol temporal --model mlp --windows 0,2,60
run temporal_sld_mlp --protocol temporal --model mlp --features sld --windows 0,2,60
# a month later: the same 22 devices on 2023-11-22 (the 12 new devices are scored below)
run nov22_full --protocol temporal --test-from 2023-11-22 --test-until 2023-11-22 --windows 0,2,60
run nov22_sld --protocol temporal --features sld --test-from 2023-11-22 --test-until 2023-11-22 --windows 0,2,60
# random split by experiment, and the paper's random rows
run experiment_full --protocol experiment --report "$OUT/report_experiment_full"
run paper --protocol paper --windows 2,60
# any-time answers, replayed query by query (confidence 0.9)
run anytime_full --protocol anytime --windows 2,10,60
# unknown devices: leave one device out (10-26..28), then the 12 devices new on 2023-11-22
run unknown_full --protocol unknown --windows 2,60
run unknown_log --protocol unknown --features log --windows 2,60
run unknown_nov22 --protocol unknown --test-from 2023-11-22 --test-until 2023-11-22 --windows 2,60
echo "written to $OUT"
