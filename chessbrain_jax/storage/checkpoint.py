"""Step-versioned Orbax checkpoints `<checkpoint-dir>/<job-id>_step<N>` and loading them back into a network.

A checkpoint holds `state` (params, optimizer state including MultiSteps accumulators, optimizer step, RNG key),
`run` (the games in progress with their results table, and the replay buffer: what an exact resume needs; only the
newest `--keep-replay` checkpoints keep it, `prune_runs`) and `meta`
(JSON: resolved config, episode and game counters, last metrics, library and pgx environment versions). Orbax
writes each step to a temporary folder and renames it when complete, so an interrupted save never looks like a
checkpoint. Several jobs may share one checkpoint folder: each sees only its own `<job-id>_step<N>` folders.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import re
import shutil
from typing import Any, Iterator, NamedTuple

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from absl import logging as absl_logging
from etils import epath

from chessbrain_jax.config import FIELDS, Config
from chessbrain_jax.core import chess_env, learner, model, replay, selfplay
from chessbrain_jax.scale import sharding

RUN_FORMAT = 4  # layout of the `run` item: 2 = replay buffer with one column per self-play slot (`replay`); 3 = and
# the game lengths beside the results (`result_plies`); 4 = and each position's material and search root value
RUN_ITEM = "run"
STEP_FOLDER = re.compile(r"^(?P<job>.+)_step(?P<step>0|[1-9]\d*)$")


class CheckpointError(ValueError):
    """A checkpoint path that is missing, not a checkpoint, or incompatible; the message is one line."""


@dataclasses.dataclass(frozen=True)
class JobStepNameFormat(ocp.path.step.NameFormat):
    """Orbax step naming `<job_id>_step<N>` (Orbax's standard format would insert an underscore: `job_step_N`)."""

    job_id: str

    def build_name(self, step: int) -> str:
        return f"{self.job_id}_step{step}"

    def _metadata(self, path: epath.Path) -> ocp.path.step.Metadata | None:
        match = STEP_FOLDER.match(path.name)
        if match is None or match["job"] != self.job_id or not path.is_dir():
            return None
        if not ocp.path.step.is_path_finalized(path):
            return None
        return ocp.path.step.Metadata(step=int(match["step"]), path=path)

    def find_all(self, base_path) -> Iterator[ocp.path.step.Metadata]:
        base = epath.Path(base_path)
        if not base.is_dir():
            return iter([])
        candidates = [p for p in base.iterdir() if p.name.startswith(f"{self.job_id}_step")]
        return ocp.path.step.build_step_metadatas(candidates, self._metadata)

    def find_step(self, base_path, step: int) -> ocp.path.step.Metadata:
        metadata = self._metadata(epath.Path(base_path) / self.build_name(step))
        if metadata is None:
            raise ValueError(f"no checkpoint {self.build_name(step)} under {base_path}")
        return metadata


def make_manager(checkpoint_dir: str, job_id: str, keep: int = 0, read_only: bool = False) -> ocp.CheckpointManager:
    """An Orbax manager for one job's checkpoints; `keep` newest are kept (0: all)."""
    policy = ocp.checkpoint_managers.LatestN(keep) if keep > 0 else None
    options = ocp.CheckpointManagerOptions(
        step_name_format=JobStepNameFormat(job_id),
        preservation_policy=policy,
        save_root_metadata=False,  # the folder may be shared by several jobs
        create=not read_only,
        read_only=read_only,
    )
    return ocp.CheckpointManager(os.path.abspath(checkpoint_dir), options=options)


class RunState(NamedTuple):
    """What a job needs beyond the network to continue exactly: games in progress and the replay buffer."""

    games: selfplay.SelfPlayState
    buffer: replay.ReplayBuffer


def save(manager: ocp.CheckpointManager, state: learner.TrainState, rng: jax.Array, run: RunState,
         meta: dict[str, Any]) -> None:
    """Starts an asynchronous save of step `state.step` (call `manager.wait_until_finished()` to rely on it). In a
    multi-process job every process calls it; Orbax writes each array's shards from the process that holds them."""
    step = int(sharding.fetch(state.step))
    meta = dict(meta, pgx_version=chess_env.PGX_VERSION, env_id=chess_env.ENV_ID, step=step, run_format=RUN_FORMAT,
                saved_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    manager.save(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave({"train_state": state, "rng": jax.random.key_data(rng)}),
            run=ocp.args.StandardSave({"games": run.games, "buffer": run.buffer}),
            meta=ocp.args.JsonSave(meta),
        ),
    )


def has_run(folder: str) -> bool:
    """Whether the step folder still holds the `run` item (games in progress and replay buffer)."""
    return os.path.isdir(os.path.join(folder, RUN_ITEM))


def prune_runs(checkpoint_dir: str, job_id: str, keep: int) -> list[int]:
    """Removes the `run` item from all but the newest `keep` complete checkpoints of the job that still hold one
    (0: none removed); returns the steps pruned. Call it only when no save is in flight. The item is renamed out
    of the way first (one atomic step), so a kill mid-delete leaves a lean checkpoint, never a half `run` item."""
    if keep <= 0:
        return []
    full = [info for info in list_checkpoints(checkpoint_dir, job_id) if has_run(info.path)]
    pruned = []
    for info in full[:-keep]:
        doomed = os.path.join(info.path, f".{RUN_ITEM}-pruning")
        os.replace(os.path.join(info.path, RUN_ITEM), doomed)
        shutil.rmtree(doomed)
        pruned.append(info.step)
    return pruned


def abstract_state(config: Config, dtype: str = "float32", sharding=None) -> dict[str, Any]:
    """The `state` tree a checkpoint of `config` holds, as `jax.ShapeDtypeStruct`s placed by `sharding` (default:
    the default device)."""
    network = model.make_network(config, dtype)
    optimizer = learner.make_optimizer(config)

    def build():
        params = model.init_params(network, jax.random.PRNGKey(0))
        return {"train_state": learner.init_train_state(params, optimizer),
                "rng": jax.random.key_data(jax.random.PRNGKey(0))}

    return _placed(jax.eval_shape(build), sharding)


def _placed(shapes, sharding=None):
    """`shapes` with their target sharding: one for all leaves, a pytree prefix of shardings, or the default device."""
    if sharding is None:
        sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    if isinstance(sharding, jax.sharding.Sharding):
        return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), shapes)
    return jax.tree.map(lambda s, sub: jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), sub),
                        sharding, shapes, is_leaf=lambda x: isinstance(x, jax.sharding.Sharding))


def read_meta(manager: ocp.CheckpointManager, step: int) -> dict[str, Any]:
    """The JSON metadata of `step` (raises KeyError/ValueError/FileNotFoundError when unreadable)."""
    meta = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    if not isinstance(meta, dict):
        raise ValueError("metadata is not a JSON object")
    return meta


def restore_run(manager: ocp.CheckpointManager, step: int, config: Config, games_sharding=None,
                buffer_sharding=None) -> RunState:
    """The games in progress and replay buffer saved at `step`, restored into the shapes `config` implies and
    placed by the given shardings (e.g. a data-parallel mesh of any device count that divides the batch)."""
    template = {"games": _placed(jax.eval_shape(lambda: selfplay.init_selfplay(config)), games_sharding),
                "buffer": _placed(jax.eval_shape(lambda: replay.init_replay(config)), buffer_sharding)}
    restored = manager.restore(step, args=ocp.args.Composite(run=ocp.args.StandardRestore(template)))["run"]
    return RunState(restored["games"], restored["buffer"])


def config_from_meta(meta: dict[str, Any]) -> Config:
    """The `Config` stored in a checkpoint's metadata (settings unknown to this version are ignored)."""
    stored = meta["config"]
    if not isinstance(stored, dict):
        raise TypeError("metadata 'config' is not a mapping")
    return Config(**{name: value for name, value in stored.items() if name in FIELDS})


def restore(manager: ocp.CheckpointManager, step: int, config: Config,
            sharding=None) -> tuple[learner.TrainState, jax.Array, dict]:
    """(train state, rng key, meta) of `step`, restored into the shapes `config` implies (placed by `sharding`)."""
    restored = manager.restore(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state(config, sharding=sharding)),
            meta=ocp.args.JsonRestore(),
        ),
    )
    state = restored["state"]
    return state["train_state"], jax.random.wrap_key_data(state["rng"]), restored["meta"]


class CheckpointInfo(NamedTuple):
    step: int
    path: str
    saved_at: str


def list_checkpoints(checkpoint_dir: str, job_id: str) -> list[CheckpointInfo]:
    """The job's complete checkpoints, oldest first."""
    found = JobStepNameFormat(job_id).find_all(os.path.abspath(checkpoint_dir))
    return [CheckpointInfo(m.step, str(m.path), m.commit_timestamp.isoformat(timespec="seconds"))
            for m in sorted(found, key=lambda m: m.step)]


class LoadedNetwork(NamedTuple):
    """A network restored from a checkpoint. `apply(observation f32[B, 8, 8, 119]) -> (logits, value)`."""

    config: Config
    network: model.ChessNet
    params: Any
    step: int
    meta: dict

    def apply(self, observation: jax.Array) -> tuple[jax.Array, jax.Array]:
        return self.network.apply({"params": self.params}, jnp.asarray(observation, jnp.float32))


def locate(path: str) -> tuple[str, str, int | None]:
    """(checkpoint root, job id, step or None for the latest) from a step folder `<root>/<job>_step<N>`."""
    path = os.path.abspath(path.rstrip("/"))
    match = STEP_FOLDER.match(os.path.basename(path))
    if match is None:
        raise CheckpointError(f"{path} is not a checkpoint folder (expected <checkpoint-dir>/<job-id>_step<N>)")
    return os.path.dirname(path), match["job"], int(match["step"])


def load_network(path: str, checkpoint_dir: str | None = None, dtype: str = "float32") -> LoadedNetwork:
    """Loads a network from a step folder `<root>/<job>_step<N>`, or the latest step of job `path` under
    `checkpoint_dir` (`load_network("myjob", checkpoint_dir="./checkpoints")`)."""
    if checkpoint_dir is None:
        root, job_id, step = locate(path)
        if not os.path.isdir(os.path.join(root, f"{job_id}_step{step}")):
            raise CheckpointError(f"checkpoint {path} does not exist")
    else:
        root, job_id, step = checkpoint_dir, path, None
    verbosity = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.ERROR)  # Orbax warns that a read-only manager will not save
    try:
        return _load_network(root, job_id, step, dtype)
    finally:
        absl_logging.set_verbosity(verbosity)


def _load_network(root: str, job_id: str, step: int | None, dtype: str) -> LoadedNetwork:
    manager = make_manager(root, job_id, read_only=True)
    try:
        if step is None:
            step = manager.latest_step()
            if step is None:
                raise CheckpointError(f"no checkpoints of job {job_id!r} under {os.path.abspath(root)}")
        elif step not in manager.all_steps():
            raise CheckpointError(f"{os.path.join(root, f'{job_id}_step{step}')} is not a complete checkpoint")
        folder = os.path.join(os.path.abspath(root), f"{job_id}_step{step}")
        try:
            config = config_from_meta(read_meta(manager, step))
        except (KeyError, ValueError, TypeError, FileNotFoundError) as error:
            raise CheckpointError(f"{folder} has no readable metadata ({type(error).__name__}); "
                                  "is it a chessbrain_jax checkpoint?") from None
        try:
            train_state, _, meta = restore(manager, step, config)
        except (KeyError, ValueError, TypeError, FileNotFoundError) as error:
            raise CheckpointError(f"{folder} does not match the network and optimizer its metadata describes "
                                  f"({type(error).__name__}: {str(error).splitlines()[0][:160]})") from None
    finally:
        manager.close()
    return LoadedNetwork(config, model.make_network(config, dtype), train_state.params, step, meta)
