"""A job's folders, its settings across resumes, and what it writes about itself (`run.json`)."""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import platform
import shutil
import sys
import time
from importlib import metadata as importlib_metadata
from typing import Any, Sequence

from chessbrain_jax.config import FIELDS, Config, flag_name
from chessbrain_jax.run.console import UsageError

_VERSIONED = ("jax", "jaxlib", "flax", "optax", "mctx", "pgx", "orbax-checkpoint", "tensorboardX", "chess")

# Settings a resumed job may change; every other setting shapes the state or the math and stays the job's own.
RUN_CONTROLS = ("episodes", "checkpoint_interval", "keep_checkpoints", "keep_replay", "log_every", "quiet", "log_dir",
                "checkpoint_dir", "device", "precision", "no_amp", "train_loop", "job_id", "producer_workers",
                "producer_queue_size", "producer_device", "profile", "compile_cache", "cpu_devices",
                "coordinator_address", "num_processes", "process_id", "eval_interval", "eval_games", "eval_opponent",
                "eval_simulations", "probe_interval", "selfplay_pgn_games")


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def job_folders(config: Config) -> tuple[str, str]:
    """(`<log-dir>/<job-id>`, checkpoint folder), absolute."""
    return os.path.abspath(os.path.join(config.log_dir, config.job_id)), os.path.abspath(config.checkpoint_dir)


def prepare_folders(config: Config, resume: bool, overwrite: bool) -> tuple[str, str, bool]:
    """Creates `<log-dir>/<job-id>/` and the checkpoint folder. Returns (job dir, checkpoint dir, job existed).

    An existing job is refused unless `resume` (continue it) or `overwrite` (delete its metrics folder and
    checkpoints, then start again)."""
    from chessbrain_jax.storage import checkpoint

    job_dir, checkpoint_dir = job_folders(config)
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
    _make_writable(((job_dir, "--log-dir"), (checkpoint_dir, "--checkpoint-dir")))
    if not exists:
        try:  # claim the job atomically: of two runs started with one job id, the second stops here
            open(os.path.join(job_dir, "metrics.jsonl"), "x", encoding="utf-8").close()
        except FileExistsError:
            raise UsageError(f"job {config.job_id!r} was just started by another run; choose another --job-id") \
                from None
    return job_dir, checkpoint_dir, exists


def _make_writable(folders: Sequence[tuple[str, str]]) -> None:
    for folder, flag in folders:
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as error:
            raise UsageError(f"{flag}: cannot create {folder}: {error.strerror}") from None
        if not os.access(folder, os.W_OK):
            raise UsageError(f"{flag}: {folder} is not writable")


def with_lr_horizon(config: Config) -> Config:
    """`config` with a concrete `lr_decay_episodes`: 0 becomes `episodes`. Applied to a new job's settings (its horizon
    is the --episodes it starts with) and to stored ones (a checkpoint written before the setting existed decays
    over the episodes it was saved with), so the schedule is the job's own and survives a --resume with more
    --episodes, which is a run control."""
    return dataclasses.replace(config, lr_decay_episodes=config.lr_decay_episodes or config.episodes)


def resumed_config(stored: Config, current: Config, explicit: set[str]) -> Config:
    """The job's stored settings with this invocation's run controls; an explicit change of any other is an error."""
    stored = with_lr_horizon(stored)
    for name in sorted(explicit - set(RUN_CONTROLS)):
        if getattr(current, name) != getattr(stored, name):
            raise UsageError(f"--resume: {flag_name(name)} {getattr(current, name)} differs from the job's "
                             f"{getattr(stored, name)}; a resumed job keeps its settings (only "
                             f"{', '.join(flag_name(n) for n in RUN_CONTROLS[:4])}, ... may change)")
    return dataclasses.replace(stored, **{name: getattr(current, name) for name in RUN_CONTROLS})


def keep_metrics_up_to(path: str, last_episode: int) -> int:
    """Rewrites `metrics.jsonl` (atomically) without records after `last_episode` or torn lines; returns how many
    records it dropped. Records written after the checkpoint a job resumes from would otherwise repeat."""
    from chessbrain_jax.storage.metrics import write_text_atomically

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
    write_text_atomically(path, "".join(kept))
    return dropped


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
    if config.lr_schedule == "cosine" and 0 < config.lr_decay_episodes < config.episodes:
        notes.append(f"--lr-schedule cosine decays to 0 over the job's --lr-decay-episodes {config.lr_decay_episodes}"
                     f": episodes {config.lr_decay_episodes + 1}-{config.episodes} train at learning rate 0")
    return notes


def run_description(config: Config, setup: dict[str, Any], resumed_from_episode: int | None) -> dict[str, Any]:
    """The contents of `run.json`: resolved config, versions, devices and parallelism (`setup`), command, start."""
    return {
        "job_id": config.job_id,
        "config": config.to_dict(),
        "versions": library_versions(),
        **setup,
        "command": sys.argv,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "resumed_from_episode": resumed_from_episode,
    }
