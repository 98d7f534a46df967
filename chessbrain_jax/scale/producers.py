"""Producer/consumer self-play (`--producer-workers K`): self-play decoupled from the learner by a bounded queue.

Each of K producer threads owns `selfplay_batch / K` of the game slots and one device (`assign_devices`), and loops:
play one jitted chunk of `plies_per_episode` plies with its newest copy of the parameters, then put the chunk
(trajectory, the games after it, counters, and the optimizer step of the parameters used) on a queue of at most
`--producer-queue-size` chunks, waiting while it is full. The learner (the train loop, on its own devices) takes K
chunks per episode, adds each to its producer's columns of the replay buffer, trains, and publishes its parameters
back to the producers after every episode, i.e. every `optimizer_steps_per_episode` optimizer steps. Staleness --
the learner's step minus the step of the parameters that played a chunk -- goes into the metrics.

Shutdown is graceful and loses nothing: `close` stops the producers after their current chunk, joins them, and adds
every chunk still queued to the buffer (counted in the metrics). Checkpoints hold, for each producer, the games as
of its last chunk the learner consumed, so the buffer and the games in progress always agree. The order in which
producers deliver depends on timing, so this mode is not bit-reproducible; `--producer-workers 0` (synchronous) is.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from chessbrain_jax.config import Config
from chessbrain_jax.core import replay, selfplay
from chessbrain_jax.core.types import Trajectory


class ProducerError(Exception):
    """A producer setting that cannot work on these devices; the message is one line."""


def assign_devices(config: Config, learner_devices: Sequence[Any]) -> tuple[list[Any], list[Any]]:
    """(one device per producer, the learner's devices).

    Producers run on `--producer-device` devices (auto: the learner's platform). On the learner's own platform they
    take the last K devices when more than K exist, leaving the rest to the learner; otherwise they share devices
    (producer k on device k mod n) with each other and with the learner.
    """
    workers = config.producer_workers
    platform = learner_devices[0].platform if config.producer_device == "auto" else config.producer_device
    if config.selfplay_batch % workers:
        raise ProducerError(f"--selfplay-batch {config.selfplay_batch} must be a multiple of --producer-workers "
                            f"{workers} (each producer plays --selfplay-batch / {workers} games)")
    try:
        pool = jax.devices(platform)
    except RuntimeError:
        raise ProducerError(f"--producer-device {platform}: no {platform.upper()} is available to JAX") from None
    learner = list(learner_devices)
    if pool[0].platform == learner[0].platform and len(learner) > workers:
        return learner[-workers:], learner[:-workers]
    return [pool[k % len(pool)] for k in range(workers)], learner


class Chunk(NamedTuple):
    """One producer's episode: `[T, b]` trajectory of its b games, those games afterwards, and where it came from."""

    producer: int
    trajectory: Trajectory
    games: selfplay.SelfPlayState
    stats: dict
    params_step: int


def _total_stats(chunks: Sequence[Chunk]) -> dict[str, int]:
    """The `selfplay.EPISODE_STATS` counters summed over `chunks`."""
    return {name: sum(int(chunk.stats[name]) for chunk in chunks) for name in selfplay.EPISODE_STATS}


def split_games(games: selfplay.SelfPlayState, workers: int) -> list[selfplay.SelfPlayState]:
    """The `[B]` games as `workers` host blocks of `[B / workers]` consecutive slots (`B` read from this process)."""
    host = jax.tree.map(lambda x: np.asarray(jax.device_get(x)), games)
    return [jax.tree.map(lambda x: np.array_split(x, workers)[k], host) for k in range(workers)]


class ProducerPool:
    """The producers and the queue; the train loop uses it as its self-play source (see `SynchronousSelfPlay`)."""

    mode = "producer/consumer"

    def __init__(self, config: Config, apply_fn, devices: Sequence[Any], games: selfplay.SelfPlayState, params,
                 step: int, key: jax.Array, add, place, pool=None):
        """`pool`: the `--selfplay-starts` positions (`core.starts.StartPool`), or None."""
        self.config, self.devices = config, list(devices)
        self.workers = len(self.devices)
        self.width = config.selfplay_batch // self.workers
        self._add, self._place = add, place
        self._leftovers: list[Chunk] = []
        self.queue: queue.Queue[Chunk] = queue.Queue(maxsize=config.producer_queue_size)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._published: tuple[int, Any] = (step, jax.tree.map(np.asarray, jax.device_get(params)))
        self._errors: list[BaseException] = []
        self.consumed = split_games(games, self.workers)  # per producer: games as of its last consumed chunk
        self.drained = self.produced = 0
        local = dataclasses.replace(config, selfplay_batch=self.width,
                                    replay_capacity=replay.replay_rows(config) * self.width)
        play = selfplay.make_play_episode(local, apply_fn, pool)
        self._play = jax.jit(play)  # compiled once per device: it follows its committed arguments
        keys = jax.random.split(key, self.workers)
        self._threads = [threading.Thread(target=self._produce, args=(k, keys[k]), name=f"producer-{k}",
                                          daemon=True) for k in range(self.workers)]
        self._rate_mark = (time.monotonic(), 0)
        for thread in self._threads:  # each compiles its device's self-play first, alongside the learner's compile
            thread.start()

    def describe(self) -> str:
        where = ", ".join(sorted({f"{d.platform}:{d.id}" for d in self.devices}))
        return (f"{self.workers} producer(s) of {self.width} games each on {where}, queue of "
                f"{self.config.producer_queue_size} chunks; parameters published every "
                f"{self.config.optimizer_steps_per_episode} optimizer steps")

    # --- producer threads
    def _produce(self, index: int, key: jax.Array) -> None:
        device = self.devices[index]
        try:
            version, params = -1, None
            games = jax.device_put(self.consumed[index], device)
            key = jax.device_put(key, device)
            first = jax.device_put(jnp.int32(index * self.width), device)
            while not self._stop.is_set():
                with self._lock:
                    step, published = self._published
                if step != version:
                    version, params = step, jax.device_put(published, device)
                key, play_key = jax.random.split(key)
                games, trajectory, stats = self._play(params, games, play_key, first)
                jax.block_until_ready(games)
                chunk = Chunk(index, trajectory, games, stats, version)
                with self._lock:
                    self.produced += 1
                while not self._stop.is_set():
                    try:
                        self.queue.put(chunk, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                else:  # stopping with a chunk in hand: hand it over, the learner drains the queue after joining us
                    self._leftovers.append(chunk)
        except BaseException as error:  # reported by the learner's next `episode` call
            self._errors.append(error)

    # --- the learner's side
    def publish(self, params, step: int) -> None:
        """Makes `params` (of optimizer step `step`) the producers' next parameters (a host copy: the learner's
        arrays are donated to its next update)."""
        host = jax.tree.map(np.asarray, jax.device_get(params))
        with self._lock:
            self._published = (step, host)

    def _take(self) -> Chunk:
        while True:
            if self._errors:
                raise self._errors[0]
            try:
                return self.queue.get(timeout=0.1)
            except queue.Empty:
                continue

    def _consume(self, buffer, chunk: Chunk):
        self.consumed[chunk.producer] = chunk.games  # stays on the producer's device until a checkpoint reads it
        trajectory, games = self._place((chunk.trajectory, chunk.games._replace(env=None)))
        return self._add(buffer, trajectory, games, jnp.int32(chunk.producer * self.width))

    def episode(self, params, buffer, key, step: int):
        """Takes K chunks (whichever producers deliver first) into the buffer. Returns (buffer, stats, trajectories
        whose first columns are slots 0.., metrics); K chunks hold `selfplay_batch x plies_per_episode` positions,
        as a synchronous episode does."""
        waited = time.monotonic()
        chunks = [self._take() for _ in range(self.workers)]
        waited = time.monotonic() - waited
        for chunk in chunks:
            buffer = self._consume(buffer, chunk)
        stats = _total_stats(chunks)
        staleness = [step - chunk.params_step for chunk in chunks]
        first_slots = [chunk.trajectory for chunk in chunks if chunk.producer == 0]
        return buffer, stats, first_slots, {
            "producer": {"staleness_mean": float(np.mean(staleness)), "staleness_max": int(max(staleness)),
                         "queue_size": self.queue.qsize(), "learner_wait_s": waited,
                         "positions_per_s": self._rate()}}

    def _rate(self) -> float:
        """Positions produced per second since the previous episode (by all producers)."""
        now, produced = time.monotonic(), self.produced
        then, before = self._rate_mark
        self._rate_mark = (now, produced)
        return (produced - before) * self.width * self.config.plies_per_episode / max(now - then, 1e-9)

    @property
    def games(self) -> selfplay.SelfPlayState:
        """The `[B]` games (host arrays) as of the last consumed chunk of each producer: what a checkpoint holds."""
        return jax.tree.map(lambda *blocks: np.concatenate([np.asarray(jax.device_get(b)) for b in blocks]),
                            *self.consumed)

    def abort(self) -> None:
        """Stops the producers without waiting for the queue (an error or Ctrl-C is on its way out)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def close(self, buffer):
        """Stops and joins the producers, then adds every chunk still queued to `buffer`. Returns (buffer, chunks
        added, their stats)."""
        self._stop.set()
        for thread in self._threads:
            thread.join()
        if self._errors:
            raise self._errors[0]
        chunks = []
        while True:
            try:
                chunks.append(self.queue.get_nowait())
            except queue.Empty:
                break
        chunks += self._leftovers
        for chunk in chunks:
            buffer = self._consume(buffer, chunk)
        self.drained += len(chunks)
        stats = _total_stats(chunks)
        return buffer, len(chunks), stats
