"""What runs on the device for the engine: one growing search tree per `go` (`core.growing`), compiled once per
tree capacity and algorithm and reused for every node or time budget, with the speed it was last measured at."""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

import numpy as np

from chessbrain_jax.config import Config

if TYPE_CHECKING:
    from chessbrain_jax.core.chess_env import State
    from chessbrain_jax.core.growing import Grown

MAX_MULTIPV = 16  # root moves every summary reports; the MultiPV option shows up to this many
PV_LENGTH = 24  # plies of each reported line
MIN_CAPACITY = 64  # nodes of the smallest tree a Hash setting gives


class TreeSettings(NamedTuple):
    """What shapes a compiled tree (each combination is one set of XLA compiles)."""

    capacity: int
    search: str


class Snapshot(NamedTuple):
    """A grown tree as the host reads it (`core.growing.Summary` in numpy; `K` = `MAX_MULTIPV`)."""

    best_action: int
    value: float
    simulations: int
    seldepth: int
    actions: np.ndarray  # i32[K], -1 past the root's moves
    visits: np.ndarray  # i32[K]
    q: np.ndarray  # f32[K]
    lines: np.ndarray  # i32[K, PV_LENGTH]
    prior_logits: np.ndarray  # f32[4672]


class _Compiled(NamedTuple):
    start: Callable
    grow: Callable
    summary: Callable


def node_bytes(apply_fn: Callable, params: Any, config: Config) -> int:
    """Device bytes one tree node costs (edges over the legal-move slots, the pgx state, depth): Hash / this is the
    tree's capacity."""
    import jax

    from chessbrain_jax.core import chess_env
    from chessbrain_jax.core.growing import make_growing_search
    from chessbrain_jax.core.types import tree_bytes

    state = jax.eval_shape(chess_env.ENV.init, jax.random.PRNGKey(0))
    sizes = [tree_bytes(jax.eval_shape(make_growing_search(config, apply_fn, capacity).start, params,
                                       jax.random.PRNGKey(0), state, 1)) for capacity in (2, 3)]
    return sizes[1] - sizes[0]


def capacity_for(hash_megabytes: int, bytes_per_node: int) -> int:
    """Nodes a tree of `hash_megabytes` MiB holds (at least `MIN_CAPACITY`)."""
    return max(MIN_CAPACITY, hash_megabytes * 2**20 // bytes_per_node)


class TreeSearch:
    """Growing trees from one network: compiled ahead of time once per `TreeSettings`, by whichever thread asks first,
    and kept. `nps` keeps the latest measured simulations per second of each setting, for time management."""

    def __init__(self, apply_fn: Callable, params: Any, config: Config):
        self._apply_fn, self._params, self._config = apply_fn, params, config
        self._compiled: dict[TreeSettings, _Compiled] = {}
        self._lock = threading.Lock()
        self.nps: dict[TreeSettings, float] = {}

    def compile(self, settings: TreeSettings) -> _Compiled:
        with self._lock:
            if settings not in self._compiled:
                self._compiled[settings] = self._build(settings)
            return self._compiled[settings]

    def _build(self, settings: TreeSettings) -> _Compiled:
        import jax
        import jax.numpy as jnp

        from chessbrain_jax.core import chess_env
        from chessbrain_jax.core.growing import make_growing_search

        config = dataclasses.replace(self._config, search=settings.search)
        search = make_growing_search(config, self._apply_fn, settings.capacity, MAX_MULTIPV, PV_LENGTH)
        state = jax.eval_shape(chess_env.ENV.init, jax.random.PRNGKey(0))
        count = jax.ShapeDtypeStruct((), jnp.int32)
        start = jax.jit(search.start).lower(self._params, jax.random.PRNGKey(0), state, count).compile()
        grown = jax.eval_shape(search.start, self._params, jax.random.PRNGKey(0), state, count)
        grow = jax.jit(search.grow, donate_argnums=1).lower(self._params, grown, count).compile()
        return _Compiled(start, grow, jax.jit(search.summary).lower(grown).compile())

    def start(self, settings: TreeSettings, seed: int, state: State, target: int) -> Grown:
        """A tree holding the root of the unbatched pgx `state`, planned (Gumbel) for `target` simulations."""
        import jax

        target = min(max(target, 1), settings.capacity - 1)
        return self.compile(settings).start(self._params, jax.random.PRNGKey(seed), state, np.int32(target))

    def grow(self, settings: TreeSettings, grown: Grown, upper: int) -> Grown:
        """`grown` (consumed) with simulations up to `upper` in all, and the speed it ran at."""
        import jax

        before = int(grown.simulations)
        started = time.monotonic()
        grown = self.compile(settings).grow(self._params, grown, np.int32(upper))
        added = int(jax.device_get(grown.simulations)) - before
        if added >= 8:  # too few simulations measure dispatch, not speed
            self.nps[settings] = added / max(time.monotonic() - started, 1e-6)
        return grown

    def summary(self, settings: TreeSettings, grown: Grown) -> Snapshot:
        import jax

        out = jax.device_get(self.compile(settings).summary(grown))
        return Snapshot(int(out.best_action), float(out.value), int(out.simulations), int(out.seldepth),
                        *(np.asarray(array) for array in (out.actions, out.visits, out.q, out.lines,
                                                          out.prior_logits)))
