#!/usr/bin/env bash
# One training job: self-play, replay, training, metrics and checkpoints (python -m chessbrain_jax.train).
#
# Usage:
#   ./scripts/demo/run_training_cycle.sh [extra flags...]
#   EPISODES=200 GRAD_ACCUM_STEPS=4 ./scripts/demo/run_training_cycle.sh
#   CONFIG=configs/smoke.yaml ./scripts/demo/run_training_cycle.sh
#   NO_AMP=1 DEVICE=gpu JOB_ID=fp32-run ./scripts/demo/run_training_cycle.sh --log-dir ./runs
#
# Each variable below, when set and non-empty, becomes the flag next to it; unset variables pass nothing, so the
# defaults, the --config YAML file and CHESSBRAIN_* variables stay in charge. Extra arguments are appended as flags.
#
#   EPISODES             --episodes              MCTS_SIMULATIONS     --mcts-simulations
#   BATCH_SIZE           --batch-size            MCTS_CPUCT           --mcts-cpuct
#   CHECKPOINT_INTERVAL  --checkpoint-interval   PRODUCER_WORKERS     --producer-workers
#   EXPLORATION_RATE     --exploration-rate      PRODUCER_QUEUE_SIZE  --producer-queue-size
#   SEED                 --seed                  PRODUCER_DEVICE      --producer-device
#   GRAD_ACCUM_STEPS     --grad-accum-steps      NO_AMP=1             --no-amp
#   SELFPLAY_BATCH       --selfplay-batch        CHANNELS             --channels
#   PLIES_PER_EPISODE    --plies-per-episode     BLOCKS               --blocks
#   DEVICE               --device                JOB_ID               --job-id
#   CONFIG               --config                PYTHON               interpreter (default: python3)
#
# See docs/architecture.md for what an episode is and how the flags interact.
set -euo pipefail

PYTHON="${PYTHON:-python3}"
args=()

add_flag() {  # add_flag VARIABLE --flag: appends "--flag value" when VARIABLE is set and non-empty
    local value="${!1:-}"
    if [[ -n "$value" ]]; then
        args+=("$2" "$value")
    fi
}

add_flag CONFIG --config
add_flag EPISODES --episodes
add_flag BATCH_SIZE --batch-size
add_flag CHECKPOINT_INTERVAL --checkpoint-interval
add_flag EXPLORATION_RATE --exploration-rate
add_flag SEED --seed
add_flag GRAD_ACCUM_STEPS --grad-accum-steps
add_flag MCTS_SIMULATIONS --mcts-simulations
add_flag MCTS_CPUCT --mcts-cpuct
add_flag PRODUCER_WORKERS --producer-workers
add_flag PRODUCER_QUEUE_SIZE --producer-queue-size
add_flag PRODUCER_DEVICE --producer-device
add_flag SELFPLAY_BATCH --selfplay-batch
add_flag PLIES_PER_EPISODE --plies-per-episode
add_flag CHANNELS --channels
add_flag BLOCKS --blocks
add_flag DEVICE --device
add_flag JOB_ID --job-id
if [[ -n "${NO_AMP:-}" && "${NO_AMP}" != "0" ]]; then  # NO_AMP=1 (NO_AMP=0 or empty: mixed precision stays on)
    args+=(--no-amp)
fi

set -x
exec "$PYTHON" -m chessbrain_jax.train ${args[@]+"${args[@]}"} "$@"
