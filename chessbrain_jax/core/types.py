"""The hot path's shared vocabulary: action and observation constants and the pytrees that pass between self-play,
the replay buffer and the learner. `[...]` is any leading shape."""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import numpy as np

NUM_ACTIONS = 4672  # 64 from-squares x 73 move planes (pgx / AlphaZero encoding): action = from_square * 73 + plane
MOVE_PLANES = 73
OBSERVATION_SHAPE = (8, 8, 119)  # pgx chess: 8 history steps x 14 planes + 7 constant planes
MAX_LEGAL_MOVES = 218  # the most legal moves any chess position has

# (params, f32[B,8,8,119]) -> (logits, value); the learner also calls it with heads=True for (logits, value, extras)
# (`model.make_apply`).
ApplyFn = Callable[..., tuple]


def tree_bytes(tree) -> int:
    """Raw bytes of a pytree of arrays or `jax.ShapeDtypeStruct`s."""
    return sum(math.prod(leaf.shape) * np.dtype(leaf.dtype).itemsize for leaf in jax.tree.leaves(tree))


class PackedObservation(NamedTuple):
    """bits: u8[..., 896] (planes 0-111, packed); scalars: f32[..., 7] (planes 112-118, one value per plane)."""

    bits: jax.Array
    scalars: jax.Array


class Position(NamedTuple):
    """A training position as self-play records it and the replay buffer stores it.

    observation: packed position seen by the mover (`u8[..., 896]` bits, `f32[..., 7]` scalars).
    legal_actions: `i16[..., 218]` legal moves (pgx action ids, -1 padded).
    policy: `f32[..., 218]` search policy target over `legal_actions`; all zeros: no policy target (a cheap search
      under playout-cap randomisation).
    white_to_move: `bool[...]`.
    slot, generation: `i32[...]` the game the position belongs to (its value target is that game's result).
    material: `i8[...]` white's material minus black's, in pawns (`chess_env.material_balance`).
    root_value: `f32[...]` the search's value of the position for the mover (`SearchOutput.root_value`).
    """

    observation: PackedObservation
    legal_actions: jax.Array
    policy: jax.Array
    white_to_move: jax.Array
    slot: jax.Array
    generation: jax.Array
    material: jax.Array
    root_value: jax.Array


class Trajectory(NamedTuple):
    """One record per ply and game, `[T, B]` (T = plies_per_episode, B = selfplay_batch).

    position: `Position` `[T, B, ...]`; action: `i32[T, B]` the move played (after epsilon-greedy mixing).
    """

    position: Position
    action: jax.Array


class Batch(NamedTuple):
    """A training batch of b positions.

    observation: `f32[b, 8, 8, 119]`; policy: `f32[b, 4672]` target, zero off legal moves (all zero: none);
    legal_mask: `bool[b, 4672]`; value: `f32[b]` value target from the mover's view (0 where unknown); value_mask:
    `bool[b]` True where known; moves_left: `f32[b]` plies from the position to its game's end, moves_left_mask:
    `bool[b]` True where the game has a result (the moves-left head's target).
    """

    observation: jax.Array
    policy: jax.Array
    legal_mask: jax.Array
    value: jax.Array
    value_mask: jax.Array
    moves_left: jax.Array
    moves_left_mask: jax.Array
