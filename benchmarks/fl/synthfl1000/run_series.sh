#!/usr/bin/env bash
# SynthFL-1000: interleaved repeats of the plain PyTorch loop (the shared one and our lean one),
# phloem (serial, 2 processes, vectorised), and pfl / Flower when their virtualenvs exist, each
# under the shared memwatch.py.
# Appends one line per run to results/results.txt; logs go to results/<driver>_<rep>.log.
#
#   benchmarks/fl/synthfl1000/run_series.sh              # 3 repeats, BENCH_ROUNDS=200
#   BENCH_ROUNDS=50 REPEATS=1 DRIVERS="plain phloem" benchmarks/fl/synthfl1000/run_series.sh
#
# Environment: BENCH_FL_DIR (shared workload, default <repo>/../shared/bench/fl), PY (python with
# phloem installed, default <repo>/.venv/bin/python), VENV_PFL and VENV_FLWR (default
# /tmp/venv-pfl, /tmp/venv-flwr: torch==2.13.0 plus pfl / 'flwr[simulation]'), REPEATS (3),
# DRIVERS (all), PAUSE_S (8 s between runs, so Ray actors and torchrun workers can exit).
set -u
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
BENCH_FL_DIR=${BENCH_FL_DIR:-$(cd "$repo/../shared/bench/fl" && pwd)}
PY=${PY:-$repo/.venv/bin/python}
VENV_PFL=${VENV_PFL:-/tmp/venv-pfl}
VENV_FLWR=${VENV_FLWR:-/tmp/venv-flwr}
REPEATS=${REPEATS:-3}
DRIVERS=${DRIVERS:-plain plain_fast phloem phloem_vec phloem2 pfl pfl2 flower}
PAUSE_S=${PAUSE_S:-8}
export BENCH_FL_DIR BENCH_ROUNDS=${BENCH_ROUNDS:-200} FLWR_TELEMETRY_ENABLED=0

mkdir -p "$here/results"
cd "$here/results" || exit 1
# The workload caches its data here; build it once so no driver's start-up pays for it.
PYTHONPATH=$BENCH_FL_DIR "$PY" -c 'import workload; workload.generate()'
echo "# series $(date -u +%Y-%m-%dT%H:%M:%SZ) rounds=$BENCH_ROUNDS repeats=$REPEATS" \
  "nproc=$(nproc) hidden=${BENCH_HIDDEN:-0} drivers=$DRIVERS" | tee -a results.txt

for rep in $(seq 1 "$REPEATS"); do
  for name in $DRIVERS; do
    case $name in
      plain) cmd=("$PY" "$BENCH_FL_DIR/run_plain.py") ;;
      plain_fast) cmd=("$PY" "$here/run_plain_fast.py") ;;
      phloem) cmd=("$PY" "$here/run_phloem.py") ;;
      phloem_vec) cmd=("$PY" "$here/run_phloem.py" --backend vectorised) ;;
      phloem2) cmd=("$PY" "$here/run_phloem.py" --workers 2) ;;
      pfl) cmd=("$VENV_PFL/bin/python" "$BENCH_FL_DIR/run_pfl.py") ;;
      pfl2) cmd=("$VENV_PFL/bin/torchrun" --standalone --nnodes=1 --nproc_per_node=2
                 "$BENCH_FL_DIR/run_pfl.py") ;;
      flower) cmd=("$VENV_FLWR/bin/python" "$BENCH_FL_DIR/run_flower.py" 1) ;;
      *) echo "unknown driver $name" >&2; exit 2 ;;
    esac
    if [ ! -x "${cmd[0]}" ]; then
      echo "$name rep=$rep skipped: ${cmd[0]} not found" | tee -a results.txt
      continue
    fi
    log="${name}_${rep}.log"
    stats=$("$PY" "$BENCH_FL_DIR/memwatch.py" "$log" "${cmd[@]}")
    echo "$name rep=$rep $stats | $(grep RESULT "$log" | tail -1)" | tee -a results.txt
    sleep "$PAUSE_S"
  done
done
