"""The orchestrator: one training job from start to its last checkpoint, as a handful of named steps.

Per episode: one compiled self-play chunk (every parallel game plays `plies_per_episode` moves), one compiled replay
`add`, one compiled training chunk (`micro_steps_per_episode` sampled micro-batches), then -- on the host, between
compiled chunks -- metrics, progress and checkpoints (`loop`). Nothing inside a chunk waits for the host.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, NamedTuple

from chessbrain_jax.config import Config, resolve_precision
from chessbrain_jax.run import budget
from chessbrain_jax.run import job as jobs
from chessbrain_jax.run import state as states
from chessbrain_jax.run.console import UsageError, say, set_voice
from chessbrain_jax.run.devices import select_device


class RunResult(NamedTuple):
    """What a finished job leaves: its last metrics record, final float32 params and last checkpoint folder."""

    record: dict[str, Any]
    params: Any
    checkpoint_path: str


@dataclasses.dataclass
class Job:
    """A started job: its settings (the stored ones on resume), devices, folders, checkpoint manager and the steps
    it has saved, the data-parallel mesh and the compute dtype (`why`: the reason for it)."""

    config: Config
    devices: list
    writer_process: bool
    job_dir: str
    checkpoint_dir: str
    exists: bool
    manager: Any
    steps: list[int]
    parallel: Any = None
    producer_devices: list = dataclasses.field(default_factory=list)
    dtype: str = "float32"
    why: str = ""

    @property
    def backend(self) -> str:
        return self.devices[0].platform


def start_job(config: Config, resume: bool, overwrite: bool, explicit: set[str]) -> Job:
    """Devices, folders (process 0 creates them), the checkpoint manager, and on resume the job's own settings."""
    devices = select_device(config.device, config)  # before anything starts JAX's backends (pgx, Orbax do)
    from chessbrain_jax.run.sources import start_pool
    from chessbrain_jax.scale import distributed
    from chessbrain_jax.storage import checkpoint

    start_pool(config)  # a bad --selfplay-starts file stops the run before it makes folders

    problems = budget.start_up_problems(config, devices)
    if problems:
        raise UsageError(f"the run does not fit: {problems[0]} (python -m chessbrain_jax.plan shows the figures)")
    writer_process = distributed.is_writer()
    if writer_process:
        job_dir, checkpoint_dir, exists = jobs.prepare_folders(config, resume, overwrite)
    else:
        (job_dir, checkpoint_dir), exists = jobs.job_folders(config), False
    exists = bool(distributed.broadcast(int(exists)))
    distributed.barrier("chessbrain_jax folders ready")
    manager = checkpoint.make_manager(checkpoint_dir, config.job_id, keep=config.keep_checkpoints)
    steps = list(manager.all_steps()) if exists else []
    if steps:
        config = jobs.resumed_config(states.stored_config(manager, steps, config), config, explicit)
        states.check_run_format(manager, steps, config)
    else:
        config = jobs.with_lr_horizon(config)
        if resume:
            say(f"--resume: job {config.job_id} has no checkpoints yet; starting it")
            if exists and writer_process:  # killed before its first checkpoint: its metrics would repeat
                jobs.keep_metrics_up_to(states.metrics_path(job_dir), 0)
    job = Job(config, devices, writer_process, job_dir, checkpoint_dir, exists, manager, steps)
    place_on_devices(job)
    return job


def place_on_devices(job: Job) -> None:
    """The learner's data-parallel mesh, the producers' devices (`--producer-workers`) and the compute dtype."""
    import jax

    from chessbrain_jax.scale import sharding

    learner_devices = job.devices
    if job.config.producer_workers:
        from chessbrain_jax.scale import producers

        if jax.process_count() > 1:
            raise UsageError("--producer-workers: producer/consumer mode runs in one process; a multi-process job "
                             "is data parallel (use --producer-workers 0)")
        try:
            job.producer_devices, learner_devices = producers.assign_devices(job.config, job.devices)
        except producers.ProducerError as error:
            raise UsageError(str(error)) from None
    try:
        job.parallel = sharding.DataParallel(job.config, learner_devices)
    except ValueError as error:
        raise UsageError(str(error)) from None
    job.dtype, job.why = resolve_precision(job.config, job.backend)


def announce(job: Job) -> None:
    """The start-up lines: devices, folders, precision, what an episode is, and settings this run ignores."""
    import jax

    config, devices = job.config, job.devices
    set_voice(job.writer_process)  # one voice per job: process 0's
    where = f" in {jax.process_count()} processes" if jax.process_count() > 1 else ""
    say(f"job {config.job_id}: {len(devices)} {job.backend} device(s){where} ({devices[0].device_kind}); "
        f"logs {job.job_dir}; checkpoints {job.checkpoint_dir}/{config.job_id}_step<N>")
    say(f"devices: {'learner: ' if job.producer_devices else ''}{job.parallel.describe()}")
    say(f"precision: {job.dtype} ({job.why})")
    say(f"episode = {config.selfplay_batch} parallel games x {config.plies_per_episode} plies = "
        f"{config.positions_per_episode} positions, then {config.optimizer_steps_per_episode} optimizer "
        f"steps ({config.micro_steps_per_episode} micro-batches of {config.batch_size}); "
        f"search {config.search} with {config.mcts_simulations} simulations")
    for note in jobs.start_up_notes(config):
        say(f"note: {note}")


class Observers(NamedTuple):
    """What watches the run from process 0, each None when its flag is off: arena evaluation, self-play PGN
    recorder, probe-set diagnostics."""

    evaluator: Any = None
    recorder: Any = None
    probes: Any = None


def make_observers(job: Job, apply_fn, start: states.StartState) -> Observers:
    """The observers `job`'s flags ask for (none outside process 0)."""
    from chessbrain_jax.play import evaluation
    from chessbrain_jax.play.arena import ArenaError
    from chessbrain_jax.scale import sharding

    config, evaluator, recorder = job.config, None, None
    if not job.writer_process:
        return Observers()
    if config.eval_interval:
        try:
            evaluator = evaluation.Evaluator(config, apply_fn, sharding.on_one_device(start.train_state.params),
                                             job.job_dir)
        except ArenaError as error:
            raise UsageError(f"--eval-opponent: {error}") from None
        say(f"evaluation: every {config.eval_interval} episodes, {config.eval_games} games of "
            f"{evaluator.learner.description} against {evaluation.arena.describe(evaluator.opponent)}")
    if config.selfplay_pgn_games:
        resumed = start.resumed_step is not None
        in_progress = sharding.first_columns(start.games.generation, config.selfplay_pgn_games) if resumed else None
        recorder = evaluation.SelfPlayRecorder(config, job.job_dir, in_progress)
        if resumed:
            recorder.keep_up_to(start.first_episode - 1)
    probes = None
    if config.probe_interval:
        from chessbrain_jax.play.diagnostics import Diagnostics

        probes = Diagnostics(apply_fn)
        say(f"diagnostics: every {config.probe_interval} episodes on {len(probes.probes.best)} probe positions")
    return Observers(evaluator, recorder, probes)


def write_run_description(job: Job, start: states.StartState) -> None:
    """`run.json`, from process 0."""
    import jax

    from chessbrain_jax.storage.metrics import write_json_atomically

    if not job.writer_process:
        return
    parallel, processes = job.parallel, jax.process_count()
    write_json_atomically(os.path.join(job.job_dir, "run.json"), jobs.run_description(job.config, {
        "devices": [str(device) for device in job.devices],
        "backend": job.backend,
        "processes": processes,
        "parallelism": {"mode": "producer/consumer" if job.producer_devices else "synchronous",
                        "producers": [str(device) for device in job.producer_devices],
                        "devices": parallel.size, "processes": processes,
                        "games_per_device": parallel.local.selfplay_batch,
                        "samples_per_device": parallel.local.batch_size, "summary": parallel.describe(),
                        "one_program_at_a_time": parallel.one_program_at_a_time},
        "precision": {"compute_dtype": job.dtype, "reason": job.why, "params_dtype": "float32"},
    }, start.first_episode - 1 if start.resumed_step is not None else None))


def compile_programs(job: Job, apply_fn, optimizer, start: states.StartState, split):
    """(episode source, training chunk, key): every program of the loop compiled before the first episode."""
    from chessbrain_jax.core import learner
    from chessbrain_jax.run.sources import compile_source

    started = time.monotonic()
    source, key = compile_source(job, apply_fn, start, split)
    if job.producer_devices:
        say(f"producers: {source.describe()}")
    selfplay_s = time.monotonic() - started
    started = time.monotonic()
    train = learner.TrainChunk(job.config, apply_fn, optimizer, learner.resolve_train_loop(job.config, job.backend),
                               job.parallel, wait=job.parallel.one_program_at_a_time)
    train.compile(start.train_state, start.buffer, key)
    say(f"compiled self-play in {selfplay_s:.1f}s, replay+training in {time.monotonic() - started:.1f}s "
        f"(training loop: {train.loop})")
    return source, train, key


def run(config: Config, resume: bool = False, overwrite: bool = False, explicit: set[str] | None = None) -> RunResult:
    """Runs (or, with `resume`, continues) the job described by `config`."""
    job = start_job(config, resume, overwrite, explicit or set())  # first: it pins the platform
    import jax

    from chessbrain_jax.core import learner, model
    from chessbrain_jax.scale import sharding

    announce(job)
    network = model.make_network(job.config, job.dtype)
    apply_fn, optimizer = model.make_apply(network), learner.make_optimizer(job.config)
    metrics_file = states.metrics_path(job.job_dir) if job.writer_process else None
    start = states.restore(job, metrics_file) if job.steps else states.initialise(job, network, optimizer)
    observers = make_observers(job, apply_fn, start)
    write_run_description(job, start)
    split = jax.jit(lambda k: tuple(jax.random.split(k, 3)), out_shardings=job.parallel.sharding(sharding.REPLICATED))
    source, train, start.key = compile_programs(job, apply_fn, optimizer, start, split)
    loop = episode_loop(job, start, source, train, split, observers)
    with_cleanup(loop, observers)
    return finish(job, loop)


def episode_loop(job: Job, start: states.StartState, source, train, split, observers):
    """The loop with its metrics writer (TensorBoard hides a resumed job's stale events) and progress line."""
    from chessbrain_jax.core import learner
    from chessbrain_jax.run.loop import EpisodeLoop
    from chessbrain_jax.storage.metrics import MetricsWriter, NoWriter, Progress

    if job.writer_process:
        purge = states.step_of(start.train_state) + 1 if job.steps else (0 if job.exists else None)
        writer = MetricsWriter(job.job_dir, purge_step=purge)
    else:
        writer = NoWriter()
    progress = Progress(job.config.episodes, quiet=job.config.quiet, done=start.first_episode - 1,
                        silent=not job.writer_process)
    return EpisodeLoop(job, start, source, train, learner.learning_rate_schedule(job.config), split, observers,
                       writer, progress)


def with_cleanup(loop, observers) -> None:
    """Runs the loop under the stop signals; whatever happens, stops the producers and the evaluator, waits for
    the last checkpoint and closes the metrics."""
    evaluator = observers.evaluator
    try:
        with loop.stop:
            loop.run()
    finally:
        loop.source.abort()
        loop.progress.close()
        if evaluator is not None:
            evaluator.close()
        try:
            loop.saver.close()
        finally:
            loop.writer.close()


def finish(job: Job, loop) -> RunResult:
    """The closing line and what the run leaves."""
    from chessbrain_jax.scale import sharding
    from chessbrain_jax.storage import checkpoint

    saved = checkpoint.list_checkpoints(job.checkpoint_dir, job.config.job_id)
    last = saved[-1].path if saved else ""
    if not loop.stop.requested:
        say(f"done: {job.config.episodes} episodes, {loop.positions_seen} positions, "
            f"{loop.totals['games_finished']} games finished, optimizer step {loop.step}; last checkpoint {last}")
    return RunResult(loop.record, sharding.fetch(loop.train_state.params), last)
