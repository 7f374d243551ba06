#!/usr/bin/env bash
# The experiment shape of Salvia (Li, Gusmão, Beutel, Lane; DistributedML '21), phloem only
# (Flower's full SecAgg at these sizes takes hours): client and server time as the number of
# clients and the vector length grow, for SecAgg+ with a fixed and a derived graph and for
# full SecAgg, without and with dropouts.
#
#   benchmarks/secagg/run_salvia.sh                      # 1 repeat, ~9 min (see README.md)
#   SALVIA_NS="100 200" SALVIA_DIMS="100000 200000" benchmarks/secagg/run_salvia.sh   # smoke
#   .venv/bin/python benchmarks/secagg/summarize.py benchmarks/secagg/results/<stamp>
#
# Sweeps: n in SALVIA_NS (100..500 step 100) at 100,000 entries, and the vector length in
# SALVIA_DIMS (100,000..500,000 step 100,000) at n = 100 (the point n=100, 100,000 entries is
# run once and belongs to both). Each point: SecAgg+ with (k, t) chosen by phloem
# (SecAggSettings(num_shares=None): tolerate 10% dropout and 10% corrupt clients, sigma=40,
# eta=30), SecAgg k=n with the smallest threshold that meets the same targets, and SecAgg+
# k=11 t=6 (Flower's customary setting; it misses the security target, so run_phloem.py runs
# it with the permissive ClientPolicy() and marks it); dropout in SALVIA_DROPS (0 and 5%) at
# the masked-input stage. The protocols of one point run back to back.
#
# Environment: as run_series.sh (PY, RESULTS_DIR, REPEATS or R, TIMEOUT_S, PAUSE_S), plus
# SALVIA_NS, SALVIA_DIMS, SALVIA_DROPS. RESULTS_DIR may be the folder of a run_series.sh run:
# both write to the same runs.tsv and summarize.py reports each part.
set -u
source "$(cd "$(dirname "$0")" && pwd)/lib.sh"
REPEATS=${REPEATS:-${R:-1}}
SALVIA_NS=${SALVIA_NS:-100 200 300 400 500}
SALVIA_DIMS=${SALVIA_DIMS:-100000 200000 300000 400000 500000}
SALVIA_DROPS=${SALVIA_DROPS:-0 0.05}
N_AT=100
DIM_AT=100000

start_results "run_salvia.sh repeats=$REPEATS ns='$SALVIA_NS' dims='$SALVIA_DIMS'" \
  "drops='$SALVIA_DROPS'"

points=()
for n in $SALVIA_NS; do points+=("$n $DIM_AT"); done
for dim in $SALVIA_DIMS; do
  [ "$dim" = $DIM_AT ] && [[ " $SALVIA_NS " == *" $N_AT "* ]] && continue
  points+=("$N_AT $dim")
done

for rep in $(seq 1 "$REPEATS"); do
  for point in "${points[@]}"; do
    read -r n dim <<<"$point"
    for frac in $SALVIA_DROPS; do
      stage=collect_masked_vectors
      [ "$frac" = 0 ] && stage=none
      run_one salvia phloem "$n" "$dim" auto auto "$frac" $stage "$rep"
      run_one salvia phloem "$n" "$dim" n secure "$frac" $stage "$rep"
      run_one salvia phloem "$n" "$dim" int:11 int:6 "$frac" $stage "$rep"
    done
  done
done
echo "# run_salvia.sh finished $(date -u +%Y-%m-%dT%H:%M:%SZ)" >>"$RESULTS_DIR/machine.txt"
echo "summary: $PY $here/summarize.py $RESULTS_DIR"
