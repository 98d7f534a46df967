"""What runs on the device: the compiled search chunk of each option setting, and the pgx root states it searches.

mctx runs a whole search as one jitted call and every distinct simulation count or batch size is a new XLA compile,
so the engine searches in chunks of fixed shape, compiled once per `SearchSettings` and kept.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

import chess
import numpy as np

from chessbrain_jax.config import Config

if TYPE_CHECKING:
    from chessbrain_jax.core.chess_env import State

PV_LENGTH = 16  # plies of principal variation read from each tree
ROOTS_KEPT = 8  # root positions (FENs) whose pgx states are cached


class SearchSettings(NamedTuple):
    """The UCI options that shape a compiled chunk (each combination is one XLA compile)."""

    simulations: int
    threads: int
    search: str


class ChunkResult(NamedTuple):
    """One chunk's statistics on the host; `T` = threads (trees), `A` = 4672 pgx actions, `L` = `PV_LENGTH`.

    action: i32[T] each tree's choice (Gumbel: sequential halving's; PUCT: most visited).
    weights: f32[T, A] Gumbel's improved policy or PUCT's visit fractions (0 off the root's legal moves).
    root_value: f32[T] each tree's root value, for the side to move, in [-1, 1].
    pv: i32[T, 2, L] pgx actions from `action` and from argmax(`weights`), then the most visited child; -1 padded.
    prior_logits: f32[A] the network's root prior logits (tree 0; illegal moves at the dtype's minimum).
    """

    action: np.ndarray
    weights: np.ndarray
    root_value: np.ndarray
    pv: np.ndarray
    prior_logits: np.ndarray


class ChunkSearch:
    """Root-parallel search chunks: one jitted call runs `threads` independent mctx trees of `simulations` each from
    one root. Compiled ahead of time once per `SearchSettings`, by whichever thread asks first, and kept."""

    def __init__(self, apply_fn: Callable, params: Any, config: Config):
        self._apply_fn, self._params, self._config = apply_fn, params, config
        self._compiled: dict[SearchSettings, Callable] = {}
        self._lock = threading.Lock()
        self.seconds: dict[SearchSettings, float] = {}  # wall time of the latest chunk, for time management

    def compile(self, settings: SearchSettings) -> Callable:
        with self._lock:
            if settings not in self._compiled:
                self._compiled[settings] = self._build(settings)
            return self._compiled[settings]

    def _build(self, settings: SearchSettings) -> Callable:
        import jax
        import jax.numpy as jnp

        from chessbrain_jax.core import chess_env
        from chessbrain_jax.core.search import make_search_fn, principal_variation

        config = dataclasses.replace(self._config, mcts_simulations=settings.simulations, search=settings.search)
        search = make_search_fn(config, self._apply_fn)

        def chunk(params, seed, state):
            roots = jax.tree.map(lambda leaf: jnp.broadcast_to(leaf, (settings.threads, *leaf.shape)), state)
            output = search(params, jax.random.PRNGKey(seed), roots)
            most = jnp.argmax(output.action_weights, axis=-1).astype(jnp.int32)
            chosen = output.best_action.astype(jnp.int32)
            line = functools.partial(principal_variation, length=PV_LENGTH)
            lines = jax.vmap(jax.vmap(line, (None, 0)))(output.search_tree, jnp.stack([chosen, most], axis=1))
            return chosen, output.action_weights, output.root_value, lines, output.root_prior_logits[0]

        state_shape = jax.eval_shape(chess_env.ENV.init, jax.random.PRNGKey(0))
        return jax.jit(chunk).lower(self._params, np.uint32(0), state_shape).compile()

    def run(self, settings: SearchSettings, seed: int, state: State) -> ChunkResult:
        """Searches the unbatched pgx `state`; `seed` picks the chunk's random numbers."""
        import jax

        compiled = self.compile(settings)
        started = time.monotonic()
        outputs = jax.device_get(compiled(self._params, np.uint32(seed), state))
        self.seconds[settings] = time.monotonic() - started
        return ChunkResult(*(np.asarray(output) for output in outputs))


class PositionStates:
    """pgx states (history included) of python-chess games, as `notation.board_to_state` builds them, but cached:
    pgx parses a FEN eagerly (about a second) while a jitted step takes a millisecond, so root states are kept by
    FEN and a game that extends the previous position is stepped on from it. Thread-safe."""

    def __init__(self):
        import jax

        from chessbrain_jax.core import chess_env

        self._step = jax.jit(chess_env.ENV.step)
        self._roots: OrderedDict[str, State] = OrderedDict()
        self._last: tuple[str, list[chess.Move], State] | None = None
        self._lock = threading.Lock()

    def root(self, fen: str) -> State:
        """The state of `fen`, checked like `notation.from_fen` (ValueError with a one-line reason)."""
        with self._lock:
            return self._root(fen)

    def _root(self, fen: str) -> State:
        from chessbrain_jax.play import notation

        try:
            key = chess.Board(fen).fen()
        except ValueError:
            key = fen  # not a FEN: from_fen below says why
        if key not in self._roots:
            self._roots[key] = notation.from_fen(fen)
            if len(self._roots) > ROOTS_KEPT:
                self._roots.popitem(last=False)
        self._roots.move_to_end(key)
        return self._roots[key]

    def state(self, board: chess.Board) -> State:
        """The unbatched pgx state of `board`, its root position stepped through its move stack."""
        import jax.numpy as jnp

        from chessbrain_jax.play import notation

        with self._lock:
            fen, moves = board.root().fen(), list(board.move_stack)
            if self._last is not None and self._last[0] == fen and moves[:len(self._last[1])] == self._last[1]:
                state, done = self._last[2], len(self._last[1])
            else:
                state, done = self._root(fen), 0
            replay = board.root()
            for index, move in enumerate(moves):
                if index >= done:
                    state = self._step(state, jnp.int32(notation.move_to_action(replay, move)))
                replay.push(move)
            self._last = (fen, moves, state)
            return state
