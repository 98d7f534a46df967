"""The chess rules: a thin layer over pgx's batched chess environment.

Everything pgx-specific that the rest of the package needs (which colour is to move, the compact state a search tree
stores per node, the version to record in checkpoints) lives here, so a pgx upgrade touches one file.
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


def repetitions(state: State) -> jax.Array:
    """`i32[...]`: how many times the current position occurred earlier in the game (pgx ends the game at 2, a
    threefold repetition). pgx keeps the Zobrist hashes of the game's positions, newest first."""
    history = state._x.hash_history  # [..., 513, 2]
    return (history == history[..., :1, :]).all(axis=-1).sum(axis=-1) - 1


# Pawn units by pgx piece code (0 empty, 1 pawn, 2 knight, 3 bishop, 4 rook, 5 queen, 6 king).
PIECE_VALUES = (0, 1, 3, 3, 5, 9, 0)


def material_balance(state: State) -> jax.Array:
    """`i32[...]`: white's material minus black's in pawn units (pawn 1, knight and bishop 3, rook 5, queen 9).

    pgx stores the board from the mover's side: positive codes are the mover's pieces."""
    board = state._x.board
    mover = (jnp.asarray(PIECE_VALUES, jnp.int32)[jnp.abs(board)] * jnp.sign(board)).sum(axis=-1)
    return jnp.where(white_to_move(state), mover, -mover)


PGX_HASH_HISTORY = 513  # pgx keeps the Zobrist hash of every position of the game, newest first
HASH_WINDOW = 108
"""Hash-history entries a search tree node keeps. A position can only recur within the 100 plies since the last
capture or pawn move (the fifty-move rule ends the game there), and pgx compares hashes for the repetition rule and
for the observation's repetition planes of the last 8 positions, so entries older than 8 + 100 plies never match
anything pgx compares them with."""


def compact(state: State) -> State:
    """`[...]` states as a search tree stores them per node: 1.5 KB instead of pgx's 46 KB.

    The observation and both legal-move masks are dropped (empty arrays; the node's legal-move slots rebuild the
    mask, `expand`), the boards become int8 and the hash history keeps its newest `HASH_WINDOW` entries. Only
    `expand` reads the result."""
    x = state._x
    lead = state.current_player.shape
    return state.replace(
        observation=jnp.zeros(lead + (0,), jnp.float32),
        legal_action_mask=jnp.zeros(lead + (0,), jnp.bool_),
        _x=x._replace(board=x.board.astype(jnp.int8), board_history=x.board_history.astype(jnp.int8),
                      hash_history=x.hash_history[..., :HASH_WINDOW, :],
                      legal_action_mask=jnp.zeros(lead + (0,), jnp.bool_)),
    )


def expand(state: State, legal_mask: jax.Array) -> State:
    """Inverse of `compact` given the states' `bool[..., 4672]` legal-move mask: a pgx state `step` accepts and that
    steps exactly as the original (the observation stays empty; `step` computes the next one)."""
    x = state._x
    pad = [(0, 0)] * (x.hash_history.ndim - 2) + [(0, PGX_HASH_HISTORY - HASH_WINDOW), (0, 0)]
    return state.replace(
        legal_action_mask=legal_mask,
        _x=x._replace(board=x.board.astype(jnp.int32), board_history=x.board_history.astype(jnp.int32),
                      hash_history=jnp.pad(x.hash_history, pad), legal_action_mask=legal_mask),
    )


@jax.jit
def state_from_arrays(board, color, castling, en_passant, halfmove, fullmove) -> State:
    """One unbatched pgx state from pgx's own encoding of a position (as `notation.from_fen` builds it): `i32[64]`
    board from the mover's side (squares file * 8 + rank), colour 0 white / 1 black, `bool[2, 2]` castling rights
    (mover first), en passant square or -1, halfmove and fullmove counters. One jitted call (pgx's own parser
    takes about a second per position in un-jitted array operations); the history before it is empty."""
    from pgx._src.games.chess import Game, GameState, _legal_action_mask
    from pgx.experimental.chess import _update_history

    game = Game()
    # Empty histories: pgx's parser rolls its defaults, which puts the standard start position (and its hash) one
    # step before every FEN root, a history self-play never shows the network.
    x = GameState(board=board, color=color, castling_rights=castling, en_passant=en_passant,
                  halfmove_count=halfmove, fullmove_count=fullmove,
                  board_history=jnp.zeros((8, 64), jnp.int32), hash_history=jnp.zeros((513, 2), jnp.uint32))
    x = x._replace(legal_action_mask=_legal_action_mask(x))
    x = _update_history(x)
    order = jnp.int32([0, 1])
    return State(_player_order=order, _x=x, current_player=order[x.color], legal_action_mask=x.legal_action_mask,
                 terminated=game.is_terminal(x), rewards=game.rewards(x)[order], observation=game.observe(x, x.color))
