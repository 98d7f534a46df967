"""Throughput of the hot path, measured in one process: `python -m chessbrain_jax.bench [--json]`.

Self-play (positions/s, simulations/s, network evaluations/s), training (samples/s), the compile time of each, the
network's FLOPs per position (XLA's cost analysis of the compiled forward pass), achieved FLOP/s and MFU against the
device's peak (on CPU: a float32 matmul measured in the same run; on GPUs: the datasheet dense peak), bytes per
search-tree node (from the shapes of mctx's tree) and peak device memory where the backend reports it. With
`--naive N` it also plays N moves with the old pipeline's design (`benchmarks/naive_reference.py`: python-chess
boards, a Python PUCT loop, one batch-1 network call per leaf) at the same network and simulations, and reports the
speedup measured side by side. `--breakdown` times self-play with a network that costs nothing (the environment and
search bookkeeping alone), and the network and the environment step each alone, per searched position. `--profile
DIR` writes a JAX profiler trace of one self-play episode and one training chunk for TensorBoard's profile tab.
"""

from __future__ import annotations

import json
import math
import sys
import time
from typing import Any, NamedTuple, Sequence

from chessbrain_jax.config import Config, ConfigError, OneLineParser, load_config

PROG = "python -m chessbrain_jax.bench"
# Dense peak FLOP/s from the vendors' datasheets (SXM parts), by device kind substring and compute dtype.
GPU_PEAKS = {"H200": {"bfloat16": 989e12, "float32": 67e12}, "H100": {"bfloat16": 989e12, "float32": 67e12},
             "A100": {"bfloat16": 312e12, "float32": 19.5e12}}


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog=PROG, description="Measure self-play and training throughput.")
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--blocks", type=int, default=6)
    parser.add_argument("--simulations", type=int, default=32)
    parser.add_argument("--selfplay-batch", type=int, default=64, help="parallel games")
    parser.add_argument("--plies", type=int, default=4, help="plies per measured self-play call")
    parser.add_argument("--batch-size", type=int, default=16, help="train micro-batch")
    parser.add_argument("--search", choices=("gumbel", "puct"), default="gumbel")
    parser.add_argument("--precision", choices=("auto", "bfloat16", "float32"), default="auto")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured per stage (after compile)")
    parser.add_argument("--naive", type=int, default=0, metavar="MOVES",
                        help="also play MOVES moves with benchmarks/naive_reference.py (run from the repo root)")
    parser.add_argument("--breakdown", action="store_true",
                        help="also time the network, the env step and a search with a network that costs nothing")
    parser.add_argument("--profile", default=None, metavar="DIR", help="write a profiler trace to DIR")
    parser.add_argument("--device", choices=("auto", "cpu", "gpu", "tpu"), default="auto")
    parser.add_argument("--cpu-devices", type=int, default=1, metavar="N",
                        help="split the CPU into N XLA devices and run data parallel (0 = one per core)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def _timed(function, minimum_seconds: float, *args) -> tuple[int, float, Any]:
    """Calls `function(*args)` (blocking on its result) until `minimum_seconds` pass; (calls, seconds, last)."""
    import jax

    calls, started = 0, time.perf_counter()
    while True:
        result = jax.block_until_ready(function(*args))
        calls += 1
        elapsed = time.perf_counter() - started
        if elapsed >= minimum_seconds:
            return calls, elapsed, result


def matmul_flops_per_s(dtype: str, size: int = 1024, seconds: float = 2.0) -> float:
    """Measured FLOP/s of a `size x size` matmul chain in `dtype`: the CPU 'peak' the MFU is quoted against."""
    import jax
    import jax.numpy as jnp

    a = jnp.ones((size, size), dtype) / size
    chain = jax.jit(lambda x: jax.lax.fori_loop(0, 8, lambda _, y: y @ a, x))
    chain(a).block_until_ready()
    calls, elapsed, _ = _timed(chain, seconds, a)
    return calls * 8 * 2 * size ** 3 / elapsed


def network_flops(apply_fn, params, batch: int, dtype) -> float:
    """FLOPs per position of one forward pass, from XLA's cost analysis of the compiled call at `batch`."""
    import jax
    import jax.numpy as jnp

    from chessbrain_jax.core.types import OBSERVATION_SHAPE

    compiled = jax.jit(apply_fn).lower(params, jnp.zeros((batch, *OBSERVATION_SHAPE), jnp.float32)).compile()
    analysis = compiled.cost_analysis()
    if isinstance(analysis, list):
        analysis = analysis[0]
    return float(analysis.get("flops", math.nan)) / batch


def tree_bytes(config, apply_fn, params, states) -> dict[str, float]:
    """Bytes per search-tree node: the node's stored pgx state (embedding) and mctx's per-node statistics."""
    import jax

    from chessbrain_jax.core.search import make_search_fn
    from chessbrain_jax.core.types import tree_bytes as size

    output = jax.eval_shape(make_search_fn(config, apply_fn), params, jax.random.PRNGKey(0), states)
    tree = output.search_tree
    nodes = config.selfplay_batch * (config.mcts_simulations + 1)
    embedding = size(tree.embeddings) / nodes  # the pgx state and the node's legal-move slots
    return {"tree_bytes_per_node": size(tree) / nodes, "embedding_bytes_per_node": embedding,
            "statistics_bytes_per_node": size(tree) / nodes - embedding, "tree_bytes_per_search": size(tree)}


def breakdown(config, parallel, apply_fn, params, games, play, seconds: float) -> dict[str, float]:
    """Milliseconds per searched position, by part (wall time of the whole mesh, so shares hold on any device count).

    `params` replicated, `games` the `SelfPlayState` `[B]` on the mesh, `play` the compiled self-play
    `(params, games, key) -> ...`; each part is timed for `seconds`. `selfplay` is `play` again, timed just before
    `free_network`: the same self-play with a network that costs nothing (uniform prior, value 0; it still reads the
    observation), i.e. environment plus search bookkeeping, so `network_share_of_selfplay` = 1 - free / whole, from
    two timings back to back. `network`: one forward pass over the games' observations, timed alone, times the
    root and simulations. `env_step`: the recurrent function's environment part (`Node` expand, `chess_env.step` with
    its observation, legal-move slots, `Node` compact), timed alone the same way. Parts timed alone need not add up
    to the whole: inside the search XLA fuses each with its neighbours, and a call alone pays its own launch.
    """
    import jax
    import jax.numpy as jnp

    from chessbrain_jax.core.search import Node, legal_slots, step_nodes
    from chessbrain_jax.core.types import NUM_ACTIONS
    from chessbrain_jax.scale import sharding

    nodes_per_position = (config.mcts_simulations + 1) / config.selfplay_batch  # calls over the whole batch

    def free(params, observation):  # reads every observation entry, so XLA cannot drop the observation's cost
        del params
        return (jnp.zeros((observation.shape[0], NUM_ACTIONS), jnp.float32),
                0.0 * observation.astype(jnp.float32).sum(axis=(1, 2, 3)))

    key = parallel.replicate(jax.random.PRNGKey(6))
    play_free = jax.jit(parallel.play_episode(free))
    jax.block_until_ready(play_free(params, games, key))  # compiled before either is timed: the two run back to back
    calls, elapsed, _ = _timed(lambda: play(params, games, key), seconds)
    total_ms = 1e3 * elapsed / (calls * config.positions_per_episode)
    calls, elapsed, _ = _timed(lambda: play_free(params, games, key), seconds)
    free_ms = 1e3 * elapsed / (calls * config.positions_per_episode)

    def env_node_step(node, key):  # the recurrent function's env part, on a random legal slot of each node
        slot = jax.random.categorical(key, jnp.where(node.actions >= 0, 0.0, -jnp.inf))
        _, next_state, next_actions = step_nodes(node, slot)
        return Node.of(next_state, next_actions), next_state.observation

    # Each device times its own share, as self-play runs it (shard_map: no cross-device partitioning of pgx's step).
    states = games.env
    nodes = jax.jit(parallel.shard(lambda s: Node.of(s, legal_slots(s.legal_action_mask)), sharding.GAMES,
                                   sharding.GAMES))(states)
    env_step = jax.jit(parallel.shard(env_node_step, (sharding.GAMES, sharding.REPLICATED),
                                      (sharding.GAMES, sharding.GAMES)))
    key = parallel.replicate(jax.random.PRNGKey(7))
    jax.block_until_ready(env_step(nodes, key))
    calls, elapsed, _ = _timed(lambda: env_step(nodes, key), seconds)
    env_ms = 1e3 * elapsed / calls * nodes_per_position
    forward = jax.jit(parallel.shard(apply_fn, (sharding.REPLICATED, sharding.GAMES), sharding.GAMES))
    jax.block_until_ready(forward(params, states.observation))
    calls, elapsed, _ = _timed(lambda: forward(params, states.observation), seconds)
    network_ms = 1e3 * elapsed / calls * nodes_per_position
    return {"selfplay_ms_per_position": total_ms, "free_network_ms_per_position": free_ms,
            "network_ms_per_position": network_ms, "env_step_ms_per_position": env_ms,
            "network_share_of_selfplay": (total_ms - free_ms) / total_ms}


def peak_memory_bytes(device) -> int | None:
    try:
        stats = device.memory_stats()
    except Exception:  # backends without memory statistics (CPU) raise or return None
        return None
    return int(stats["peak_bytes_in_use"]) if stats and "peak_bytes_in_use" in stats else None


def bench_config(args) -> Config:
    """The benchmark's flags as a `Config` (no exploration; a buffer that holds one self-play chunk)."""
    for name in ("channels", "simulations", "selfplay_batch", "plies", "batch_size"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.duration <= 0:
        raise ConfigError(f"--duration must be > 0, got {args.duration}")
    return load_config([
        "--channels", str(args.channels), "--blocks", str(args.blocks), "--mcts-simulations", str(args.simulations),
        "--selfplay-batch", str(args.selfplay_batch), "--plies-per-episode", str(args.plies),
        "--batch-size", str(args.batch_size), "--search", args.search, "--precision", args.precision,
        "--replay-capacity", str(max(args.selfplay_batch * args.plies, args.batch_size)),
        "--sample-reuse", "1", "--device", args.device, "--exploration-rate", "0",
        "--cpu-devices", str(args.cpu_devices)], environ={})[0]


class Bench(NamedTuple):
    """What the timed parts share: the config, data-parallel mesh, first device, compute dtype, network."""

    config: Config
    parallel: Any
    device: Any
    dtype: str
    apply_fn: Any
    params: Any  # float32, on one device (for counting FLOPs and the naive reference)


def set_up(config: Config) -> Bench:
    from chessbrain_jax.run.devices import select_device

    devices = select_device(config.device, config)
    import jax

    from chessbrain_jax.config import resolve_precision
    from chessbrain_jax.core import model
    from chessbrain_jax.scale import sharding

    try:
        parallel = sharding.DataParallel(config, devices)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    dtype, _ = resolve_precision(config, devices[0].platform)
    network = model.make_network(config, dtype)
    return Bench(config, parallel, devices[0], dtype, model.make_apply(network),
                 model.init_params(network, jax.random.PRNGKey(0)))


def time_selfplay(bench: Bench, params, duration: float, result: dict[str, Any]):
    """Compiles and times one self-play call of `plies` moves of every game; returns (play, games, trajectory)."""
    import jax

    config, parallel = bench.config, bench.parallel
    games = parallel.init_games()
    play_episode = jax.jit(parallel.play_episode(bench.apply_fn))
    started = time.perf_counter()
    play = play_episode.lower(params, games, parallel.replicate(jax.random.PRNGKey(0))).compile()
    result["selfplay_compile_s"] = time.perf_counter() - started
    keys = parallel.replicate(jax.random.split(jax.random.PRNGKey(1), 2))
    games, trajectory, _ = jax.block_until_ready(play(params, games, keys[0]))
    calls, seconds, _ = _timed(lambda: play(params, games, keys[1]), duration)
    positions = calls * config.positions_per_episode / seconds
    evaluations = positions * (config.mcts_simulations + 1)  # the root, then one leaf per simulation
    result.update(selfplay_positions_per_s=positions, simulations_per_s=positions * config.mcts_simulations,
                  network_evaluations_per_s=evaluations)
    return play, games, trajectory


def time_training(bench: Bench, params, games, trajectory, duration: float, result: dict[str, Any]):
    """Compiles and times micro-steps on a buffer of the positions just played; returns (step, state, buffer)."""
    import jax

    from chessbrain_jax.core import learner

    config, parallel = bench.config, bench.parallel
    buffer = jax.jit(parallel.add())(parallel.init_buffer(), trajectory, games)
    optimizer = learner.make_optimizer(config)
    state = parallel.replicate(learner.init_train_state(jax.tree.map(jax.numpy.copy, params), optimizer))
    step = jax.jit(learner.make_micro_step(config, bench.apply_fn, optimizer, parallel), donate_argnums=0)
    key = parallel.replicate(jax.random.PRNGKey(2))
    started = time.perf_counter()
    step = step.lower(state, buffer, key).compile()
    result["train_compile_s"] = time.perf_counter() - started
    state, _ = jax.block_until_ready(step(state, buffer, key))
    keys = parallel.replicate(jax.random.split(jax.random.PRNGKey(3), 1_000_000))
    calls, started = 0, time.perf_counter()
    while time.perf_counter() - started < duration:
        for _ in range(8):  # dispatch ahead, as the training loop does
            state, metrics = step(state, buffer, keys[calls])
            calls += 1
        jax.block_until_ready(metrics)
    result["train_samples_per_s"] = calls * config.batch_size / (time.perf_counter() - started)
    return step, state, buffer


def utilisation(bench: Bench, games, result: dict[str, Any]) -> None:
    """FLOPs per position, achieved FLOP/s and MFU against the device's peak, search-tree bytes, peak memory."""
    import jax

    flops = network_flops(bench.apply_fn, bench.params, bench.config.selfplay_batch, bench.dtype)
    evaluations, samples, device = result["network_evaluations_per_s"], result["train_samples_per_s"], bench.device
    result["network_flops_per_position"] = flops
    result["selfplay_network_flops_per_s"] = evaluations * flops
    result["train_flops_per_s"] = 3 * samples * flops  # forward + backward ~ 3 forward passes
    if device.platform == "cpu":
        peak, source = matmul_flops_per_s(bench.dtype), f"measured {bench.dtype} 1024x1024 matmul on this CPU"
    else:
        peak = next((peaks.get(bench.dtype) for kind, peaks in GPU_PEAKS.items() if kind in device.device_kind), None)
        source = f"{device.device_kind} datasheet dense {bench.dtype}" if peak else "unknown device"
    result.update(peak_flops_per_s=peak, peak_source=source,
                  selfplay_mfu=evaluations * flops / peak if peak else None,
                  train_mfu=3 * samples * flops / peak if peak else None)
    result.update(tree_bytes(bench.config, bench.apply_fn, bench.params, jax.device_put(games.env, device)))
    result["peak_device_memory_bytes"] = peak_memory_bytes(device)


def run(args) -> dict[str, Any]:
    """Every figure the flags ask for, as one JSON-ready dict."""
    import jax

    bench = set_up(bench_config(args))
    config = bench.config
    result: dict[str, Any] = {
        "device": bench.device.device_kind, "platform": bench.device.platform, "jax": jax.__version__,
        "dtype": bench.dtype, "channels": config.channels, "blocks": config.blocks,
        "simulations": config.mcts_simulations, "search": config.search, "selfplay_batch": config.selfplay_batch,
        "batch_size": config.batch_size, "devices": bench.parallel.size}
    params = bench.parallel.replicate(bench.params)
    play, games, trajectory = time_selfplay(bench, params, args.duration, result)
    step, state, buffer = time_training(bench, params, games, trajectory, args.duration, result)
    utilisation(bench, games, result)
    if args.breakdown:
        result["breakdown"] = breakdown(config, bench.parallel, bench.apply_fn, params, games, play, args.duration)
    if args.profile:
        with jax.profiler.trace(args.profile):
            with jax.named_scope("bench_selfplay"):
                jax.block_until_ready(play(params, games, jax.random.PRNGKey(4)))
            with jax.named_scope("bench_train"):
                jax.block_until_ready(step(state, buffer, jax.random.PRNGKey(5)))
        result["profile"] = args.profile
    if args.naive:
        try:
            from benchmarks import naive_reference
        except ImportError:
            raise ConfigError("--naive needs benchmarks/naive_reference.py: run from the repository root") from None
        naive = naive_reference.play(config, bench.params, moves=args.naive, simulations=config.mcts_simulations,
                                     seed=0)
        result["naive"] = naive
        result["speedup_over_naive"] = result["selfplay_positions_per_s"] / naive["moves_per_s"]
    return result


def summary(result: dict[str, Any]) -> str:
    lines = [
        f"{result['device']} ({result['platform']}, jax {result['jax']}, {result['dtype']}): "
        f"{result['channels']} ch x {result['blocks']} blocks, {result['search']} {result['simulations']} sims, "
        f"{result['selfplay_batch']} games, train batch {result['batch_size']}",
        f"self-play: {result['selfplay_positions_per_s']:.1f} positions/s, {result['simulations_per_s']:.0f} "
        f"simulations/s, {result['network_evaluations_per_s']:.0f} network evaluations/s "
        f"(compile {result['selfplay_compile_s']:.1f}s)",
        f"training: {result['train_samples_per_s']:.1f} samples/s (compile {result['train_compile_s']:.1f}s)",
        f"network: {result['network_flops_per_position'] / 1e6:.1f} MFLOP/position; self-play "
        f"{result['selfplay_network_flops_per_s'] / 1e9:.2f} GFLOP/s, training {result['train_flops_per_s'] / 1e9:.2f}"
        f" GFLOP/s",
    ]
    if result["peak_flops_per_s"]:
        lines.append(f"MFU: self-play {100 * result['selfplay_mfu']:.1f}%, training {100 * result['train_mfu']:.1f}% "
                     f"of {result['peak_flops_per_s'] / 1e9:.1f} GFLOP/s ({result['peak_source']})")
    lines.append(f"search tree: {result['tree_bytes_per_node'] / 1e3:.1f} KB/node (state "
                 f"{result['embedding_bytes_per_node'] / 1e3:.1f} KB, statistics "
                 f"{result['statistics_bytes_per_node'] / 1e3:.1f} KB), {result['tree_bytes_per_search'] / 1e6:.1f} "
                 f"MB per search; peak device memory "
                 + (f"{result['peak_device_memory_bytes'] / 2**20:.0f} MiB" if result["peak_device_memory_bytes"]
                    else "not reported by this backend"))
    if "breakdown" in result:
        part = result["breakdown"]
        lines.append(f"ms per position: self-play {part['selfplay_ms_per_position']:.2f}, with a network that costs "
                     f"nothing {part['free_network_ms_per_position']:.2f} (network "
                     f"{100 * part['network_share_of_selfplay']:.0f}% of self-play); timed alone: network "
                     f"{part['network_ms_per_position']:.2f}, env step {part['env_step_ms_per_position']:.2f}")
    if "naive" in result:
        lines.append(f"naive reference: {result['naive']['moves_per_s']:.2f} moves/s -> batched design is "
                     f"{result['speedup_over_naive']:.1f}x faster")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from chessbrain_jax.run.console import UsageError

    try:
        args = build_parser().parse_args(argv)
        result = run(args)
    except (ConfigError, UsageError) as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(result) if args.json else summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
