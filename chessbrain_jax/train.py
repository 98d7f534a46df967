"""`python -m chessbrain_jax.train`: the orchestrator. It owns the job's lifecycle and all I/O.

Per episode: one compiled self-play chunk (every parallel game plays `plies_per_episode` moves), one compiled replay
`add`, one compiled training chunk (`micro_steps_per_episode` sampled micro-batches), then -- on the host, between
compiled chunks -- metrics, progress and checkpoints. Nothing inside a chunk waits for the host.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
import traceback
from importlib import metadata as importlib_metadata
from typing import Any, NamedTuple, Sequence

from chessbrain_jax.config import FIELDS, Config, ConfigError, load_config, resolve_precision

PROG = "chessbrain_jax.train"
_PLATFORMS = {"cpu": "cpu", "gpu": "cuda", "tpu": "tpu"}
_VERSIONED = ("jax", "jaxlib", "flax", "optax", "mctx", "pgx", "orbax-checkpoint", "tensorboardX", "chess")


class UsageError(Exception):
    """A problem with what the user asked for (device, output folders); reported as one line, exit status 2."""


class RunResult(NamedTuple):
    """What a finished job leaves: its last metrics record, final float32 params and last checkpoint folder."""

    record: dict[str, Any]
    params: Any
    checkpoint_path: str


def select_device(choice: str):
    """Pins JAX to the requested platform before its backends start; returns the devices."""
    import jax

    if choice != "auto":
        jax.config.update("jax_platforms", _PLATFORMS[choice])
    try:
        return jax.devices()
    except RuntimeError:
        hint = " (install the extra: pip install 'chessbrain_jax[cuda12]')" if choice == "gpu" else ""
        raise UsageError(f"--device {choice}: no {choice.upper()} is available to JAX{hint}") from None


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def prepare_folders(config: Config) -> tuple[str, str]:
    """Creates `<log-dir>/<job-id>/` and the checkpoint folder; refuses to write into an existing job."""
    from chessbrain_jax import checkpoint

    job_dir = os.path.abspath(os.path.join(config.log_dir, config.job_id))
    checkpoint_dir = os.path.abspath(config.checkpoint_dir)
    if os.path.isdir(checkpoint_dir) and checkpoint.list_checkpoints(checkpoint_dir, config.job_id):
        raise UsageError(f"job {config.job_id!r} already has checkpoints in {checkpoint_dir}; "
                         "choose another --job-id")
    for folder, flag in ((job_dir, "--log-dir"), (checkpoint_dir, "--checkpoint-dir")):
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as error:
            raise UsageError(f"{flag}: cannot create {folder}: {error.strerror}") from None
        if not os.access(folder, os.W_OK):
            raise UsageError(f"{flag}: {folder} is not writable")
    try:  # claim the job atomically: of two runs started with one job id, the second stops here
        open(os.path.join(job_dir, "metrics.jsonl"), "x", encoding="utf-8").close()
    except FileExistsError:
        raise UsageError(f"job {config.job_id!r} already has metrics in {job_dir}; choose another --job-id") from None
    return job_dir, checkpoint_dir


def say(message: str) -> None:
    print(f"[{PROG}] {message}", file=sys.stderr, flush=True)


def _changed(config: Config, names: Sequence[str]) -> list[str]:
    return [f"--{name.replace('_', '-')} {getattr(config, name)}" for name in names
            if getattr(config, name) != FIELDS[name].default]


def start_up_notes(config: Config) -> list[str]:
    """Settings the user gave that this run does not use, said out loud rather than silently ignored."""
    notes = []
    producer = _changed(config, ("producer_workers", "producer_queue_size", "producer_device"))
    if producer:
        notes.append(f"{', '.join(producer)}: recorded, but self-play and training run synchronously on the device "
                     "(producer/consumer mode is not implemented yet; see docs/architecture.md)")
    if config.search == "gumbel":
        puct_only = _changed(config, ("mcts_cpuct", "dirichlet_alpha", "dirichlet_fraction", "temperature_plies"))
        if puct_only:
            notes.append(f"{', '.join(puct_only)}: used by --search puct only; this run uses gumbel")
    return notes


def run(config: Config) -> RunResult:
    """Runs the job described by `config`."""
    devices = select_device(config.device)
    import jax

    from chessbrain_jax import checkpoint, learner, model, replay, selfplay
    from chessbrain_jax.metrics import MetricsWriter, Progress, write_json_atomically

    backend = devices[0].platform
    dtype, why = resolve_precision(config, backend)
    job_dir, checkpoint_dir = prepare_folders(config)
    say(f"job {config.job_id}: {len(devices)} {backend} device(s) ({devices[0].device_kind}); "
                f"logs {job_dir}; checkpoints {checkpoint_dir}/{config.job_id}_step<N>")
    say(f"precision: {dtype} ({why})")
    say(f"episode = {config.selfplay_batch} parallel games x {config.plies_per_episode} plies = "
                f"{config.positions_per_episode} positions, then {config.optimizer_steps_per_episode} optimizer "
                f"steps ({config.micro_steps_per_episode} micro-batches of {config.batch_size}); "
                f"search {config.search} with {config.mcts_simulations} simulations")
    for note in start_up_notes(config):
        say(f"note: {note}")

    write_json_atomically(os.path.join(job_dir, "run.json"), {
        "job_id": config.job_id,
        "config": config.to_dict(),
        "versions": library_versions(),
        "devices": [str(device) for device in devices],
        "backend": backend,
        "precision": {"compute_dtype": dtype, "reason": why, "params_dtype": "float32"},
        "command": sys.argv,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })

    network = model.make_network(config, dtype)
    apply_fn = lambda params, observation: network.apply({"params": params}, observation)  # noqa: E731
    optimizer = learner.make_optimizer(config)
    schedule = learner.learning_rate_schedule(config)
    key = jax.random.PRNGKey(config.seed)
    key, init_key = jax.random.split(key)
    train_state = learner.init_train_state(model.init_params(network, init_key), optimizer)
    games = selfplay.init_selfplay(config)
    buffer = replay.init_replay(config)

    play_episode = selfplay.make_play_episode(config, apply_fn)
    compile_started = time.monotonic()
    play = jax.jit(play_episode, donate_argnums=1).lower(train_state.params, games, key).compile()
    selfplay_compile_s = time.monotonic() - compile_started
    _, trajectory_shape, _ = jax.eval_shape(play_episode, train_state.params, games, key)
    compile_started = time.monotonic()
    add = jax.jit(replay.add, donate_argnums=0).lower(buffer, trajectory_shape, games).compile()
    train = learner.TrainChunk(config, apply_fn, optimizer, learner.resolve_train_loop(config, backend))
    train.compile(train_state, buffer, key)
    train_compile_s = time.monotonic() - compile_started
    say(f"compiled self-play in {selfplay_compile_s:.1f}s, replay+training in {train_compile_s:.1f}s "
        f"(training loop: {train.loop})")

    manager = checkpoint.make_manager(checkpoint_dir, config.job_id, keep=config.keep_checkpoints)
    writer = MetricsWriter(job_dir)
    progress = Progress(config.episodes, quiet=config.quiet)
    totals = dict.fromkeys(selfplay.EPISODE_STATS, 0)
    positions_seen = 0
    run_started = time.monotonic()
    record: dict[str, Any] = {}
    try:
        for episode in range(1, config.episodes + 1):
            key, play_key, train_key = jax.random.split(key, 3)
            started = time.monotonic()
            games, trajectory, stats = play(train_state.params, games, play_key)
            buffer = add(buffer, trajectory, games)
            stats = jax.device_get(stats)
            selfplay_s = time.monotonic() - started
            positions_seen += config.positions_per_episode
            for name, value in stats.items():
                totals[name] += int(value)

            started = time.monotonic()
            train_metrics: dict[str, float] = {}
            if min(positions_seen, config.replay_capacity) >= config.batch_size:
                train_state, train_metrics = train(train_state, buffer, train_key)
                train_metrics = {name: float(value) for name, value in jax.device_get(train_metrics).items()}
            train_s = time.monotonic() - started
            step = int(train_state.step)

            finished = totals["games_finished"]
            record = {
                "step": step,
                "episode": episode,
                "games_finished": finished,
                "positions": positions_seen,
                **train_metrics,
                "learning_rate": float(schedule(max(step - 1, 0))),
                "selfplay_positions_per_s": config.positions_per_episode / selfplay_s,
                "train_steps_per_s": (config.optimizer_steps_per_episode / train_s) if train_metrics else 0.0,
                "train_samples_per_s": (config.micro_steps_per_episode * config.batch_size / train_s)
                if train_metrics else 0.0,
                "games": {name: totals[name] for name in ("white_wins", "black_wins", "draws", "truncated")},
                "mean_game_plies": (totals["ended_game_plies"] / (finished + totals["truncated"])
                                    if finished + totals["truncated"] else None),
                "replay_size": min(positions_seen, config.replay_capacity),
                "wall_time_s": time.monotonic() - run_started,
            }
            if episode % config.log_every == 0 or episode == config.episodes:
                writer.write(step, record)
            loss_text = f"loss {train_metrics['loss']:.3f}" if train_metrics else "loss -"
            progress.update(episode, f"step {step} | {loss_text} | {record['selfplay_positions_per_s']:.1f} pos/s "
                                     f"| games {finished}")
            due = episode % config.checkpoint_interval == 0 or episode == config.episodes
            if due and step not in manager.all_steps():  # no optimizer step since the last save: nothing new
                checkpoint.save(manager, train_state, key, {
                    "config": config.to_dict(), "episode": episode, "games_finished": finished,
                    "positions": positions_seen, "metrics": json.loads(json.dumps(record, default=float)),
                })
                writer.flush()
    finally:
        progress.close()
        manager.wait_until_finished()
        manager.close()
        writer.close()
    last = checkpoint.list_checkpoints(checkpoint_dir, config.job_id)[-1].path
    say(f"done: {config.episodes} episodes, {positions_seen} positions, {totals['games_finished']} games "
                f"finished, optimizer step {int(train_state.step)}; last checkpoint {last}")
    return RunResult(record, train_state.params, last)


def main(argv: Sequence[str] | None = None) -> int:
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    try:
        config, _ = load_config(argv)
        run(config)
    except (ConfigError, UsageError) as error:
        if debug:
            traceback.print_exc()
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # disk full, permissions, a folder that vanished: name it, no traceback
        if debug:
            traceback.print_exc()
        where = f": {error.filename}" if error.filename else ""
        print(f"{PROG}: error: {error.strerror or error}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
