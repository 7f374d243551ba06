#!/usr/bin/env bash
# SynthFL-1000 with a hidden layer of BENCH_HIDDEN units (0: the logistic model): where does
# training the cohort at once stop paying? Interleaved repeats of the lean plain loop
# (run_plain_fast.py, the fastest plain loop we have), phloem's vectorised backend and phloem's
# serial backend, at every width, each under the shared memwatch.py. One line per run goes to
# results/sweep.txt (the hidden width in the series header and in each RESULT line).
#
#   benchmarks/fl/synthfl1000/run_sweep.sh                       # widths 0 64 256 1024 4096
#   HIDDEN="0 256" REPEATS=1 BENCH_ROUNDS=20 benchmarks/fl/synthfl1000/run_sweep.sh
#   python benchmarks/fl/synthfl1000/summarize.py results/sweep.txt --sweep
#
# Environment as run_series.sh, plus HIDDEN (the widths), REPEATS (3), BENCH_ROUNDS (30),
# DRIVERS ("plain_fast phloem_vec phloem").
set -u
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
BENCH_FL_DIR=${BENCH_FL_DIR:-$(cd "$repo/../shared/bench/fl" && pwd)}
PY=${PY:-$repo/.venv/bin/python}
HIDDEN=${HIDDEN:-0 64 256 1024 4096}
REPEATS=${REPEATS:-3}
DRIVERS=${DRIVERS:-plain_fast phloem_vec phloem}
PAUSE_S=${PAUSE_S:-2}
export BENCH_FL_DIR BENCH_ROUNDS=${BENCH_ROUNDS:-30}

mkdir -p "$here/results"
cd "$here/results" || exit 1
PYTHONPATH=$BENCH_FL_DIR "$PY" -c 'import workload; workload.generate()'
echo "# sweep $(date -u +%Y-%m-%dT%H:%M:%SZ) rounds=$BENCH_ROUNDS repeats=$REPEATS" \
  "nproc=$(nproc) hidden=[$HIDDEN] drivers=$DRIVERS" | tee -a sweep.txt
for rep in $(seq 1 "$REPEATS"); do
  for h in $HIDDEN; do
    for name in $DRIVERS; do
      case $name in
        plain_fast) cmd=("$PY" "$here/run_plain_fast.py") ;;
        phloem_vec) cmd=("$PY" "$here/run_phloem.py" --backend vectorised) ;;
        phloem) cmd=("$PY" "$here/run_phloem.py") ;;
        *) echo "unknown driver $name" >&2; exit 2 ;;
      esac
      log="sweep_${name}_h${h}_${rep}.log"
      stats=$(BENCH_HIDDEN=$h "$PY" "$BENCH_FL_DIR/memwatch.py" "$log" "${cmd[@]}")
      echo "$name rep=$rep hidden=$h $stats | $(grep RESULT "$log" | tail -1)" | tee -a sweep.txt
      sleep "$PAUSE_S"
    done
  done
done
