#!/usr/bin/env bash
# The GPU figures of docs/performance.md, taken on a lent GPU machine in two calls of at most ~5 minutes each, so that
# a session's 15 minutes of device time hold both calls and the machine's start.
#
# Here, once: bash scripts/gpu_figures.sh --wheels
#   downloads, as wheels into .whl/ (ignored by git), the packages the GPU image lacks: mctx, pgx, svgwrite,
#   tensorboardX, chess, and pytest for the device check. The image has jax (CUDA), flax, optax, orbax-checkpoint,
#   chex.
# There (the device tool's `run`):
#   command "bash scripts/gpu_figures.sh 1", carry [".whl"], timeout_s 320
#   command "bash scripts/gpu_figures.sh 2", carry [".whl"], timeout_s 320   (the next call, while the machine is warm)
#
# Steps, most important first, each under its own time limit (killed 10 s after it); each writes its result to $OUT
# as soon as it ends, so a step that fails or runs out of time loses only itself:
#   part 1: env.txt                 GPU, driver and package versions
#           gpu-tests.txt           the device check: pytest -m gpu (tests/test_gpu.py: two episodes of the GPU
#                                   preset at small sizes, bf16/f32 search agreement, no host sync in a chunk)
#           bench-bf16-4096.json    bench at 128 ch x 6 blocks, 32 simulations, 4096 games, bf16
#           train-metrics.jsonl     two episodes of configs/gpu-1h.yaml (end-to-end positions/s, compile)
#   part 2: breakdown-bf16-4096.json  the same bench with --breakdown, and its profiler trace (profile.tgz, split
#                                   into profile.tgz.part-* if over 15 MB)
#           bench-bf16-1024.json    at 1024 games (the gpu-1h preset's batch), with 20 moves of the naive reference
#                                   on the GPU (batch-1 network calls) for the speedup there
#           bench-f32-4096.json     float32 at 4096 games: what bf16 buys
#   both:   log.txt                 everything the steps printed
# GPU_FIGURES_QUICK=1 runs the same steps at tiny sizes on whatever JAX finds (a check of this script, not figures).
set -u
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
OUT=${OUT:-/tmp/gpu_figures}
mkdir -p "$OUT"

if [ "${1:-}" = "--wheels" ]; then
    mkdir -p .whl
    for package in mctx==0.0.71 pgx==2.6.0 svgwrite==1.4.3 tensorboardX==2.6.5 pytest==8.3.5 pluggy==1.5.0 \
        iniconfig==2.0.0 packaging==24.2; do
        "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
            -d .whl "$package" || exit 1
    done
    "$PYTHON" -m pip wheel -q --no-deps -w .whl chess==1.11.2 || exit 1  # pure Python, published as source only
    ls .whl
    exit 0
fi

if [ -d .whl ]; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=/tmp/jax-cache
LOG="$OUT/log.txt"

if [ "${GPU_FIGURES_QUICK:-0}" = 1 ]; then
    NET=(--channels 8 --blocks 1 --simulations 4 --batch-size 8 --duration 0.3)
    BIG=16 SMALL=8 DEVICE=auto TRAIN=(--config configs/smoke.yaml --episodes 2 --eval-interval 0)
else
    NET=(--channels 128 --blocks 6 --simulations 32 --batch-size 1024 --duration 5)
    BIG=4096 SMALL=1024 DEVICE=gpu TRAIN=(--config configs/gpu-1h.yaml --episodes 2 --eval-interval 0
        --replay-capacity 131072)  # a 290 MB buffer to checkpoint, not the preset's 2.3 GB
fi

step() {  # step SECONDS NAME COMMAND...: runs COMMAND under a time limit, its stdout to $OUT/NAME, stderr to the log
    local seconds=$1 name=$2
    shift 2
    echo "=== $name ($(date +%T), limit ${seconds}s): $*" >>"$LOG"
    timeout -k 10 "$seconds" "$@" >"$OUT/$name" 2>>"$LOG"
    echo "=== $name: exit $?, $SECONDS s since start" >>"$LOG"
}

case "${1:-1}" in
1)
    {
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 || true
        timeout -k 5 40 "$PYTHON" -c "import jax, flax, optax, mctx, pgx, orbax.checkpoint as o; print('jax', \
jax.__version__, jax.devices(), 'flax', flax.__version__, 'optax', optax.__version__, 'mctx', mctx.__version__, \
'pgx', pgx.__version__, 'orbax', o.__version__)"
    } >"$OUT/env.txt" 2>&1
    GPU_TEST_PLATFORM=$([ "$DEVICE" = gpu ] && echo gpu || echo cpu) JAX_PLATFORMS=$([ "$DEVICE" = gpu ] \
        && echo cuda,cpu || echo cpu) step 90 gpu-tests.txt "$PYTHON" -m pytest -o addopts="" -q -m gpu \
        -p no:cacheprovider tests/test_gpu.py
    step 100 "bench-bf16-$BIG.json" "$PYTHON" -m chessbrain_jax.bench "${NET[@]}" --selfplay-batch "$BIG" \
        --precision bfloat16 --device "$DEVICE" --json
    rm -rf /tmp/gpu-runs /tmp/gpu-checkpoints
    step 90 train.txt "$PYTHON" -m chessbrain_jax.train "${TRAIN[@]}" --job-id gpu --log-dir /tmp/gpu-runs \
        --checkpoint-dir /tmp/gpu-checkpoints --device "$DEVICE"
    cp /tmp/gpu-runs/gpu/metrics.jsonl "$OUT/train-metrics.jsonl" 2>>"$LOG"
    cat "$OUT/train.txt" >>"$LOG" && rm -f "$OUT/train.txt"
    ;;
2)
    rm -rf /tmp/gpu-profile
    step 130 "breakdown-bf16-$BIG.json" "$PYTHON" -m chessbrain_jax.bench "${NET[@]}" --selfplay-batch "$BIG" \
        --precision bfloat16 --device "$DEVICE" --breakdown --profile /tmp/gpu-profile --json
    tar czf "$OUT/profile.tgz" -C /tmp gpu-profile 2>>"$LOG"
    if [ "$(stat -c %s "$OUT/profile.tgz")" -gt 15000000 ]; then  # a file over 16 MiB does not come back
        split -b 15000000 "$OUT/profile.tgz" "$OUT/profile.tgz.part-" && rm "$OUT/profile.tgz"
    fi
    step 80 "bench-bf16-$SMALL.json" "$PYTHON" -m chessbrain_jax.bench "${NET[@]}" --selfplay-batch "$SMALL" \
        --precision bfloat16 --device "$DEVICE" --naive 20 --json
    step 70 "bench-f32-$BIG.json" "$PYTHON" -m chessbrain_jax.bench "${NET[@]}" --selfplay-batch "$BIG" \
        --precision float32 --device "$DEVICE" --json
    ;;
*)
    echo "usage: bash scripts/gpu_figures.sh [--wheels | 1 | 2]" >&2
    exit 2
    ;;
esac
echo "=== done in $SECONDS s" >>"$LOG"
ls -la "$OUT" >>"$LOG"
