"""Self-play games that start from a pool of positions instead of the initial one (`--selfplay-starts`).

A network that rarely reaches a won endgame in self-play never learns to convert one: its value sees no mates and
it draws by the fifty-move rule five pawns ahead. Starting a share of the games from such positions (a FEN file;
`scripts/endgame_starts.py` writes one) gives it that practice. The run reads the file on the host
(`notation.read_start_pool`); the episode keeps the pool as pgx's position encoding (about 80 bytes a position) and
expands the positions it draws to pgx states inside the jitted episode.

Which slots draw from the pool is fixed by their global index (`pool_slots`), so data-parallel devices and the
producers agree, and the slots whose games `--selfplay-pgn-games` records (the first ones) never do: the recorder
replays games from the initial position.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from chessbrain_jax.config import Config
from chessbrain_jax.core import chess_env


class StartPool(NamedTuple):
    """N positions in `chess_env.state_from_arrays`' encoding: board `i8[N, 64]` from the mover's side, colour
    `i32[N]`, castling `bool[N, 2, 2]`, en passant square `i32[N]`, halfmove and fullmove counters `i32[N]`."""

    board: np.ndarray
    color: np.ndarray
    castling: np.ndarray
    en_passant: np.ndarray
    halfmove: np.ndarray
    fullmove: np.ndarray


def stack(rows) -> StartPool:
    """The pool of `rows`, each the `chess_env.state_from_arrays` arguments of one position (as
    `notation.board_arrays` gives them)."""
    board, color, castling, en_passant, halfmove, fullmove = (np.stack(column) for column in zip(*rows))
    return StartPool(board.astype(np.int8), color.astype(np.int32), castling.astype(bool),
                     en_passant.astype(np.int32), halfmove.astype(np.int32), fullmove.astype(np.int32))


def pool_slots(config: Config, slots: jax.Array) -> jax.Array:
    """`bool[...]`: which global slot indices start their games from the pool. The slots after the recorded ones,
    spread evenly: slot s (counted from the first unrecorded one, t) is a pool slot where floor((t + 1) * share)
    passes an integer, so any run of 1 / share consecutive slots has one."""
    share = jnp.float32(config.selfplay_start_share)
    t = (slots - config.selfplay_pgn_games).astype(jnp.float32)
    return (t >= 0) & (jnp.floor((t + 1) * share) > jnp.floor(t * share))


def fresh_states(pool: StartPool, key: jax.Array, use_pool: jax.Array) -> chess_env.State:
    """`[B]` states a slot's next game starts from: a uniformly drawn pool position where `bool[B]` `use_pool`,
    else the initial position. Pure; traced into the episode."""
    batch = use_pool.shape[0]
    initial = chess_env.initial_states(batch)
    index = jax.random.randint(key, (batch,), 0, pool.board.shape[0])
    board, color, castling, en_passant, halfmove, fullmove = (jnp.asarray(column)[index] for column in pool)
    drawn = jax.vmap(chess_env.state_from_arrays)(board.astype(jnp.int32), color, castling, en_passant, halfmove,
                                                  fullmove)
    return jax.tree.map(lambda new, old: jnp.where(use_pool.reshape(-1, *([1] * (new.ndim - 1))), new, old),
                        drawn, initial)
