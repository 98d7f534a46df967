"""The engine's root states: pgx states of python-chess games, cached by root FEN and stepped on through the game."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import TYPE_CHECKING

import chess

if TYPE_CHECKING:
    from chessbrain_jax.core.chess_env import State

ROOTS_KEPT = 8  # root positions (FENs) whose pgx states are cached


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
