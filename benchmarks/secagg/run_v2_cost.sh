#!/usr/bin/env bash
# What wire format v2 (client policy, share commitments, ...) costs: phloem only, the same
# configurations with an older checkout of phloem (PHLOEM_OLD, e.g. commit 5a04073, the last
# before v2: `git worktree add /tmp/old5a 5a04073`) and with this one, alternating.
#
#   PHLOEM_OLD=/tmp/old5a benchmarks/secagg/run_v2_cost.sh      # ~3 min
#   .venv/bin/python benchmarks/secagg/summarize.py benchmarks/secagg/results/<stamp>
#
# Configurations: n in V2_NS (100 200) at DIM (100,000) entries, the series' lead SecAgg+
# setting (`secure secure`: (k, t) that meet the design targets, 33/22 and 61/41; both
# checkouts get the same integers, resolved by this checkout's run_phloem.py; the old clients
# have no policy), dropout in DROPS ("0 0.1") at the masked input, REPEATS (3) times; within a
# repeat the two checkouts run back to back, old first in odd repeats and new first in even.
#
# Environment: as run_series.sh (PY, RESULTS_DIR, REPEATS or R, DIM, DROPS, TIMEOUT_S,
# PAUSE_S), plus PHLOEM_OLD and V2_NS.
set -u
source "$(cd "$(dirname "$0")" && pwd)/lib.sh"
REPEATS=${REPEATS:-${R:-3}}
V2_NS=${V2_NS:-100 200}
DIM=${DIM:-100000}
DROPS=${DROPS:-0 0.1}
PHLOEM_OLD=${PHLOEM_OLD:-/tmp/old5a}
if [ ! -f "$PHLOEM_OLD/benchmarks/secagg/run_phloem.py" ]; then
  echo "PHLOEM_OLD=$PHLOEM_OLD: no benchmarks/secagg/run_phloem.py there" >&2
  exit 2
fi

start_results "run_v2_cost.sh repeats=$REPEATS ns='$V2_NS' dim=$DIM drops='$DROPS'"
echo "phloem-old: $PHLOEM_OLD at commit $(git -C "$PHLOEM_OLD" rev-parse --short HEAD)" \
  "(dirty files: $(git -C "$PHLOEM_OLD" status --porcelain | grep -vc '^??'))" \
  >>"$RESULTS_DIR/machine.txt"

for rep in $(seq 1 "$REPEATS"); do
  order="phloem-old phloem"
  [ $((rep % 2)) = 0 ] && order="phloem phloem-old"
  for n in $V2_NS; do
    for frac in $DROPS; do
      stage=collect_masked_vectors
      [ "$frac" = 0 ] && stage=none
      for tool in $order; do
        run_one v2cost "$tool" "$n" "$DIM" secure secure "$frac" $stage "$rep"
      done
    done
  done
done
echo "# run_v2_cost.sh finished $(date -u +%Y-%m-%dT%H:%M:%SZ)" >>"$RESULTS_DIR/machine.txt"
echo "summary: $PY $here/summarize.py $RESULTS_DIR"
