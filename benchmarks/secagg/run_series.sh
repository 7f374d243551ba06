#!/usr/bin/env bash
# Flower's SecAgg+ workflow against phloem's SecAgg/SecAgg+ on the shared workload: every
# configuration runs Flower's in-process harness and then phloem's, back to back, in one series.
#
#   benchmarks/secagg/run_series.sh                      # 1 repeat, ~12 min (see README.md)
#   REPEATS=3 benchmarks/secagg/run_series.sh
#   NS="10 50" benchmarks/secagg/run_series.sh           # a smoke run
#   .venv/bin/python benchmarks/secagg/summarize.py benchmarks/secagg/results/<stamp>
#
# Configurations (DIM entries, 100,000 by default), n in NS (10 50 100 200), dropout {0, 10%}
# at the masked-input stage (Flower: collect_masked_vectors), REPEATS times (env R also read):
#   - `secure secure`: SecAgg+ with the (k, t) that meet phloem's design targets (10% dropout,
#     10% corrupt clients, sigma 40, eta 30): choose_parameters(n), rounded up to an odd k
#     where Flower needs one (run_phloem.py's secure_plus_kt); both tools get the same integers;
#   - `n secure`: SecAgg, the complete graph, with the smallest threshold that meets the
#     targets (choose_parameters(n, complete=True); n/2+1 does not with 10% corrupt clients);
#   - `int:11 int:6`: Flower's customary SecAgg+ k=11 t=6, kept to compare with Flower; it
#     misses the security target for n >= 50, so phloem's clients run it with the permissive
#     ClientPolicy() and its JSON says "meets_target": false;
# then once, n=50 SecAgg+ (secure), 10% dropout at setup and at share_keys (Flower's round
# fails there; phloem's does not).
# Flower's full SecAgg takes ~15-20 min a run at n=200 (n=50: ~30 s, n=100: ~3 min here),
# so it runs only for n <= FLOWER_FULL_MAX_N (default 100; set 200 to include it); a larger n
# is indexed as skipped.
#
# Environment: PY (phloem's python, default <repo>/.venv/bin/python; run_phloem.py gets this
# checkout's src/ first on PYTHONPATH), VENV_FLWR (/tmp/venv-flwr, Flower 1.42),
# BENCH_SECAGG_DIR (<repo>/../shared/bench/secagg), RESULTS_DIR (default results/<UTC stamp>),
# REPEATS (1), REP_FROM (1: the first repeat's number, to add repeats to a RESULTS_DIR), NS,
# DIM, DROPS ("0 0.1"), PROTOS ("plus full k11"), FLOWER_FULL_MAX_N (100),
# TIMEOUT_S (1200 a run), TIMEOUT_LONG_S (3600, Flower's full SecAgg above n=100), PAUSE_S (1),
# TOOLS ("flower phloem": the order within each configuration), ONCE_STAGES ("setup
# share_keys"; empty to leave out the runs with dropout before the masked input).
set -u
source "$(cd "$(dirname "$0")" && pwd)/lib.sh"
REPEATS=${REPEATS:-${R:-1}}
REP_FROM=${REP_FROM:-1}
NS=${NS:-10 50 100 200}
DIM=${DIM:-100000}
DROPS=${DROPS:-0 0.1}
FLOWER_FULL_MAX_N=${FLOWER_FULL_MAX_N:-100}
TIMEOUT_LONG_S=${TIMEOUT_LONG_S:-3600}
TOOLS=${TOOLS:-flower phloem}
PROTOS=${PROTOS:-plus full k11}
ONCE_STAGES=${ONCE_STAGES-setup share_keys}

start_results "run_series.sh repeats=$REPEATS ns='$NS' dim=$DIM drops='$DROPS'" \
  "flower_full_max_n=$FLOWER_FULL_MAX_N"

for rep in $(seq "$REP_FROM" "$REPEATS"); do
  for n in $NS; do
    for proto in $PROTOS; do
      case $proto in
        plus) k=secure t=secure ;;
        full) k=n t=secure ;;
        k11) k=int:11 t=int:6 ;;
        *) echo "unknown protocol $proto in PROTOS (plus full k11)" >&2; exit 2 ;;
      esac
      for frac in $DROPS; do
        stage=collect_masked_vectors
        [ "$frac" = 0 ] && stage=none
        for tool in $TOOLS; do
          limit=$TIMEOUT_S
          if [ "$tool" = flower ] && [ $proto = full ] && [ "$n" -gt 100 ]; then
            if [ "$n" -gt "$FLOWER_FULL_MAX_N" ]; then
              skip_one series "$tool" "$n" "$DIM" $k $t "$frac" $stage "$rep" \
                "est. time ~$((n * n / 2000)) min; FLOWER_FULL_MAX_N=$n runs it"
              continue
            fi
            limit=$TIMEOUT_LONG_S
          fi
          run_one series "$tool" "$n" "$DIM" $k $t "$frac" $stage "$rep" "$limit"
        done
      done
    done
  done
done

# Dropout before the masked input (once): Flower's round fails, phloem's completes.
for stage in $ONCE_STAGES; do
  for tool in $TOOLS; do
    run_one series "$tool" 50 "$DIM" secure secure 0.1 $stage 1
  done
done
echo "# run_series.sh finished $(date -u +%Y-%m-%dT%H:%M:%SZ)" >>"$RESULTS_DIR/machine.txt"
echo "summary: $PY $here/summarize.py $RESULTS_DIR"
