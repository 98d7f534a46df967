"""Training throughput of the two training loops (`--train-loop scan` vs `host`), measured side by side.

    python scripts/bench_train_loop.py --channels 64 --blocks 6 --batch-size 16 --micro-steps 32

Prints one JSON object: samples/s and optimizer steps/s of each loop on a filled replay buffer, and their ratio.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp

from chessbrain_jax.config import load_config
from chessbrain_jax.core import chess_env, encoding, learner, model, replay, selfplay
from chessbrain_jax.core.types import PackedObservation, Position, Trajectory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--blocks", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--micro-steps", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    plies = args.micro_steps * args.batch_size // 64
    config, _ = load_config([
        "--channels", str(args.channels), "--blocks", str(args.blocks), "--batch-size", str(args.batch_size),
        "--selfplay-batch", "64", "--plies-per-episode", str(plies), "--replay-capacity", "4096"], environ={})
    network = model.make_network(config)
    apply_fn = model.make_apply(network)
    optimizer = learner.make_optimizer(config)
    games = selfplay.init_selfplay(config)
    # A buffer of real positions: the starting position's observation and legal moves, uniform policy.
    trajectory_shape = jax.eval_shape(selfplay.make_play_episode(config, apply_fn), model.init_params(
        network, jax.random.PRNGKey(0)), games, jax.random.PRNGKey(0))[1]
    start = chess_env.initial_states(1)
    packed = encoding.pack_observation(start.observation)
    actions, weights = encoding.compact_policy(start.legal_action_mask[0], start.legal_action_mask[0] / 20.0)
    fill = lambda shape, value: jnp.broadcast_to(value, shape.shape).astype(shape.dtype)  # noqa: E731
    shape = trajectory_shape.position
    trajectory = Trajectory(
        position=Position(
            observation=PackedObservation(fill(shape.observation.bits, packed.bits[0]),
                                                   fill(shape.observation.scalars, packed.scalars[0])),
            legal_actions=fill(shape.legal_actions, actions), policy=fill(shape.policy, weights),
            white_to_move=fill(shape.white_to_move, True), slot=fill(shape.slot, 0),
            generation=fill(shape.generation, 0), material=fill(shape.material, 0),
            root_value=fill(shape.root_value, 0.0)),
        action=fill(trajectory_shape.action, 0))
    buffer = replay.add(replay.init_replay(config), trajectory, games)

    result = {"device": str(jax.devices()[0].device_kind), "jax": jax.__version__, "channels": args.channels,
              "blocks": args.blocks, "batch_size": args.batch_size, "micro_steps": config.micro_steps_per_episode}
    for loop in ("scan", "host"):
        chunk = learner.TrainChunk(config, apply_fn, optimizer, loop)
        state = learner.init_train_state(model.init_params(network, jax.random.PRNGKey(0)), optimizer)
        started = time.perf_counter()
        chunk.compile(state, buffer, jax.random.PRNGKey(0))
        result[f"{loop}_compile_s"] = round(time.perf_counter() - started, 2)
        state, metrics = chunk(state, buffer, jax.random.PRNGKey(1))  # warm-up
        jax.block_until_ready(metrics)
        started = time.perf_counter()
        for repeat in range(args.repeats):
            state, metrics = chunk(state, buffer, jax.random.PRNGKey(2 + repeat))
        jax.block_until_ready(metrics)
        elapsed = time.perf_counter() - started
        result[f"{loop}_samples_per_s"] = round(args.repeats * config.micro_steps_per_episode * args.batch_size
                                                / elapsed, 1)
    result["host_over_scan"] = round(result["host_samples_per_s"] / result["scan_samples_per_s"], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
