"""Data parallelism: one `Mesh` axis over every device of the job (all hosts), games and replay columns split on it.

Each device plays `selfplay_batch / n` of the games, stores their positions in its own columns of the replay buffer
(`replay` keeps one column per game slot), samples `batch_size / n` positions from those columns for each
micro-batch, and the gradients are summed over devices (`learner.loss_fn`), so every device applies the same update
to its replica of the parameters. The hot path runs under `jax.shard_map`: no device reads another's games or
buffer, and the only communication is one all-reduce of gradients and metrics per micro-batch (and of the episode
counters). With one device the same code runs on a mesh of one.

`--selfplay-batch` and `--batch-size` stay global: the run is the same experiment on any device count that divides
both, and a checkpoint restores onto any such count. Random streams are per device (the key is folded with the
device index), so an n-device run draws different games and samples than a 1-device run: the arithmetic is the
same, the dice are not.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from chessbrain_jax.config import Config
from chessbrain_jax.core import learner, replay, selfplay, targets
from chessbrain_jax.core.types import ApplyFn

AXIS = "data"
GAMES = P(AXIS)  # SelfPlayState: every leaf [B, ...]
TRAJECTORY = P(None, AXIS)  # Trajectory: every leaf [T, B, ...]
BUFFER = replay.ReplayBuffer(positions=P(None, AXIS), results=P(AXIS), result_plies=P(AXIS), slot_generation=P(AXIS),
                             insert_at=P(AXIS), size=P(AXIS))
REPLICATED = P()


def divisibility_problem(config: Config, devices: int) -> str | None:
    """Why `config` cannot be split over `devices` data-parallel devices (None if it can)."""
    for name, value in (("--selfplay-batch", config.selfplay_batch), ("--batch-size", config.batch_size)):
        if value % devices:
            return (f"{name} {value} must be a multiple of the {devices} devices it is split over (settings are "
                    f"global: each device gets {name} / {devices})")
    return None


class DataParallel:
    """The job's mesh and its sharded, jitted pieces. `devices` defaults to all devices of all processes."""

    def __init__(self, config: Config, devices: Sequence[Any] | None = None):
        devices = list(jax.devices() if devices is None else devices)
        problem = divisibility_problem(config, len(devices))
        if problem:
            raise ValueError(problem)
        self.config = config
        self.mesh = Mesh(np.array(devices), (AXIS,))
        self.size = len(devices)
        self.local = dataclasses.replace(
            config, selfplay_batch=config.selfplay_batch // self.size, batch_size=config.batch_size // self.size,
            replay_capacity=replay.replay_rows(config) * (config.selfplay_batch // self.size))

    def describe(self) -> str:
        platform = self.mesh.devices.flat[0].platform
        processes = len({device.process_index for device in self.mesh.devices.flat})
        hosts = f" in {processes} processes" if processes > 1 else ""
        return (f"data parallel over {self.size} {platform} device(s){hosts}: {self.local.selfplay_batch} games "
                f"and {self.local.batch_size} samples per micro-batch on each")

    def sharding(self, spec) -> Any:
        """A spec (or pytree prefix of specs) as `NamedSharding`s on this mesh."""
        return jax.tree.map(lambda s: NamedSharding(self.mesh, s), spec, is_leaf=lambda x: isinstance(x, P))

    @property
    def one_program_at_a_time(self) -> bool:
        """True on several CPU devices: XLA:CPU runs each device's share of a program on a shared thread pool, and
        with several multi-device programs in flight their collectives can wait on each other forever (seen twice in
        ~300 two-device episodes on 2 cores, every thread asleep). The loop then waits for each program to finish
        before dispatching the next."""
        return self.size > 1 and self.mesh.devices.flat[0].platform == "cpu"

    def shard(self, function, in_specs, out_specs):
        """`function` run on each device over its share (specs as `jax.shard_map` takes them; no replication check)."""
        return jax.shard_map(function, mesh=self.mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)

    # --- state on the mesh (created in place: no full copy on one device first)
    def init_games(self):
        return jax.jit(lambda: selfplay.init_selfplay(self.config), out_shardings=self.sharding(GAMES))()

    def init_buffer(self):
        return jax.jit(lambda: replay.init_replay(self.config), out_shardings=self.sharding(BUFFER))()

    def replicate(self, tree):
        return jax.device_put(tree, self.sharding(REPLICATED))

    # --- the hot path
    def play_episode(self, apply_fn: ApplyFn, pool=None):
        """`play(params, games, key) -> (games, trajectory, stats)`, each device playing its share of the games
        (`pool`: the `--selfplay-starts` positions, `core.starts.StartPool`)."""
        play = selfplay.make_play_episode(self.local, apply_fn, pool)
        width = self.local.selfplay_batch

        def local_episode(params, games, key):
            index = jax.lax.axis_index(AXIS)
            games, trajectory, stats = play(params, games, jax.random.fold_in(key, index), index * width)
            return games, trajectory, jax.lax.psum(stats, AXIS)

        return self.shard(local_episode, (REPLICATED, GAMES, REPLICATED), (GAMES, TRAJECTORY, REPLICATED))

    def add(self):
        """`add(buffer, trajectory, games) -> buffer`, each device writing its own columns."""
        return self.shard(lambda buffer, trajectory, games: replay.add(buffer, trajectory, games),
                          (BUFFER, TRAJECTORY, GAMES), BUFFER)

    def micro_step(self, config: Config, apply_fn: ApplyFn, optimizer):
        """`micro_step(state, buffer, key) -> (state, metrics)` (see `learner.make_micro_step`)."""
        train_step = learner.make_train_step(config, apply_fn, optimizer, axis=AXIS)
        batch_size = self.local.batch_size

        def local_step(state, buffer, key):
            key = jax.random.fold_in(key, jax.lax.axis_index(AXIS))
            return train_step(state, replay.sample(buffer, key, batch_size, config.value_discount,
                                                            targets.ValueMix.of(config)))

        return self.shard(local_step, (REPLICATED, BUFFER, REPLICATED), (REPLICATED, REPLICATED))


def fetch(tree):
    """Host (numpy) copies of replicated arrays; in a multi-process job each process reads its own replica."""
    def one(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return np.asarray(x.addressable_data(0))
        return np.asarray(x)

    return jax.tree.map(one, tree)


def on_one_device(tree, device=None):
    """A replicated tree as single-device arrays on `device` (default: this process's first), e.g. for players."""
    device = device or jax.local_devices()[0]

    def one(x):
        for shard in x.addressable_shards:
            if shard.device == device:
                return shard.data
        return jax.device_put(x.addressable_data(0), device)

    return jax.tree.map(one, tree)


def first_columns(x: jax.Array, count: int) -> np.ndarray:
    """`[..., :count]` of an array whose last axis is the game slots (`[T, B]` trajectories, `[B]` generations),
    sharded on it; read from this process's shards only (a multi-process job's process 0 holds the first slots)."""
    if not isinstance(x, jax.Array) or x.is_fully_addressable:
        return np.asarray(x)[..., :count]
    pieces: dict[int, np.ndarray] = {}
    for shard in x.addressable_shards:
        pieces.setdefault(shard.index[-1].start or 0, np.asarray(shard.data))
    columns, have = [], 0
    for start in sorted(pieces):
        if start != have or have >= count:
            break
        columns.append(pieces[start])
        have += pieces[start].shape[-1]
    if have < min(count, x.shape[-1]):
        raise ValueError(f"this process holds only the first {have} slots, not {count}")
    return np.concatenate(columns, axis=-1)[..., :count]
