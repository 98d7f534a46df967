"""`python -m chessbrain_jax.plan --config FILE [train flags] [planner flags]`: whether a run fits, before it runs.

Takes the same settings as `train` and, without training, prints what the run needs: the device memory of each
compiled program (XLA's own memory analysis of the real programs at the run's shapes: self-play chunk, replay add,
train micro-step; lowered ahead of time on whatever device is here, so a GPU run can be planned on a laptop), the
device state kept between programs, checkpoint bytes and the disk the whole run needs, positions and optimizer
steps, and a time estimate from a throughput given or measured here (`--measure`). Exits 2 with one line per
problem when the disk or the device memory cannot hold the run; `train` runs the same disk and memory checks at
start-up.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Sequence

from chessbrain_jax.config import Config, ConfigError, OneLineParser, load_config
from chessbrain_jax.run import budget
from chessbrain_jax.run.budget import GB
from chessbrain_jax.run.sources import start_pool

PROG = "python -m chessbrain_jax.plan"


def planner_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog=PROG, allow_abbrev=False, usage=f"{PROG} [planner options] [train flags]",
                           description="Whether a training run fits this machine or another, before it runs. Takes "
                           "every flag of `python -m chessbrain_jax.train` (see its --help) and these:")
    parser.add_argument("--device-memory-gb", type=float, default=None,
                        help="memory of the device the run is for (default: this machine's device, when it is the "
                             "run's kind); e.g. 80 for an H100 80 GB")
    parser.add_argument("--positions-per-s", type=float, default=None,
                        help="self-play positions/s of the run's device (from bench or a run's metrics)")
    parser.add_argument("--train-steps-per-s", type=float, default=None, help="optimizer steps/s, likewise")
    parser.add_argument("--measure", action="store_true",
                        help="time one self-play chunk and one train micro-step on this machine's device")
    parser.add_argument("--json", action="store_true", help="print the plan as one JSON object")
    return parser


def program_memory(config: Config, dtype: str, trees: dict[str, Any], measure: bool) -> dict[str, dict[str, Any]]:
    """Per program: XLA's memory analysis (bytes) of it compiled at the run's shapes on the default device, and with
    `measure` the seconds of one call (after the compile)."""
    import jax

    from chessbrain_jax.core import learner, model, replay, selfplay

    apply_fn = model.make_apply(model.make_network(config, dtype))
    play = selfplay.make_play_episode(config, apply_fn, start_pool(config))
    params, games, buffer, rng = trees["params"], trees["games"], trees["buffer"], trees["rng"]
    _, trajectory, _ = jax.eval_shape(play, params, games, rng)
    micro_step = learner.make_micro_step(config, apply_fn, learner.make_optimizer(config))
    programs = {"selfplay_chunk": (jax.jit(play, donate_argnums=1), (params, games, rng)),
                "replay_add": (jax.jit(replay.add, donate_argnums=0), (buffer, trajectory, games)),
                "train_micro_step": (jax.jit(micro_step, donate_argnums=0), (trees["train_state"], buffer, rng))}
    figures = {}
    for name, (function, arguments) in programs.items():
        started = time.monotonic()
        compiled = function.lower(*arguments).compile()
        analysis = compiled.memory_analysis()
        row = {"compile_s": time.monotonic() - started}
        for field in ("argument", "output", "alias", "temp", "generated_code"):
            row[f"{field}_bytes"] = int(getattr(analysis, f"{field}_size_in_bytes", 0) or 0)
        row["peak_bytes"] = row["argument_bytes"] + row["output_bytes"] - row["alias_bytes"] + row["temp_bytes"]
        if measure:
            row["seconds"] = _time_call(compiled, arguments)
        figures[name] = row
    return figures


def _time_call(compiled, arguments) -> float:
    """Seconds of one call (the faster of two: the first pays one-time costs) on concrete zeros of the arguments'
    shapes (fresh ones each time: the programs donate their state). Zeros cost what real data does: the programs
    have no data-dependent shapes, though search on the start position of every game is only a proxy."""
    import jax
    import jax.numpy as jnp

    times = []
    for _ in range(2):
        concrete = jax.block_until_ready(jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), arguments))
        started = time.monotonic()
        jax.block_until_ready(compiled(*concrete))
        times.append(time.monotonic() - started)
    return min(times)


def make_plan(config: Config, options: argparse.Namespace) -> dict[str, Any]:
    """The whole plan as a JSON-ready dict, with `problems`: one line each, empty when the run fits."""
    import jax

    from chessbrain_jax.config import resolve_precision

    device = jax.devices()[0]
    target = config.device if config.device != "auto" else device.platform
    dtype = resolve_precision(config, "gpu" if target == "cuda" else target)[0]
    trees = budget.shapes(config)
    disk = budget.disk_plan(config, trees)
    programs = program_memory(config, dtype, trees, options.measure)
    state_bytes = budget.device_state_bytes(trees)
    peak = max(row["peak_bytes"] for row in programs.values())
    # Between programs the loop holds the state; a program's own arguments are part of that state.
    needed = state_bytes + max(row["peak_bytes"] - row["argument_bytes"] for row in programs.values())
    if options.device_memory_gb is not None:
        available, memory_source = int(options.device_memory_gb * GB), "--device-memory-gb"
    elif target == device.platform or (target == "gpu" and device.platform == "cuda"):
        available, memory_source = budget.device_memory_bytes(device), f"this machine's {device.platform}"
    else:
        available, memory_source = None, f"unknown: planned on {device.platform} for {target}; give --device-memory-gb"
    problems = [problem for problem in (
        budget.memory_problem(needed, available, "the run"),
        budget.disk_problem(config, disk, config.checkpoint_dir)) if problem]
    return {
        "config": {"episodes": config.episodes, "selfplay_batch": config.selfplay_batch,
                   "plies_per_episode": config.plies_per_episode, "mcts_simulations": config.mcts_simulations,
                   "network": f"{config.channels}x{config.blocks}", "compute_dtype": dtype, "target": target},
        "work": _work(config),
        "programs": programs,
        "analysed_on": device.platform,
        "device": {"state_bytes": state_bytes, "replay_buffer_bytes": budget.tree_bytes(trees["buffer"]),
                   "largest_program_peak_bytes": peak, "needed_bytes": needed, "available_bytes": available,
                   "available_from": memory_source},
        "disk": {"checkpoint_bytes": disk.checkpoint_bytes, "state_bytes": disk.state_bytes,
                 "run_bytes": disk.run_bytes, "written": disk.written, "kept_at_once": disk.kept,
                 "with_buffer_at_once": disk.with_buffer, "total_bytes": disk.total_bytes,
                 "free_bytes": budget.free_disk_bytes(config.checkpoint_dir)},
        "time": _time(config, options, programs),
        "problems": problems,
    }


def _work(config: Config) -> dict[str, int]:
    return {"positions_per_episode": config.positions_per_episode,
            "positions": config.positions_per_episode * config.episodes,
            "optimizer_steps_per_episode": config.optimizer_steps_per_episode,
            "optimizer_steps": config.optimizer_steps_per_episode * config.episodes,
            "samples": config.micro_steps_per_episode * config.batch_size * config.episodes}


def _time(config: Config, options: argparse.Namespace, programs: dict[str, dict]) -> dict[str, Any]:
    """Seconds per episode and for the run, from throughputs given or measured (None where neither is known)."""
    selfplay_s = train_s = None
    source = "given"
    if options.positions_per_s:
        selfplay_s = config.positions_per_episode / options.positions_per_s
    if options.train_steps_per_s:
        train_s = config.optimizer_steps_per_episode / options.train_steps_per_s
    if options.measure:
        source = "measured here"
        selfplay_s = selfplay_s or programs["selfplay_chunk"]["seconds"] + programs["replay_add"]["seconds"]
        train_s = train_s or programs["train_micro_step"]["seconds"] * config.micro_steps_per_episode
    if selfplay_s is None or train_s is None:
        return {"source": None, "episode_s": None, "run_s": None}
    return {"source": source, "selfplay_s": selfplay_s, "train_s": train_s, "episode_s": selfplay_s + train_s,
            "run_s": (selfplay_s + train_s) * config.episodes}


def _size(count: float | None) -> str:
    if count is None:
        return "unknown"
    return f"{count / GB:.2f} GB" if count >= 0.5 * GB else f"{count / 1e6:.1f} MB"


def format_plan(plan: dict[str, Any]) -> str:
    """The plan as the lines the command prints."""
    c, w, d, disk, t = plan["config"], plan["work"], plan["device"], plan["disk"], plan["time"]
    lines = [f"run: {c['episodes']} episodes of {c['selfplay_batch']} games x {c['plies_per_episode']} plies, "
             f"{c['mcts_simulations']} simulations, network {c['network']} in {c['compute_dtype']} on {c['target']}",
             f"work: {w['positions_per_episode']:,} positions and {w['optimizer_steps_per_episode']} optimizer steps "
             f"per episode; {w['positions']:,} positions, {w['optimizer_steps']:,} steps in all",
             f"programs (XLA memory analysis, compiled on {plan['analysed_on']} at the run's shapes):"]
    for name, row in plan["programs"].items():
        timing = f", one call {row['seconds']:.2f} s" if "seconds" in row else ""
        lines.append(f"  {name:<17} peak {_size(row['peak_bytes'])} (arguments {_size(row['argument_bytes'])}, "
                     f"temporaries {_size(row['temp_bytes'])}); compiled in {row['compile_s']:.0f} s{timing}")
    lines += [f"device: state kept between programs {_size(d['state_bytes'])} (replay buffer "
              f"{_size(d['replay_buffer_bytes'])}); needs about {_size(d['needed_bytes'])}, has "
              f"{_size(d['available_bytes'])} ({d['available_from']})",
              f"disk: {_size(disk['checkpoint_bytes'])} per checkpoint with its buffer, {_size(disk['state_bytes'])} "
              f"without; {disk['written']} written, at most {disk['kept_at_once']} at once, "
              f"{disk['with_buffer_at_once']} of them with a buffer: {_size(disk['total_bytes'])} "
              f"(free: {_size(disk['free_bytes'])})"]
    if t["episode_s"] is None:
        lines.append("time: unknown (give --positions-per-s and --train-steps-per-s, or --measure on the run's device)")
    else:
        lines.append(f"time ({t['source']}): {t['episode_s']:.1f} s per episode ({t['selfplay_s']:.1f} self-play, "
                     f"{t['train_s']:.1f} training), {t['run_s'] / 60:.0f} min for the run")
    lines += [f"problem: {problem}" for problem in plan["problems"]] or ["fits: yes"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        options, rest = planner_parser().parse_known_args(argv)
        config, _ = load_config(rest)
        plan = make_plan(config, options)
    except ConfigError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(plan) if options.json else format_plan(plan))
    return 2 if plan["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
