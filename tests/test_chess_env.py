"""The compact state a search tree stores per node steps exactly like pgx's full state."""

from __future__ import annotations

import chess
import jax
import jax.numpy as jnp
import numpy as np

from chessbrain_jax.core import chess_env, encoding
from chessbrain_jax.core.search import legal_slots
from chessbrain_jax.play import notation

# Few pieces and random moves: positions repeat often, and games run into the fifty-move rule (halfmove clock 99).
STARTS = [
    "4k3/8/8/8/8/8/8/R3K2R w KQ - 0 1",
    "r3k3/8/8/8/8/8/8/4K2R b K - 90 60",
    "4k3/8/3n4/8/8/3N4/8/4K3 w - - 0 1",
    "rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP/RNBQKBNR w KQkq - 0 1",
]
PLIES = 240


def _rook_tour() -> tuple[str, list[int]]:
    """A game whose start position comes back after 72 plies (the rook walks a 36-square cycle while the black king
    steps between g8 and h8), then runs into the fifty-move rule: pgx actions for 100 plies."""
    squares = ([f"a{rank}" for rank in range(2, 8)] + [f"{file}{rank}" for i, file in enumerate("bcdef")
                                                       for rank in (range(7, 2, -1) if i % 2 == 0 else range(3, 8))]
               + [f"{file}2" for file in "fedcb"])
    fen = "7k/8/8/8/8/8/R7/K7 w - - 0 1"
    board, actions = chess.Board(fen), []
    for ply in range(100):
        if ply % 2 == 0:
            move = chess.Move.from_uci(squares[(ply // 2) % 36] + squares[(ply // 2 + 1) % 36])
        else:
            move = chess.Move.from_uci("h8g8" if ply % 4 == 1 else "g8h8")
        assert board.is_legal(move)
        actions.append(notation.move_to_action(board, move))
        board.push(move)
    return fen, actions


def test_compact_node_state_steps_exactly_like_the_full_state():
    """Random games from few-piece positions (repetitions, the fifty-move rule) and one game with a repetition 72
    plies apart: from every position, the compact state restored with its legal moves steps to exactly the same
    next state (observation with its repetition planes, legal moves, result, hashes) as the full state."""
    tour_fen, tour = _rook_tour()
    fens = STARTS * 4 + [tour_fen]
    start = jax.tree.map(lambda *leaves: jnp.stack(leaves), *[notation.from_fen(fen) for fen in fens])
    scripted = np.full((PLIES, len(fens)), -1, np.int32)  # -1: a random legal move
    scripted[:len(tour), -1] = tour
    keys = jax.random.split(jax.random.PRNGKey(0), PLIES)

    def ply(carry, inputs):
        full, compact = carry
        key, chosen = inputs
        slots = legal_slots(full.legal_action_mask)
        count = jnp.maximum((slots >= 0).sum(axis=-1), 1)
        pick = jax.random.randint(key, count.shape, 0, count)
        action = jnp.where(chosen >= 0, chosen, jnp.take_along_axis(slots, pick[:, None], axis=1)[:, 0])
        restored = chess_env.expand(compact, encoding.actions_mask(slots))
        next_full = chess_env.step(full, action)
        next_restored = chess_env.step(restored, action)
        same = dict(
            observation=(next_full.observation == next_restored.observation).all(axis=(1, 2, 3)),
            legal=(next_full.legal_action_mask == next_restored.legal_action_mask).all(axis=-1),
            terminated=next_full.terminated == next_restored.terminated,
            rewards=(next_full.rewards == next_restored.rewards).all(axis=-1),
            board=(next_full._x.board == next_restored._x.board).all(axis=-1),
            repetitions=chess_env.repetitions(next_full) == chess_env.repetitions(next_restored),
            hash_window=(next_full._x.hash_history[:, :chess_env.HASH_WINDOW]
                         == next_restored._x.hash_history[:, :chess_env.HASH_WINDOW]).all(axis=(1, 2)),
        )
        seen = dict(repetitions=chess_env.repetitions(next_full), halfmoves=next_full._x.halfmove_count,
                    terminated=next_full.terminated)
        return (next_full, chess_env.compact(next_full)), (same, seen)

    _, (same, seen) = jax.jit(lambda s: jax.lax.scan(ply, (s, chess_env.compact(s)), (keys, scripted)))(start)
    for name, equal in same.items():
        assert np.asarray(equal).all(), name
    # The games did what makes the hash window matter.
    repetitions = np.asarray(seen["repetitions"])
    assert (repetitions[:, :-1] > 0).sum() >= 5 and (np.asarray(seen["halfmoves"])[:, :-1] >= 100).any()
    assert repetitions[71, -1] == 1 and (repetitions[:71, -1] == 0).all()  # the tour's start position again
    assert np.asarray(seen["terminated"])[99, -1] and not np.asarray(seen["terminated"])[98, -1]  # fifty moves


def test_compact_state_is_small():
    state = chess_env.compact(chess_env.initial_states(1))
    assert sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(state)) < 1500
