"""The chess rules: a thin layer over pgx's batched chess environment.

Everything pgx-specific that the rest of the package needs (which colour is to move, a state without its observation
for compact search trees, the version to record in checkpoints) lives here, so a pgx upgrade touches one file.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pgx
import pgx.chess

ENV = pgx.make("chess")
PGX_VERSION = pgx.__version__
ENV_ID = f"pgx/{ENV.id}/{ENV.version}"

State = pgx.chess.State


def initial_states(batch: int) -> State:
    """`batch` copies of the starting position, `[batch, ...]`. pgx's random player order does not matter here:
    the package reads colours from the board, not pgx player ids."""
    state = ENV.init(jax.random.PRNGKey(0))
    return jax.tree.map(lambda leaf: jnp.broadcast_to(leaf, (batch, *leaf.shape)), state)


def step(state: State, action: jax.Array) -> State:
    """Batched `pgx` step: `[B]` states and `i32[B]` actions."""
    return jax.vmap(ENV.step)(state, action)


def white_to_move(state: State) -> jax.Array:
    """`bool[...]`: True where white is to move."""
    return state._x.color == 0


def mover_reward(previous: State, current: State) -> jax.Array:
    """`f32[B]`: reward of the player who moved from `previous` to `current` (+1 mate given, -1 illegal move)."""
    return jnp.take_along_axis(current.rewards, previous.current_player[:, None], axis=1)[:, 0]


def plies(state: State) -> jax.Array:
    """`i32[...]`: plies played since the game's start (or since the FEN the state was built from)."""
    return state._step_count


def without_observation(state: State) -> State:
    """The state with a zero-size observation: what a search tree stores per node (saves 30 KB of 46 KB)."""
    return state.replace(observation=jnp.zeros(state.observation.shape[:-3] + (0,), jnp.float32))


def from_fen(fen: str) -> State:
    """One unbatched pgx state from a FEN string.

    python-chess checks it first (pgx's parser does not): a malformed FEN or an impossible position (missing king,
    side not to move in check, pawns on the back rank, ...) raises ValueError with a one-line reason.
    """
    import chess
    from pgx.experimental.chess import from_fen as pgx_from_fen

    try:
        board = chess.Board(fen)
    except ValueError as error:
        raise ValueError(f"invalid FEN {fen!r}: {error}") from None
    status = board.status()
    if status != chess.STATUS_VALID:
        problems = ", ".join(flag.name.lower().replace("_", " ") for flag in chess.Status if flag and flag & status)
        raise ValueError(f"FEN {fen!r} is not a legal position: {problems}")
    return pgx_from_fen(board.fen())  # all six fields, as pgx's parser expects
