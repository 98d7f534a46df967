"""`python -m chessbrain_jax.train`: the orchestrator. It owns the job's lifecycle and all I/O.

Per episode: one compiled self-play chunk (every parallel game plays `plies_per_episode` moves), one compiled replay
`add`, one compiled training chunk (`micro_steps_per_episode` sampled micro-batches), then -- on the host, between
compiled chunks -- metrics, progress and checkpoints. Nothing inside a chunk waits for the host.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import platform
import shutil
import signal
import sys
import threading
import time
import traceback
from importlib import metadata as importlib_metadata
from typing import Any, NamedTuple, Sequence

from chessbrain_jax.config import FIELDS, Config, ConfigError, flag_name, load_config, resolve_precision

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


def select_device(choice: str, config: Config | None = None):
    """Pins JAX to the requested platform before its backends start (joining a multi-process job first, when
    `config` asks for one: `distributed`); returns the devices of every process."""
    import jax

    from chessbrain_jax import distributed

    if choice != "auto":
        platforms = [_PLATFORMS[choice]]
        if config is not None and config.producer_workers and config.producer_device not in ("auto", choice):
            platforms.append(_PLATFORMS[config.producer_device])  # producers on another platform (e.g. the CPU)
        jax.config.update("jax_platforms", ",".join(platforms))
    if config is not None and choice in ("auto", "cpu"):
        split_cpu(config)
    if config is not None:
        try:
            distributed.initialize(config)
        except distributed.DistributedError as error:
            raise UsageError(str(error)) from None
    try:
        return jax.devices()
    except (RuntimeError, AssertionError):  # jax asserts, rather than raising, when no plugin provides the platform
        hint = " (install the extra: pip install 'chessbrain_jax[cuda12]')" if choice == "gpu" else ""
        raise UsageError(f"--device {choice}: no {choice.upper()} is available to JAX{hint}") from None


def cpu_device_count(config: Config, cores: int) -> int:
    """The CPU devices `--cpu-devices` asks for: N, or for 0 the largest count <= `cores` dividing both batches."""
    if config.cpu_devices:
        return config.cpu_devices
    return max(n for n in range(1, max(cores, 1) + 1)
               if config.selfplay_batch % n == 0 and config.batch_size % n == 0)


def split_cpu(config: Config) -> None:
    """Sets JAX's CPU device count from `--cpu-devices` before its backends start (XLA_FLAGS, if it forces a
    count, wins; so does a JAX already started in this process).

    With several CPU devices, XLA:CPU runs each collective as an in-process rendezvous and aborts the process when a
    device arrives 40 s late. Two such stalls on a 2-core host were deadlocks (every thread asleep), not slow devices:
    the loop now runs one multi-device program at a time (`DataParallel.one_program_at_a_time`), and the limit is
    set to 2 minutes, enough for a device slowed by a busy host, short enough that a stuck job ends soon (the last
    checkpoint is intact; `--resume` continues).
    """
    import jax

    flags = os.environ.get("XLA_FLAGS", "")
    forced = "xla_force_host_platform_device_count" in flags
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    count = 0 if forced else cpu_device_count(config, cores)
    if (forced or count > 1) and "xla_cpu_collective_call_terminate_timeout" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_cpu_collective_call_terminate_timeout_seconds=120".strip()
    if forced or count == max(jax.config.jax_num_cpu_devices, 1):
        return
    try:
        jax.config.update("jax_num_cpu_devices", count)
    except RuntimeError:
        say(f"note: --cpu-devices {config.cpu_devices}: JAX already started in this process; keeping its CPU "
            "devices")


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def prepare_folders(config: Config, resume: bool, overwrite: bool) -> tuple[str, str, bool]:
    """Creates `<log-dir>/<job-id>/` and the checkpoint folder. Returns (job dir, checkpoint dir, job existed).

    An existing job is refused unless `resume` (continue it) or `overwrite` (delete its metrics folder and
    checkpoints, then start again)."""
    from chessbrain_jax import checkpoint

    job_dir = os.path.abspath(os.path.join(config.log_dir, config.job_id))
    checkpoint_dir = os.path.abspath(config.checkpoint_dir)
    saved = checkpoint.list_checkpoints(checkpoint_dir, config.job_id) if os.path.isdir(checkpoint_dir) else []
    exists = bool(saved) or os.path.exists(os.path.join(job_dir, "metrics.jsonl"))
    if exists and overwrite:
        shutil.rmtree(job_dir, ignore_errors=True)
        for info in saved:
            shutil.rmtree(info.path)
        exists = False
    elif exists and not resume:
        raise UsageError(f"job {config.job_id!r} already exists ({len(saved)} checkpoints in {checkpoint_dir}, "
                         f"logs in {job_dir}); use --resume to continue it or --overwrite to start it again")
    elif exists:  # resuming: saves interrupted by a kill left temporary folders of this job; Orbax ignores them
        for leftover in glob.glob(os.path.join(glob.escape(checkpoint_dir), f"{glob.escape(config.job_id)}_step*"
                                               ".orbax-checkpoint-tmp*")):
            shutil.rmtree(leftover, ignore_errors=True)
    for folder, flag in ((job_dir, "--log-dir"), (checkpoint_dir, "--checkpoint-dir")):
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as error:
            raise UsageError(f"{flag}: cannot create {folder}: {error.strerror}") from None
        if not os.access(folder, os.W_OK):
            raise UsageError(f"{flag}: {folder} is not writable")
    if not exists:
        try:  # claim the job atomically: of two runs started with one job id, the second stops here
            open(os.path.join(job_dir, "metrics.jsonl"), "x", encoding="utf-8").close()
        except FileExistsError:
            raise UsageError(f"job {config.job_id!r} was just started by another run; choose another --job-id") \
                from None
    return job_dir, checkpoint_dir, exists


# Settings a resumed job may change; every other setting shapes the state or the math and stays the job's own.
RUN_CONTROLS = ("episodes", "checkpoint_interval", "keep_checkpoints", "log_every", "quiet", "log_dir",
                "checkpoint_dir", "device", "precision", "no_amp", "train_loop", "job_id", "producer_workers",
                "producer_queue_size", "producer_device", "profile", "cpu_devices", "coordinator_address",
                "num_processes", "process_id", "eval_interval", "eval_games", "eval_opponent", "eval_simulations",
                "selfplay_pgn_games")


def resumed_config(stored: Config, current: Config, explicit: set[str]) -> Config:
    """The job's stored settings with this invocation's run controls; an explicit change of any other is an error."""
    for name in sorted(explicit - set(RUN_CONTROLS)):
        if getattr(current, name) != getattr(stored, name):
            raise UsageError(f"--resume: {flag_name(name)} {getattr(current, name)} differs from the job's "
                             f"{getattr(stored, name)}; a resumed job keeps its settings (only "
                             f"{', '.join(flag_name(n) for n in RUN_CONTROLS[:4])}, ... may change)")
    return dataclasses.replace(stored, **{name: getattr(current, name) for name in RUN_CONTROLS})


def keep_metrics_up_to(path: str, last_episode: int) -> int:
    """Rewrites `metrics.jsonl` (atomically) without records after `last_episode` or torn lines; returns how many
    records it dropped. Records written after the checkpoint a job resumes from would otherwise repeat."""
    kept, dropped = [], 0
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                dropped += 1
                continue
            if isinstance(record, dict) and record.get("episode", 0) <= last_episode:
                kept.append(line if line.endswith("\n") else line + "\n")
            else:
                dropped += 1
    from chessbrain_jax.metrics import write_text_atomically

    write_text_atomically(path, "".join(kept))
    return dropped


class GracefulStop:
    """SIGINT/SIGTERM ask the loop to stop after the current episode (with a checkpoint); a second SIGINT aborts."""

    def __init__(self):
        self.requested: str | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, number, frame):
        name = signal.Signals(number).name
        if self.requested and number == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = name
        say(f"{name}: finishing the current episode, then saving a checkpoint (Ctrl-C again to abort)")

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for number in (signal.SIGINT, signal.SIGTERM):
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc_info):
        for number, handler in self._previous.items():
            signal.signal(number, handler)


class CheckpointWriteError(Exception):
    """A checkpoint could not be written (disk full, file size limit, I/O error); earlier ones are intact."""


def checkpoint_write_error(folder: str, error: BaseException) -> CheckpointWriteError:
    """One line naming the folder and the system's reason (Orbax reports it deep inside a tensorstore message)."""
    import re

    text = str(error)
    code = re.search(r"os_error_code='(\d+)'", text)
    reason = os.strerror(int(code[1])) if code else (text.splitlines() or [type(error).__name__])[0][:200]
    return CheckpointWriteError(f"checkpoint {folder} could not be written ({reason}); earlier checkpoints are intact "
                                "and an unfinished one is ignored: make room, then continue with --resume")


def quiet_failed_write_reports() -> None:
    """Keeps a failed asynchronous save from flooding stderr; the caller reports the failure in one line instead.

    When a write fails (disk full), Orbax's writer threads log the tensorstore error with tracebacks through absl,
    and tensorstore's callbacks into the closed asyncio loops of those threads raise "Event loop is closed", which
    Python prints as unraisable exceptions. The error itself still surfaces from `wait_until_finished`.
    """
    import logging

    def from_orbax(record: logging.LogRecord) -> bool:
        if str(record.msg).startswith("[process="):  # Orbax's prefix on its own log lines
            return True
        frame = record.exc_info[2] if record.exc_info else None
        while frame is not None:
            if f"{os.sep}orbax{os.sep}" in frame.tb_frame.f_code.co_filename:
                return True
            frame = frame.tb_next
        return False

    def orbax_errors(record: logging.LogRecord) -> bool:
        return not (record.levelno >= logging.ERROR and from_orbax(record))

    logging.getLogger("absl").addFilter(orbax_errors)
    default = sys.unraisablehook

    def closed_loops(unraisable) -> None:
        if not (unraisable.exc_type is RuntimeError and str(unraisable.exc_value) == "Event loop is closed"):
            default(unraisable)

    sys.unraisablehook = closed_loops


class TrainingDiverged(Exception):
    """Every update of an episode had a non-finite gradient; the last good state was checkpointed."""


_voice = {"on": True}


def say(message: str) -> None:
    if not _voice["on"]:
        return
    print(f"[{PROG}] {message}", file=sys.stderr, flush=True)


def _changed(config: Config, names: Sequence[str]) -> list[str]:
    return [f"{flag_name(name)} {getattr(config, name)}" for name in names
            if getattr(config, name) != FIELDS[name].default]


def start_up_notes(config: Config) -> list[str]:
    """Settings the user gave that this run does not use, said out loud rather than silently ignored."""
    notes = []
    producer = _changed(config, ("producer_queue_size", "producer_device"))
    if producer and not config.producer_workers:
        notes.append(f"{', '.join(producer)}: used with --producer-workers > 0 only; this run is synchronous")
    if config.search == "gumbel":
        puct_only = _changed(config, ("mcts_cpuct", "dirichlet_alpha", "dirichlet_fraction", "temperature_plies"))
        if puct_only:
            notes.append(f"{', '.join(puct_only)}: used by --search puct only; this run uses gumbel")
    return notes


def _stored_config(manager, steps: list[int], fallback: Config) -> Config:
    """The job's settings from the newest checkpoint whose metadata reads (`fallback` if none does)."""
    from chessbrain_jax import checkpoint

    for step in sorted(steps, reverse=True):
        try:
            return checkpoint.config_from_meta(checkpoint.read_meta(manager, step))
        except (KeyError, ValueError, TypeError, OSError):
            continue
    return fallback


def _check_run_format(manager, steps: list[int], config: Config) -> None:
    """Refuses, in one line, to resume checkpoints whose games and replay layout this version cannot read."""
    from chessbrain_jax import checkpoint

    try:
        found = checkpoint.read_meta(manager, max(steps)).get("run_format", 1)
    except (KeyError, ValueError, TypeError, OSError):
        return  # unreadable: `_restore_latest_good` falls back to an older checkpoint
    if found != checkpoint.RUN_FORMAT:
        raise UsageError(f"--resume: job {config.job_id!r} was saved with replay layout {found} by an older "
                         f"chessbrain_jax (this one uses {checkpoint.RUN_FORMAT}); its networks still load for play "
                         "(arena, uci, registry), but training must start a new job")


def _restore_latest_good(manager, steps: list[int], config: Config, parallel):
    """(step, train state, rng, run state, meta) of the newest checkpoint that restores, placed on `parallel`'s mesh
    (any device count that divides the batch); older ones are fallbacks."""
    from chessbrain_jax import checkpoint, sharding

    for step in sorted(steps, reverse=True):
        try:
            train_state, rng, meta = checkpoint.restore(manager, step, config,
                                                        parallel.sharding(sharding.REPLICATED))
            run_state = checkpoint.restore_run(manager, step, config, parallel.sharding(sharding.GAMES),
                                               parallel.sharding(sharding.BUFFER))
            return step, train_state, rng, run_state, meta
        except (KeyError, ValueError, TypeError, OSError) as error:
            reason = str(error).splitlines()[0][:160] if str(error) else type(error).__name__
            say(f"warning: checkpoint {config.job_id}_step{step} cannot be restored ({reason}); "
                "trying the previous one")
    raise UsageError(f"--resume: none of the {len(steps)} checkpoints of job {config.job_id!r} can be restored")


class NoWriter:
    """Stands in for `MetricsWriter` in processes other than 0 of a multi-process job."""

    def write(self, step: int, record: dict) -> None:
        pass

    flush = close = lambda self: None  # noqa: E731


class SynchronousSelfPlay:
    """The default loop's self-play (`--producer-workers 0`): every episode, all games play one chunk with the
    current parameters on the data-parallel mesh, and their positions go straight into the replay buffer."""

    mode = "synchronous"

    def __init__(self, play, add, games, wait: bool = False):
        self._play, self._add, self.games, self._wait = play, add, games, wait

    def episode(self, params, buffer, key, step: int):
        """Returns (buffer, stats, trajectories whose first columns are slots 0.., metrics); stats are replicated
        device counters; nothing waits for the device unless `wait` (then each program finishes before the next)."""
        import jax

        self.games, trajectory, stats = self._play(params, self.games, key)
        if self._wait:
            jax.block_until_ready(stats)
        buffer = self._add(buffer, trajectory, self.games)
        if self._wait:
            jax.block_until_ready(buffer)
        return buffer, stats, [trajectory], {}

    def publish(self, params, step: int) -> None:
        pass

    def close(self, buffer):
        return buffer, 0, {}

    def abort(self) -> None:
        pass


def run(config: Config, resume: bool = False, overwrite: bool = False, explicit: set[str] | None = None) -> RunResult:
    """Runs (or, with `resume`, continues) the job described by `config`."""
    devices = select_device(config.device, config)
    import jax

    from chessbrain_jax import checkpoint, distributed, evaluation, learner, model, replay, selfplay, sharding
    from chessbrain_jax.arena import ArenaError
    from chessbrain_jax.metrics import MetricsWriter, Progress, write_json_atomically

    backend = devices[0].platform
    writer_process = distributed.is_writer()
    processes = jax.process_count()
    if writer_process:
        job_dir, checkpoint_dir, exists = prepare_folders(config, resume, overwrite)
    else:
        job_dir = os.path.abspath(os.path.join(config.log_dir, config.job_id))
        checkpoint_dir, exists = os.path.abspath(config.checkpoint_dir), False
    exists = bool(distributed.broadcast(int(exists)))
    distributed.barrier("chessbrain_jax folders ready")
    manager = checkpoint.make_manager(checkpoint_dir, config.job_id, keep=config.keep_checkpoints)
    steps = list(manager.all_steps()) if exists else []
    if steps:
        config = resumed_config(_stored_config(manager, steps, config), config, explicit or set())
        _check_run_format(manager, steps, config)
    elif resume:
        say(f"--resume: job {config.job_id} has no checkpoints yet; starting it")
        if exists and writer_process:  # killed before its first checkpoint: its metrics would repeat
            keep_metrics_up_to(os.path.join(job_dir, "metrics.jsonl"), 0)
    learner_devices, producer_devices = devices, []
    if config.producer_workers:
        from chessbrain_jax import producers

        if processes > 1:
            raise UsageError("--producer-workers: producer/consumer mode runs in one process; a multi-process job "
                             "is data parallel (use --producer-workers 0)")
        try:
            producer_devices, learner_devices = producers.assign_devices(config, devices)
        except producers.ProducerError as error:
            raise UsageError(str(error)) from None
    try:
        parallel = sharding.DataParallel(config, learner_devices)
    except ValueError as error:
        raise UsageError(str(error)) from None
    dtype, why = resolve_precision(config, backend)
    _voice["on"] = writer_process  # one voice per job: process 0's
    where = f" in {processes} processes" if processes > 1 else ""
    say(f"job {config.job_id}: {len(devices)} {backend} device(s){where} ({devices[0].device_kind}); "
        f"logs {job_dir}; checkpoints {checkpoint_dir}/{config.job_id}_step<N>")
    say(f"devices: {'learner: ' if producer_devices else ''}{parallel.describe()}")
    say(f"precision: {dtype} ({why})")
    say(f"episode = {config.selfplay_batch} parallel games x {config.plies_per_episode} plies = "
        f"{config.positions_per_episode} positions, then {config.optimizer_steps_per_episode} optimizer "
        f"steps ({config.micro_steps_per_episode} micro-batches of {config.batch_size}); "
        f"search {config.search} with {config.mcts_simulations} simulations")
    for note in start_up_notes(config):
        say(f"note: {note}")

    network = model.make_network(config, dtype)
    apply_fn = model.make_apply(network)
    optimizer = learner.make_optimizer(config)
    schedule = learner.learning_rate_schedule(config)
    replicated = parallel.sharding(sharding.REPLICATED)
    first_episode, positions_seen, totals = 1, 0, dict.fromkeys(selfplay.EPISODE_STATS, 0)
    split = jax.jit(lambda k: tuple(jax.random.split(k, 3)), out_shardings=replicated)
    if steps:
        step, train_state, key, run_state, meta = _restore_latest_good(manager, steps, config, parallel)
        games, buffer = run_state
        first_episode, positions_seen = int(meta["episode"]) + 1, int(meta["positions"])
        totals.update({name: int(value) for name, value in meta["totals"].items() if name in totals})
        dropped = keep_metrics_up_to(os.path.join(job_dir, "metrics.jsonl"), int(meta["episode"])) \
            if writer_process else 0
        say(f"resuming after episode {meta['episode']} from {config.job_id}_step{step}"
            + (f" ({dropped} later metrics records dropped)" if dropped else ""))
    else:
        key = parallel.replicate(jax.random.PRNGKey(config.seed))
        key, init_key = jax.jit(lambda k: tuple(jax.random.split(k)), out_shardings=replicated)(key)
        train_state = jax.jit(lambda k: learner.init_train_state(model.init_params(network, k), optimizer),
                              out_shardings=replicated)(init_key)
        games = parallel.init_games()
        buffer = parallel.init_buffer()
    evaluator = recorder = None
    if config.eval_interval and writer_process:
        try:
            evaluator = evaluation.Evaluator(config, apply_fn, sharding.on_one_device(train_state.params), job_dir)
        except ArenaError as error:
            raise UsageError(f"--eval-opponent: {error}") from None
        say(f"evaluation: every {config.eval_interval} episodes, {config.eval_games} games of "
            f"{evaluator.learner.description} against {evaluation.arena.describe(evaluator.opponent)}")
    if config.selfplay_pgn_games and writer_process:
        in_progress = sharding.first_columns(games.generation, config.selfplay_pgn_games) if steps else None
        recorder = evaluation.SelfPlayRecorder(config, job_dir, in_progress)
        if steps:
            recorder.keep_up_to(first_episode - 1)
    if writer_process:
        write_json_atomically(os.path.join(job_dir, "run.json"), {
            "job_id": config.job_id,
            "config": config.to_dict(),
            "versions": library_versions(),
            "devices": [str(device) for device in devices],
            "backend": backend,
            "processes": processes,
            "parallelism": {"mode": "producer/consumer" if producer_devices else "synchronous",
                            "producers": [str(device) for device in producer_devices],
                            "devices": parallel.size, "processes": processes,
                            "games_per_device": parallel.local.selfplay_batch,
                            "samples_per_device": parallel.local.batch_size, "summary": parallel.describe(),
                            "one_program_at_a_time": parallel.one_program_at_a_time},
            "precision": {"compute_dtype": dtype, "reason": why, "params_dtype": "float32"},
            "command": sys.argv,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "resumed_from_episode": first_episode - 1 if steps else None,
        })

    compile_started = time.monotonic()
    if producer_devices:
        key, producer_key = split(key)[:2]
        source = producers.ProducerPool(config, apply_fn, producer_devices, games, train_state.params,
                                        _step(train_state), producer_key,
                                        jax.jit(replay.add, donate_argnums=0), parallel.replicate)
        say(f"producers: {source.describe()}")
    else:
        play_episode = parallel.play_episode(apply_fn)
        play = jax.jit(play_episode, donate_argnums=1).lower(train_state.params, games, key).compile()
        _, trajectory_shape, _ = jax.eval_shape(play_episode, train_state.params, games, key)
        add = jax.jit(parallel.add(), donate_argnums=0).lower(buffer, trajectory_shape, games).compile()
        source = SynchronousSelfPlay(play, add, games, wait=parallel.one_program_at_a_time)
    selfplay_compile_s = time.monotonic() - compile_started
    compile_started = time.monotonic()
    train = learner.TrainChunk(config, apply_fn, optimizer, learner.resolve_train_loop(config, backend), parallel,
                               wait=parallel.one_program_at_a_time)
    train.compile(train_state, buffer, key)
    train_compile_s = time.monotonic() - compile_started
    say(f"compiled self-play in {selfplay_compile_s:.1f}s, replay+training in {train_compile_s:.1f}s "
        f"(training loop: {train.loop})")

    writer = (MetricsWriter(job_dir, purge_step=_step(train_state) + 1 if steps else (0 if exists else None))
              if writer_process else NoWriter())
    progress = Progress(config.episodes, quiet=config.quiet, done=first_episode - 1, silent=not writer_process)
    run_started = time.monotonic()
    record: dict[str, Any] = {}
    stop = GracefulStop()

    def save(episode: int) -> None:
        if _step(train_state) in manager.all_steps():  # no optimizer step since the last save: nothing new
            return
        try:
            manager.wait_until_finished()  # the previous asynchronous save: report its failure, not a later one
        except Exception as error:
            raise checkpoint_write_error(checkpoint_dir, error) from error
        folder = os.path.join(checkpoint_dir, f"{config.job_id}_step{_step(train_state)}")
        try:
            _save_now(episode)
        except Exception as error:
            raise checkpoint_write_error(folder, error) from error
        writer.flush()

    def _save_now(episode: int) -> None:
        checkpoint.save(manager, train_state, key, checkpoint.RunState(source.games, buffer), {
            "config": config.to_dict(), "episode": episode, "games_finished": totals["games_finished"],
            "positions": positions_seen, "totals": totals, "metrics": json.loads(json.dumps(record, default=float)),
        })

    write_failed = False
    try:
        with stop:
            for episode in range(first_episode, config.episodes + 1):
                key, play_key, train_key = split(key)
                profiling = config.profile and episode == min(first_episode + 1, config.episodes) and writer_process
                if profiling:
                    jax.profiler.start_trace(job_dir)
                started = time.monotonic()
                buffer, stats, trajectories, source_metrics = source.episode(
                    train_state.params, buffer, play_key, _step(train_state))
                stats = sharding.fetch(stats)
                if recorder is not None:
                    for trajectory in trajectories:
                        count = min(config.selfplay_pgn_games, trajectory.action.shape[1])
                        recorder.record(sharding.first_columns(trajectory.action, count),
                                        sharding.first_columns(trajectory.position.generation, count), episode)
                selfplay_s = time.monotonic() - started
                positions_seen += config.positions_per_episode
                for name, value in stats.items():
                    totals[name] += int(value)

                started = time.monotonic()
                train_metrics: dict[str, float] = {}
                if min(positions_seen, config.replay_capacity) >= config.batch_size:
                    train_state, train_metrics = train(train_state, buffer, train_key)
                    train_metrics = {name: float(value) for name, value in sharding.fetch(train_metrics).items()}
                    source.publish(train_state.params, _step(train_state))
                train_s = time.monotonic() - started
                if profiling:
                    jax.profiler.stop_trace()
                    say(f"profiler trace of episode {episode} written under {job_dir}/plugins/profile/")
                step = _step(train_state)
                skipped = round(train_metrics.pop("nonfinite_skipped", 0.0) * config.micro_steps_per_episode)

                finished = totals["games_finished"]
                record = {
                    "step": step,
                    "episode": episode,
                    "games_finished": finished,
                    "positions": positions_seen,
                    **train_metrics,
                    "nonfinite_skipped": skipped,
                    "learning_rate": float(schedule(max(step - 1, 0))),
                    "selfplay_positions_per_s": source_metrics.get("producer", {}).get(
                        "positions_per_s", config.positions_per_episode / selfplay_s),
                    "train_steps_per_s": (config.optimizer_steps_per_episode / train_s) if train_metrics else 0.0,
                    "train_samples_per_s": (config.micro_steps_per_episode * config.batch_size / train_s)
                    if train_metrics else 0.0,
                    "games": {name: totals[name]
                              for name in ("white_wins", "black_wins", "draws", "truncated", "adjudicated_wins")},
                    "mean_game_plies": (totals["ended_game_plies"] / (finished + totals["truncated"])
                                        if finished + totals["truncated"] else None),
                    "replay_size": min(positions_seen, config.replay_capacity),
                    **source_metrics,
                    "wall_time_s": time.monotonic() - run_started,
                }
                stopping = distributed.any_process(bool(stop.requested))  # every process stops after one episode
                evaluated = evaluator is not None and evaluator.due(episode) and not stopping
                if evaluated:
                    record["eval"] = evaluator(sharding.on_one_device(train_state.params), step, episode)
                    result = record["eval"]
                    say(f"eval after episode {episode} (step {step}): +{result['wins']} ={result['draws']} "
                        f"-{result['losses']} against {result['opponent']}, score {result['score']:.2f}")
                if episode % config.log_every == 0 or episode == config.episodes or stopping or evaluated:
                    writer.write(step, record)
                loss = train_metrics.get("loss")
                loss_text = f"loss {loss:.3f}" if loss is not None else "loss -"
                progress.update(episode, f"step {step} | {loss_text} | {record['selfplay_positions_per_s']:.1f} "
                                         f"pos/s | games {finished}")
                if train_metrics and skipped == config.micro_steps_per_episode:
                    save(episode)
                    raise TrainingDiverged(
                        f"every update of episode {episode} had a non-finite loss or gradient; the last good state "
                        f"is checkpointed as {config.job_id}_step{step}; lower --learning-rate or "
                        "--grad-clip before resuming")
                if episode == config.episodes or stopping:  # producers stop; queued chunks join the buffer
                    buffer, drained, drained_stats = source.close(buffer)
                    positions_seen += drained * config.positions_per_episode // max(config.producer_workers, 1)
                    for name, value in drained_stats.items():
                        totals[name] += value
                    if drained:
                        say(f"producers stopped; {drained} queued chunks added to the replay buffer")
                if episode % config.checkpoint_interval == 0 or episode == config.episodes or stopping:
                    save(episode)
                if stopping:
                    say(f"stopped by {stop.requested or 'another process'} after episode {episode}; "
                        "continue with --resume")
                    break
    except CheckpointWriteError:
        write_failed = True
        raise
    finally:
        source.abort()
        progress.close()
        if evaluator is not None:
            evaluator.close()
        try:
            manager.wait_until_finished()
            manager.close()
        except Exception as error:
            if not write_failed:  # otherwise that failure is already on its way out
                raise checkpoint_write_error(checkpoint_dir, error) from error
        finally:
            writer.close()
    saved = checkpoint.list_checkpoints(checkpoint_dir, config.job_id)
    last = saved[-1].path if saved else ""
    if not stop.requested:
        say(f"done: {config.episodes} episodes, {positions_seen} positions, {totals['games_finished']} games "
            f"finished, optimizer step {_step(train_state)}; last checkpoint {last}")
    return RunResult(record, sharding.fetch(train_state.params), last)


def _step(train_state) -> int:
    """The optimizer step as a Python int (read from this process's replica)."""
    from chessbrain_jax import sharding

    return int(sharding.fetch(train_state.step))


def main(argv: Sequence[str] | None = None) -> int:
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    if not debug:
        quiet_failed_write_reports()
    try:
        config, options = load_config(argv)
        run(config, resume=options["resume"], overwrite=options["overwrite"], explicit=options["explicit"])
    except (ConfigError, UsageError) as error:
        if debug:
            traceback.print_exc()
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    except TrainingDiverged as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 1
    except CheckpointWriteError as error:
        if debug:
            traceback.print_exc()
        print(f"{PROG}: error: {error}", file=sys.stderr)
        sys.stderr.flush()
        os._exit(1)  # Orbax's writer threads would report the failure again while the interpreter shuts down
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
