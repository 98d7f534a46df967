"""What runs on the device for the engine: one growing search tree per `go` (`core.growing`), compiled once per
tree capacity and algorithm and reused for every node or time budget, with the speed it was last measured at.

The Hash option sets the largest tree; below it a ladder of smaller trees (for 256, 1,024, 4,096, ... simulations,
while at most half the Hash's) is compiled too, because on the CPU a simulation costs more the larger the tree
(XLA copies its node arrays: 1,800 simulations/s in a 257-node tree, 420 in the default 18,688-node one, with the
24x4 network). A search starts in the smallest tree its budget fits and moves into the next one when it fills up
(`core.growing`'s `enlarge`)."""

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
LADDER = tuple(256 * 4**k + 1 for k in range(10))  # smaller trees (256, 1024, ... simulations and the root)


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
    enlarge: dict[int, Callable]  # from each smaller capacity of its ladder


def ladder(settings: TreeSettings) -> list[TreeSettings]:
    """The trees a search under `settings` (the Hash's tree) may use, smallest first: `LADDER`'s capacities while
    at most half of the Hash's, then the Hash's own."""
    return [settings._replace(capacity=size) for size in LADDER if 2 * size <= settings.capacity] + [settings]


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
        self._locks: dict[TreeSettings, threading.Lock] = {}
        self._prepared: set[TreeSettings] = set()
        self.nps: dict[TreeSettings, float] = {}
        self.last_nps: float | None = None  # of whichever tree ran last

    def compile(self, settings: TreeSettings) -> _Compiled:
        compiled = self._compiled.get(settings)
        if compiled is None:
            with self._locks.setdefault(settings, threading.Lock()):  # one build per tree, others go on
                compiled = self._compiled.get(settings)
                if compiled is None:
                    compiled = self._compiled[settings] = self._build(settings)
        return compiled

    def compiled(self, settings: TreeSettings) -> bool:
        return settings in self._compiled

    def prepare(self, settings: TreeSettings, work: Callable[[Callable], None]) -> None:
        """Compiles the smaller trees of `settings`' ladder, smallest first, through `work(job)` (a background
        thread), once; a search uses each as soon as it is ready."""
        if settings not in self._prepared:
            self._prepared.add(settings)
            work(lambda: [self.compile(tree) for tree in ladder(settings)[:-1]])

    def speed(self, settings: TreeSettings) -> float | None:
        """The simulations per second last measured in `settings`' tree, else in whichever tree ran last."""
        return self.nps.get(settings, self.last_nps)

    def _build(self, settings: TreeSettings) -> _Compiled:
        import jax
        import jax.numpy as jnp

        from chessbrain_jax.core import chess_env
        from chessbrain_jax.core.growing import make_growing_search

        config = dataclasses.replace(self._config, search=settings.search, play_searched_mates=True)  # never miss one
        search = make_growing_search(config, self._apply_fn, settings.capacity, MAX_MULTIPV, PV_LENGTH)
        state = jax.eval_shape(chess_env.ENV.init, jax.random.PRNGKey(0))
        count = jax.ShapeDtypeStruct((), jnp.int32)
        start = jax.jit(search.start).lower(self._params, jax.random.PRNGKey(0), state, count).compile()
        grown = jax.eval_shape(search.start, self._params, jax.random.PRNGKey(0), state, count)
        grow = jax.jit(search.grow, donate_argnums=1).lower(self._params, grown, count).compile()
        enlarge = {}
        for smaller in ladder(settings)[:-1]:
            shape = jax.eval_shape(make_growing_search(config, self._apply_fn, smaller.capacity, MAX_MULTIPV,
                                                       PV_LENGTH).start, self._params, jax.random.PRNGKey(0), state,
                                   count)
            enlarge[smaller.capacity] = jax.jit(search.enlarge).lower(self._params, shape).compile()
        return _Compiled(start, grow, jax.jit(search.summary).lower(grown).compile(), enlarge)

    def start(self, settings: TreeSettings, seed: int, state: State, target: int) -> Grown:
        """A tree holding the root of the unbatched pgx `state`, planned (Gumbel) for `target` simulations (which
        may exceed its capacity: the tree can be enlarged)."""
        import jax

        return self.compile(settings).start(self._params, jax.random.PRNGKey(seed), state, np.int32(max(target, 1)))

    def enlarge(self, grown: Grown, settings: TreeSettings) -> Grown:
        """`grown`, a smaller tree of `settings`' ladder, moved into `settings`' tree to grow on."""
        return self.compile(settings).enlarge[int(grown.depth.shape[0])](self._params, grown)

    def grow(self, settings: TreeSettings, grown: Grown, upper: int) -> Grown:
        """`grown` (consumed) with simulations up to `upper` in all, and the speed it ran at."""
        import jax

        before = int(grown.simulations)
        started = time.monotonic()
        grown = self.compile(settings).grow(self._params, grown, np.int32(upper))
        added = int(jax.device_get(grown.simulations)) - before
        if added >= 8:  # too few simulations measure dispatch, not speed
            self.nps[settings] = self.last_nps = added / max(time.monotonic() - started, 1e-6)
        return grown

    def summary(self, settings: TreeSettings, grown: Grown) -> Snapshot:
        import jax

        out = jax.device_get(self.compile(settings).summary(grown))
        return Snapshot(int(out.best_action), float(out.value), int(out.simulations), int(out.seldepth),
                        *(np.asarray(array) for array in (out.actions, out.visits, out.q, out.lines,
                                                          out.prior_logits)))
