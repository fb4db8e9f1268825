#!/usr/bin/env bash
# GPU check of hypersearch's CUDA paths, in one run on the device machine (one H200).
#
#   bash benchmarks/gpu_check/gpu_check.sh [-- EXTRA COMMAND...]
#
# Steps (each time-limited; a failed step is recorded and the next one runs):
#   0 wheels   install .whl/*.whl into /tmp/site (Python 3.12 only), PYTHONPATH=/tmp/site:REPO
#   a env      nvidia-smi, torch/CUDA, imports and versions
#   b tests    the CUDA-relevant test files on the GPU (in the background, alongside c, d1, e1)
#   c amp      `hypersearch run` of the packaged default experiment, population off and on, and
#              amp_check.py (bf16 / fp16 + loss scalers / fp32, single vs population)
#   d1 oom     a python objective allocating 200 GiB through `hypersearch run`: FAIL reason oom,
#              the worker recycled, the run goes on
#   e1 probe   the population memory probe on the whole GPU
#   d2 ladder  a real OOM of the built-in trainer (ballast.py holds all but a calibrated amount of
#              GPU memory): the batch ladder halves the batch until it fits
#   e2 probe   the probe again with the ballast held: its decision must follow free memory
#   f bench    benchmarks/throughput.py --model cnn --members 16 64 --epochs 2 on cuda
# EXTRA (optional, after `--`) runs from the start, in the background, niced, limited to
# EXTRA_TIMEOUT s (default 420), output in $OUT/extra.log; at the end benchmarks/results/quality
# is packed into $OUT/quality_cache.tar.gz if it exists.
#
# Environment: OUT (default /tmp/gpu_check_out), PYTHON (default python3), GPU_BUDGET (seconds
# for all GPU steps, default 450), STEPS (default "a b c d1 e1 d2 f": a subset for a rerun),
# EXTRA_TIMEOUT, TESTS (test files/args for step b),
# TESTS_LIMIT (240), AMP_TRIALS (4), POP_TRIALS (8), BENCH_ARGS, LADDER_WIDTH (4096),
# LADDER_LEAVE_MIB (default: calibrated).
# Files back in $OUT (at most 8): gpu_check.log, summary.txt, pytest.log, runs.tar.gz,
# extra.log, quality_cache.tar.gz.
set -u
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$HERE/../.." || exit 1
REPO=$PWD
export REPO
export PYTHON=${PYTHON:-python3}
export OUT=${OUT:-/tmp/gpu_check_out}
export WORK=${WORK:-/tmp/gpu_check_work}
export PYTHONUNBUFFERED=1
export MPLBACKEND=Agg
mkdir -p "$OUT"
rm -rf "$WORK"
mkdir -p "$WORK"
LOG=$OUT/gpu_check.log
SUMMARY=$OUT/summary.txt
: >"$LOG"
: >"$SUMMARY"
START=$(date +%s)
GPU_BUDGET=${GPU_BUDGET:-450}
DEADLINE=$((START + GPU_BUDGET))
EXTRA_TIMEOUT=${EXTRA_TIMEOUT:-420}
if [ "${1:-}" = "--" ]; then shift; fi
EXTRA=("$@")

STEPS=" ${STEPS:-a b c d1 e1 d2 f} "
wanted() { [[ "$STEPS" == *" $1 "* ]]; }
log() { echo "$*" | tee -a "$LOG"; }
elapsed() { echo $(($(date +%s) - START)); }
note() { echo "$*" >>"$SUMMARY"; }

# step NAME LIMIT FUNCTION: run FUNCTION in a child bash under `timeout`, within the deadline.
step() {
    local name=$1 limit=$2 fn=$3
    if ! wanted "${name%%-*}"; then
        note "$(printf '%-16s' "$name") not selected (STEPS)"
        return 0
    fi
    local left=$((DEADLINE - $(date +%s) - 10))
    if [ "$left" -lt 15 ]; then
        log "===== [$name] SKIPPED: GPU_BUDGET spent"
        note "$(printf '%-16s' "$name") SKIPPED (budget spent)"
        return 99
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    local t0
    t0=$(date +%s)
    log ""
    log "===== [$name] $fn (limit ${limit}s, at +$(elapsed)s)"
    timeout -k 10 "$limit" bash -c "$(declare -f "$fn"); $fn" >>"$LOG" 2>&1
    local rc=$?
    local dt=$(($(date +%s) - t0)) verdict=ok
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        verdict="TIMED OUT"
    elif [ "$rc" -ne 0 ]; then
        verdict="FAILED rc=$rc"
    fi
    log "----- [$name] $verdict in ${dt}s"
    note "$(printf '%-16s' "$name") $verdict (${dt}s)"
    return "$rc"
}

# ---------------------------------------------------------------- step bodies (child shells)
env_check() {
    nvidia-smi || echo "nvidia-smi: not available"
    nvidia-smi --query-gpu=index,name,memory.total,memory.used,driver_version --format=csv || true
    echo "nproc $(nproc); $(free -g | awk '/Mem/ {print "memory " $2 " GiB"}')"
    "$PYTHON" - <<'EOF'
import importlib, sys
print("python", sys.version.split()[0], sys.executable)
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("device", torch.cuda.get_device_name(0), f"{p.total_memory / 2**30:.1f} GiB",
          "sm", f"{p.major}.{p.minor}", "bf16", torch.cuda.is_bf16_supported())
import hypersearch, optuna, deap, pyswarms  # the brief's import check
for name in ("hypersearch", "optuna", "deap", "pyswarms", "pydantic", "sqlalchemy", "alembic",
             "moocore", "sklearn", "numpy", "scipy", "pandas", "matplotlib", "yaml", "rich",
             "click", "tabulate", "PIL", "pytest", "hypothesis", "narwhals", "typing_extensions"):
    try:
        m = importlib.import_module(name)
        print(f"  {name:18s} {str(getattr(m, '__version__', '?')):12s} {m.__file__}")
    except Exception as exc:
        print(f"  {name:18s} IMPORT FAILED: {type(exc).__name__}: {exc}")
import pytest_timeout  # the suite's per-test timeout
print("torch.cuda ok" if torch.cuda.is_available() else "NO CUDA")
EOF
}

tests_bg() {
    # Tier 1: the trainer, population and dispatch tests (CUDA paths, OOM ladder, pinning).
    # Two long CPU-only tests deselected; Ray is not on the image (its tests skip themselves).
    local files=${TESTS:-tests/test_trainer.py tests/test_population.py tests/test_population_dispatch.py tests/test_population_reports.py tests/test_early_stopping.py tests/test_cli_run.py}
    local xdist=""
    "$PYTHON" -c "import xdist" 2>/dev/null && xdist="-n 4"
    # shellcheck disable=SC2086
    "$PYTHON" -m pytest -q -p no:cacheprovider -rfEs --timeout=150 --maxfail=15 $xdist \
        -k "not learns_digits_and_reproduces and not onecycle_and_cosine" $files
}

amp_runs() {
    # The packaged default experiment (searchspaces/default.yaml: cnn on digits, amp on).
    local rc=0 code
    "$PYTHON" -m hypersearch run --algo random --trials "${AMP_TRIALS:-4}" --population off \
        --out "$WORK/amp_single"
    code=$?
    echo "exit code: $code"
    [ "$code" -eq 0 ] || rc=1
    "$PYTHON" "$HERE/show_run.py" "$WORK/amp_single" cuda || rc=1
    "$PYTHON" -m hypersearch run --algo random --trials "${POP_TRIALS:-8}" --population on \
        --out "$WORK/amp_population"
    code=$?
    echo "exit code: $code"
    [ "$code" -eq 0 ] || rc=1
    "$PYTHON" "$HERE/show_run.py" "$WORK/amp_population" cuda population || rc=1
    return "$rc"
}

amp_direct() {
    "$PYTHON" "$HERE/amp_check.py" bf16 fp16 fp32
}

oom_python() {
    cat >"$WORK/oom.yaml" <<EOF
name: real-oom
seed: 0
objective: {python: {function: 'oom_objective:f', path: ['$HERE']}}
objectives: {loss: minimize}
params: {x: {type: float, low: -1.0, high: 1.0}}
budget: {trials: 4, trial_timeout: 120}
EOF
    "$PYTHON" -m hypersearch run "$WORK/oom.yaml" --algo random --out "$WORK/oom"
    local code=$?
    echo "exit code: $code (0: the run went on past the OOM trials; 1: every trial failed)"
    "$PYTHON" "$HERE/show_run.py" "$WORK/oom" cuda oom && [ "$code" -eq 0 ]
}

probe_full() {
    "$PYTHON" "$HERE/probe_check.py" whole-gpu 1024
}

ladder() {
    local width=${LADDER_WIDTH:-4096} leave
    "$PYTHON" "$HERE/ladder_calibrate.py" "$width" | tee "$WORK/calibration.txt"
    leave=${LADDER_LEAVE_MIB:-$(awk '/^LEAVE_MIB/ {print $2}' "$WORK/calibration.txt")}
    if [ -z "$leave" ]; then
        echo "calibration failed: no LEAVE_MIB"
        return 1
    fi
    rm -f "$WORK/ballast.ready" "$WORK/ballast.stop"
    "$PYTHON" "$HERE/ballast.py" "$leave" "$WORK/ballast.ready" "$WORK/ballast.stop" 200 &
    local ballast=$!
    for _ in $(seq 1 300); do
        [ -s "$WORK/ballast.ready" ] && break
        kill -0 "$ballast" 2>/dev/null || break
        sleep 0.2
    done
    if [ ! -s "$WORK/ballast.ready" ]; then
        echo "ballast did not start"
        kill "$ballast" 2>/dev/null
        return 1
    fi
    nvidia-smi --query-gpu=memory.total,memory.used,memory.free --format=csv || true
    cat >"$WORK/ladder.yaml" <<EOF
name: oom-ladder
seed: 0
objective:
  trainer: {dataset: digits, model: cnn, width: $width, depth: 1, epochs: 1, batch_size: 1024,
            min_batch_size: 16, schedule: constant}
objectives: {val_loss: minimize}
params:
  lr: {type: float, low: 1.0e-3, high: 3.0e-2, log: true}
budget: {trials: 2, trial_timeout: 120}
EOF
    "$PYTHON" -m hypersearch run "$WORK/ladder.yaml" --algo random --population off \
        --out "$WORK/ladder"
    echo "exit code: $? (0: a batch fitted; 1: every batch down to the floor ran out of memory)"
    local rc=0
    "$PYTHON" "$HERE/show_run.py" "$WORK/ladder" cuda ladder || rc=1
    echo "--- e2: the population memory probe with only ${leave} MiB left free (ballast held)"
    "$PYTHON" "$HERE/probe_check.py" ballast 1024 || rc=1
    touch "$WORK/ballast.stop"
    wait "$ballast"
    return "$rc"
}

throughput() {
    # GPU utilization sampled once a second alongside (nvidia-smi dmon: sm% and memory%)
    local dmon="" rc
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi dmon -s u -d 1 >"$WORK/dmon.txt" 2>&1 &
        dmon=$!
    fi
    # shellcheck disable=SC2086
    "$PYTHON" "$REPO/benchmarks/throughput.py" --model cnn --device cuda \
        ${BENCH_ARGS:---members 16 64 --epochs 2 --repeats 3}
    rc=$?
    if [ -n "$dmon" ]; then
        kill "$dmon" 2>/dev/null
        wait "$dmon" 2>/dev/null
        echo "nvidia-smi dmon during the benchmark (sm%, mem%):"
        cat "$WORK/dmon.txt"
        awk '!/^#/ && NF >= 3 {n++; s += $2} END {if (n) printf "dmon: mean sm%% %.1f over %d s\n", s / n, n}' "$WORK/dmon.txt"
    fi
    return "$rc"
}

# ---------------------------------------------------------------- the run
log "gpu_check: repo $REPO, python $PYTHON, out $OUT, GPU_BUDGET ${GPU_BUDGET}s, $(date -u)"

# 0: wheels (Python 3.12 only: they are cp312 / abi3 / py3 builds for the device image)
SITE=/tmp/site
if [ -d "$REPO/.whl" ] && "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))'; then
    t0=$(date +%s)
    if timeout 120 "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --upgrade --target "$SITE" "$REPO"/.whl/*.whl >>"$LOG" 2>&1; then
        export PYTHONPATH="$SITE:$REPO"
        note "$(printf '%-16s' wheels) ok ($(($(date +%s) - t0))s)"
    else
        export PYTHONPATH="$REPO"
        note "$(printf '%-16s' wheels) FAILED (see gpu_check.log)"
    fi
else
    export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
    note "$(printf '%-16s' wheels) skipped (not Python 3.12, or no .whl)"
fi
log "PYTHONPATH=$PYTHONPATH"

# The optional extra command (CPU work alongside the GPU steps), with the wheels importable
if [ "${#EXTRA[@]}" -gt 0 ]; then
    log "extra: starting in the background (limit ${EXTRA_TIMEOUT}s, niced): ${EXTRA[*]}"
    (nice -n 10 timeout -k 10 "$EXTRA_TIMEOUT" "${EXTRA[@]}") >"$OUT/extra.log" 2>&1 &
    EXTRA_PID=$!
else
    EXTRA_PID=""
fi

step a-env 60 env_check

# b: tests in the background while c, d1 and e1 run (they share the GPU but not its limits)
TESTS_PID=""
if wanted b; then
    TESTS_LIMIT=${TESTS_LIMIT:-240}
    log ""
    log "===== [b-tests] started in the background (limit ${TESTS_LIMIT}s, output pytest.log)"
    TESTS_T0=$(date +%s)
    (timeout -k 10 "$TESTS_LIMIT" bash -c "$(declare -f tests_bg); tests_bg") >"$OUT/pytest.log" 2>&1 &
    TESTS_PID=$!
fi

step c-amp-cli 150 amp_runs
step c-amp-direct 90 amp_direct
step d1-oom-python 90 oom_python
step e1-probe 60 probe_full

if [ -n "$TESTS_PID" ]; then
    log ""
    log "===== [b-tests] waiting for the tests (at +$(elapsed)s)"
    wait "$TESTS_PID"
    rc=$?
    verdict=ok
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        verdict="TIMED OUT"
    elif [ "$rc" -ne 0 ]; then
        verdict="FAILED rc=$rc"
    fi
    tail_line=$(grep -E "(passed|failed|error)" "$OUT/pytest.log" | tail -1)
    note "$(printf '%-16s' b-tests) $verdict (joined after $(($(date +%s) - TESTS_T0))s): $tail_line"
    log "----- [b-tests] $verdict: $tail_line"
    grep -E "^(FAILED|ERROR|SKIPPED)" "$OUT/pytest.log" | head -40 | tee -a "$LOG"
fi

# GPU-exclusive steps: the ballast and the benchmark must not share the GPU with tests
step d2-ladder+e2 200 ladder
step f-throughput 150 throughput

# ---------------------------------------------------------------- results
if [ -n "$EXTRA_PID" ]; then
    log ""
    log "===== [extra] waiting (at +$(elapsed)s)"
    wait "$EXTRA_PID"
    rc=$?
    note "$(printf '%-16s' extra) rc=$rc (see extra.log)"
    log "----- [extra] rc=$rc; last lines:"
    tail -15 "$OUT/extra.log" | tee -a "$LOG"
fi
if [ -d "$REPO/benchmarks/results/quality" ]; then
    tar czf "$OUT/quality_cache.tar.gz" -C "$REPO/benchmarks/results" quality &&
        note "$(printf '%-16s' quality-cache) $(du -h "$OUT/quality_cache.tar.gz" | cut -f1)"
fi
# The run folders (trials.csv, summary.json, study.db, worker logs), small
tar czf "$OUT/runs.tar.gz" -C "$WORK" . 2>/dev/null
if [ "$(stat -c %s "$OUT/runs.tar.gz" 2>/dev/null || echo 0)" -gt 15000000 ]; then
    tar czf "$OUT/runs.tar.gz" -C "$WORK" --exclude='*.db' --exclude='epochs.csv' . 2>/dev/null
fi

{
    echo ""
    echo "================ gpu_check summary (+$(elapsed)s) ================"
    cat "$SUMMARY"
    echo "--- key lines"
    grep -E "^(torch |device |NO CUDA|  [a-z_]+ +IMPORT FAILED)|exit code:|summary:|^  trial [0-9]+ |^CHECK |^== |seen:|scales:|LEAVE_MIB|^batch +[0-9]+:|ballast:|\[whole-gpu\]|\[ballast\]|population: .*TFLOP|^dmon: |^\| " "$LOG" | cut -c1-400
} | tee -a "$LOG"
