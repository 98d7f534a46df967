"""Restore or initialise: the training state a job starts its episode loop from."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from chessbrain_jax.config import Config
from chessbrain_jax.run.console import UsageError, say
from chessbrain_jax.run.job import keep_metrics_up_to

_UNREADABLE = (KeyError, ValueError, TypeError, OSError)


def step_of(train_state) -> int:
    """The optimizer step as a Python int (read from this process's replica)."""
    from chessbrain_jax.scale import sharding

    return int(sharding.fetch(train_state.step))


@dataclasses.dataclass
class StartState:
    """Where the loop starts: device state (train state, RNG key, games in progress, replay buffer) and the host
    counters (`totals` of `selfplay.EPISODE_STATS`); `resumed_step` is None for a new job."""

    train_state: Any
    key: Any
    games: Any
    buffer: Any
    first_episode: int
    positions_seen: int
    totals: dict[str, int]
    resumed_step: int | None = None


def stored_config(manager, steps: list[int], fallback: Config) -> Config:
    """The job's settings from the newest checkpoint whose metadata reads (`fallback` if none does)."""
    from chessbrain_jax.storage import checkpoint

    for step in sorted(steps, reverse=True):
        try:
            return checkpoint.config_from_meta(checkpoint.read_meta(manager, step))
        except _UNREADABLE:
            continue
    return fallback


def check_run_format(manager, steps: list[int], config: Config) -> None:
    """Refuses, in one line, to resume checkpoints whose games and replay layout this version cannot read."""
    from chessbrain_jax.storage import checkpoint

    try:
        found = checkpoint.read_meta(manager, max(steps)).get("run_format", 1)
    except _UNREADABLE:
        return  # unreadable: `restore_latest_good` falls back to an older checkpoint
    if found != checkpoint.RUN_FORMAT:
        raise UsageError(f"--resume: job {config.job_id!r} was saved with replay layout {found} by an older "
                         f"chessbrain_jax (this one uses {checkpoint.RUN_FORMAT}); its networks still load for play "
                         "(arena, uci, registry), but training must start a new job")


def restore_latest_good(manager, steps: list[int], config: Config, parallel):
    """(step, train state, rng, run state, meta) of the newest checkpoint that keeps its replay buffer and restores,
    placed on `parallel`'s mesh (any device count that divides the batch); older ones are fallbacks."""
    from chessbrain_jax.scale import sharding
    from chessbrain_jax.storage import checkpoint

    root = str(manager.directory)
    full = [step for step in steps if checkpoint.has_run(os.path.join(root, f"{config.job_id}_step{step}"))]
    for step in sorted(full, reverse=True):
        try:
            train_state, rng, meta = checkpoint.restore(manager, step, config,
                                                        parallel.sharding(sharding.REPLICATED))
            run_state = checkpoint.restore_run(manager, step, config, parallel.sharding(sharding.GAMES),
                                               parallel.sharding(sharding.BUFFER))
            return step, train_state, rng, run_state, meta
        except _UNREADABLE as error:
            reason = str(error).splitlines()[0][:160] if str(error) else type(error).__name__
            say(f"warning: checkpoint {config.job_id}_step{step} cannot be restored ({reason}); "
                "trying the previous one")
    older = len(steps) - len(full)
    lean = f"; the {older} older ones keep networks only (for arena, uci)" if older else ""
    raise UsageError(f"--resume: none of the {len(full)} checkpoints of job {config.job_id!r} that keep the replay "
                     f"buffer can be restored{lean}")


def restore(job, metrics_path: str | None) -> StartState:
    """The newest good checkpoint of `job` (an `orchestrator.Job`); drops metrics records written after it from
    `metrics_path` (None: not this process's file to touch)."""
    from chessbrain_jax.core import selfplay

    config = job.config
    step, train_state, key, (games, buffer), meta = restore_latest_good(job.manager, job.steps, config,
                                                                        job.parallel)
    totals = dict.fromkeys(selfplay.EPISODE_STATS, 0)
    totals.update({name: int(value) for name, value in meta["totals"].items() if name in totals})
    dropped = keep_metrics_up_to(metrics_path, int(meta["episode"])) if metrics_path else 0
    say(f"resuming after episode {meta['episode']} from {config.job_id}_step{step}"
        + (f" ({dropped} later metrics records dropped)" if dropped else ""))
    return StartState(train_state, key, games, buffer, int(meta["episode"]) + 1, int(meta["positions"]), totals,
                      resumed_step=step)


def initialise(job, network, optimizer) -> StartState:
    """A new job's state: parameters from `config.seed`, all games at the start position, an empty buffer."""
    import jax

    from chessbrain_jax.core import learner, model, selfplay
    from chessbrain_jax.scale import sharding

    replicated = job.parallel.sharding(sharding.REPLICATED)
    key = job.parallel.replicate(jax.random.PRNGKey(job.config.seed))
    key, init_key = jax.jit(lambda k: tuple(jax.random.split(k)), out_shardings=replicated)(key)
    train_state = jax.jit(lambda k: learner.init_train_state(model.init_params(network, k), optimizer),
                          out_shardings=replicated)(init_key)
    return StartState(train_state, key, job.parallel.init_games(), job.parallel.init_buffer(), 1, 0,
                      dict.fromkeys(selfplay.EPISODE_STATS, 0))


def metrics_path(job_dir: str) -> str:
    return os.path.join(job_dir, "metrics.jsonl")
