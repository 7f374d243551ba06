# shellcheck shell=bash
# Shared by run_series.sh and run_salvia.sh (sourced, not run): one measured run per call.
#
# Every run is one fresh process under `timeout`; its JSON and log go to $RESULTS_DIR, and one
# tab-separated line goes to $RESULTS_DIR/runs.tsv (the index summarize.py reads):
#   series tool n dim num_shares threshold drop_frac drop_stage rep status rc proc_s load1 json
# status: done (the harness wrote its JSON; whether the round succeeded is in the JSON),
# timeout, crashed, or skipped (...).

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
PY=${PY:-$repo/.venv/bin/python}
VENV_FLWR=${VENV_FLWR:-/tmp/venv-flwr}
BENCH_SECAGG_DIR=${BENCH_SECAGG_DIR:-$repo/../shared/bench/secagg}
TIMEOUT_S=${TIMEOUT_S:-1200}
PAUSE_S=${PAUSE_S:-1}
export FLWR_TELEMETRY_ENABLED=0

# start_results DESCRIPTION...: make $RESULTS_DIR; note the machine; write the index header.
start_results() {
  RESULTS_DIR=${RESULTS_DIR:-$here/results/$(date -u +%Y%m%dT%H%M%SZ)}
  mkdir -p "$RESULTS_DIR"
  if [ ! -f "$RESULTS_DIR/runs.tsv" ]; then
    printf 'series\ttool\tn\tdim\tnum_shares\tthreshold\tdrop_frac\tdrop_stage\trep\tstatus' \
      >"$RESULTS_DIR/runs.tsv"
    printf '\trc\tproc_s\tload1\tjson\n' >>"$RESULTS_DIR/runs.tsv"
  fi
  {
    echo "# $* started $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "phloem commit: $(git -C "$repo" rev-parse --short HEAD 2>/dev/null)" \
      "(dirty files: $(git -C "$repo" status --porcelain 2>/dev/null | grep -vc '^??'))"
    echo "nproc: $(nproc)"
    grep -m1 'model name' /proc/cpuinfo
    free -g | sed -n 1,2p
    echo "python: $("$PY" -c 'import platform, numpy; print(platform.python_version(),
      "numpy", numpy.__version__)')"
    if [ -x "$VENV_FLWR/bin/python" ]; then
      echo "flower: $("$VENV_FLWR/bin/python" -c 'import flwr; print(flwr.__version__)')"
    fi
    echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
  } >>"$RESULTS_DIR/machine.txt"
  echo "results: $RESULTS_DIR"
}

_index() {  # the fields of one runs.tsv line, in order
  local IFS=$'\t'
  echo "$*" >>"$RESULTS_DIR/runs.tsv"
}

# kt_ints N NUM_SHARES THRESHOLD: "int:K int:T" for run_phloem.py's words (n, half, secure,
# auto), as run_phloem.py resolves them (this checkout's phloem).
kt_ints() {
  PYTHONPATH="$repo/src${PYTHONPATH:+:$PYTHONPATH}" "$PY" "$here/run_phloem.py" --kt "$@"
}

# run_one SERIES TOOL N DIM NUM_SHARES THRESHOLD DROP_FRAC DROP_STAGE REP [TIMEOUT]
#   TOOL: phloem (this checkout's src/), flower, or phloem-old (the run_phloem.py and src/ of
#   the checkout in $PHLOEM_OLD). NUM_SHARES/THRESHOLD as run_phloem.py takes them, and so
#   they are indexed; the other tools are given the integers they resolve to (kt_ints).
run_one() {
  local series=$1 tool=$2 n=$3 dim=$4 k=$5 t=$6 frac=$7 stage=$8 rep=$9 limit=${10:-$TIMEOUT_S}
  local name="${series}_${tool}_n${n}_d${dim}_k${k//:/}_t${t//:/}_${stage}${frac}_r${rep}"
  local json="$name.json" load1 cmd rc t0 t1 status secs ka=$k ta=$t
  load1=$(cut -d' ' -f1 /proc/loadavg)
  case $tool in
    flower) cmd=("$VENV_FLWR/bin/python" "$BENCH_SECAGG_DIR/bench_inproc.py") ;;
    phloem-old)
      cmd=(env "PYTHONPATH=${PHLOEM_OLD:-}/src" "$PY" "${PHLOEM_OLD:-}/benchmarks/secagg/run_phloem.py")
      ;;
    *) cmd=(env "PYTHONPATH=$repo/src${PYTHONPATH:+:$PYTHONPATH}" "$PY" "$here/run_phloem.py") ;;
  esac
  if [ "$tool" != phloem ] && [[ $k != int:* || $t != int:* ]]; then
    read -r ka ta < <(kt_ints "$n" "$k" "$t")
  fi
  local exe=${cmd[0]}
  [ "$exe" = env ] && exe=${cmd[2]}
  if [ ! -x "$exe" ] || [ ! -f "${cmd[-1]}" ] || [ -z "$ta" ]; then
    _index "$series" "$tool" "$n" "$dim" "$k" "$t" "$frac" "$stage" "$rep" \
      "skipped (${cmd[*]} not found, or no int:K int:T for $k $t)" "" "" "$load1" ""
    return
  fi
  t0=$(date +%s.%N)
  timeout "$limit" "${cmd[@]}" "$n" "$dim" "$ka" "$ta" "$frac" "$stage" "$RESULTS_DIR/$json" \
    >"$RESULTS_DIR/$name.log" 2>&1
  rc=$?
  t1=$(date +%s.%N)
  secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
  if [ $rc -eq 124 ]; then
    status="timeout (${limit} s)"
  elif [ -s "$RESULTS_DIR/$json" ]; then
    status=done
  else
    status="crashed"
  fi
  _index "$series" "$tool" "$n" "$dim" "$k" "$t" "$frac" "$stage" "$rep" "$status" "$rc" \
    "$secs" "$load1" "$json"
  printf '%-70s %-10s rc=%s %6.1f s\n' "$name" "$status" "$rc" "$secs"
  sleep "$PAUSE_S"
}

# skip_one SERIES TOOL N DIM NUM_SHARES THRESHOLD DROP_FRAC DROP_STAGE REP WHY
skip_one() {
  _index "$1" "$2" "$3" "$4" "$5" "$6" "$7" "$8" "$9" "skipped (${10})" "" "" \
    "$(cut -d' ' -f1 /proc/loadavg)" ""
  echo "${1}_${2}_n${3} ... skipped (${10})"
}
