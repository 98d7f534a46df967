"""What a run costs before it runs: bytes of its device state and checkpoints, the disk the whole run needs, XLA's
memory analysis of its compiled programs, and the checks that refuse a run that cannot fit (`plan`, and `train` at
start-up).

Sizes come from the real pytrees (`jax.eval_shape` of the buffer, games and train state a job creates), so they
follow every change of layout. Checkpoint bytes are the arrays' raw bytes: Orbax's files are that or smaller
(tensorstore compresses, and a young buffer's empty rows compress to almost nothing).
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
from typing import Any

from chessbrain_jax.config import Config
from chessbrain_jax.core.types import tree_bytes

GB = 1e9
META_BYTES = 64 * 1024  # a checkpoint's JSON metadata and Orbax's own files, generously


def shapes(config: Config) -> dict[str, Any]:
    """The abstract pytrees of a job of `config`: params, train_state, games, buffer, rng (parameters and optimizer
    state are float32 whatever the compute dtype)."""
    import jax

    from chessbrain_jax.core import learner, model, replay, selfplay

    network = model.make_network(config)
    optimizer = learner.make_optimizer(config)
    params = jax.eval_shape(lambda: model.init_params(network, jax.random.PRNGKey(0)))
    return {
        "params": params,
        "train_state": jax.eval_shape(lambda p: learner.init_train_state(p, optimizer), params),
        "games": jax.eval_shape(lambda: selfplay.init_selfplay(config)),
        "buffer": jax.eval_shape(lambda: replay.init_replay(config)),
        "rng": jax.eval_shape(lambda: jax.random.PRNGKey(0)),
    }


def checkpoint_steps(config: Config) -> int:
    """Checkpoints a run from episode 1 writes: every `checkpoint_interval` episodes and after the last."""
    return config.episodes // config.checkpoint_interval + (config.episodes % config.checkpoint_interval != 0)


@dataclasses.dataclass(frozen=True)
class DiskPlan:
    """Bytes per checkpoint (`state` with network and optimizer; `run` with games and replay buffer), how many
    are written, kept, and keep their buffer at most at once (one more while a save is in flight)."""

    state_bytes: int
    run_bytes: int
    written: int
    kept: int
    with_buffer: int

    @property
    def checkpoint_bytes(self) -> int:
        return self.state_bytes + self.run_bytes + META_BYTES

    @property
    def total_bytes(self) -> int:
        """The most the checkpoint folder holds at once for this run."""
        return self.kept * (self.state_bytes + META_BYTES) + self.with_buffer * self.run_bytes


def disk_plan(config: Config, trees: dict[str, Any] | None = None) -> DiskPlan:
    trees = shapes(config) if trees is None else trees
    written = checkpoint_steps(config)
    kept = min(written, config.keep_checkpoints) if config.keep_checkpoints else written
    # Orbax removes a checkpoint beyond --keep-checkpoints only after the newer save completes: one more at once.
    kept = min(written, kept + 1)
    with_buffer = min(kept, config.keep_replay + 1) if config.keep_replay else kept
    state = tree_bytes(trees["train_state"]) + tree_bytes(trees["rng"])
    run = tree_bytes(trees["games"]) + tree_bytes(trees["buffer"])
    return DiskPlan(state, run, written, kept, with_buffer)


def free_disk_bytes(folder: str) -> int:
    """Free bytes on the file system that holds `folder` (or its nearest existing parent)."""
    folder = os.path.abspath(folder)
    while not os.path.exists(folder):
        folder = os.path.dirname(folder)
    return shutil.disk_usage(folder).free


def job_disk_bytes(checkpoint_dir: str, job_id: str) -> int:
    """Bytes the job's checkpoints already use (a resumed job needs only the rest)."""
    from chessbrain_jax.storage import checkpoint

    total = 0
    if os.path.isdir(checkpoint_dir):
        for info in checkpoint.list_checkpoints(checkpoint_dir, job_id):
            for parent, _, files in os.walk(info.path):
                total += sum(os.path.getsize(os.path.join(parent, name)) for name in files)
    return total


def disk_problem(config: Config, plan: DiskPlan, checkpoint_dir: str) -> str | None:
    """One line when the checkpoint folder's file system cannot hold the run, else None."""
    free = free_disk_bytes(checkpoint_dir) + job_disk_bytes(checkpoint_dir, config.job_id)
    if plan.total_bytes <= free:
        return None
    return (f"the run's checkpoints need up to {plan.total_bytes / GB:.1f} GB ({plan.kept} kept, {plan.with_buffer} "
            f"with a {plan.run_bytes / GB:.2f} GB replay buffer) but {os.path.abspath(checkpoint_dir)} has "
            f"{free / GB:.1f} GB free; lower --keep-checkpoints, --keep-replay or --replay-capacity, or free space")


def device_state_bytes(trees: dict[str, Any]) -> int:
    """Bytes the loop keeps on the device between programs: train state, games in progress, replay buffer."""
    return tree_bytes(trees["train_state"]) + tree_bytes(trees["games"]) + tree_bytes(trees["buffer"])


def device_memory_bytes(device) -> int | None:
    """The memory a device offers: a GPU's allocator limit, the host's RAM for a CPU device; None if unknown."""
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"])
    if device.platform == "cpu" and hasattr(os, "sysconf"):
        try:
            return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError):
            return None
    return None


def memory_problem(needed: int, available: int | None, what: str) -> str | None:
    if available is None or needed <= available:
        return None
    return (f"{what} needs about {needed / GB:.1f} GB of device memory but the device has {available / GB:.1f} GB; "
            "lower --selfplay-batch, --replay-capacity, --batch-size or the network size")


def start_up_problems(config: Config, devices: list) -> list[str]:
    """What `train` checks before it creates anything: that the checkpoint folder's disk holds the run's
    checkpoints, and that the device state (train state on every device, games and buffer split across them) fits
    the first device's memory (a CPU's devices share the host's RAM). Programs' temporaries are not counted here:
    `plan` measures those."""
    import jax

    trees = shapes(config)
    problems = [disk_problem(config, disk_plan(config, trees), config.checkpoint_dir)]
    # This process's devices only: another process's device is not this host's to ask.
    local = [device for device in devices if device.process_index == jax.process_index()] or devices
    device, share = local[0], (tree_bytes(trees["games"]) + tree_bytes(trees["buffer"])) / max(len(devices), 1)
    replicated = tree_bytes(trees["train_state"])
    if device.platform == "cpu":  # a host's CPU devices share its RAM
        needed, what = math.ceil((replicated + share) * len(local)), "this host's share of the run's state"
    else:
        needed, what = math.ceil(replicated + share), "each device's share of the run's state"
    problems.append(memory_problem(needed, device_memory_bytes(device), what))
    return [problem for problem in problems if problem]
