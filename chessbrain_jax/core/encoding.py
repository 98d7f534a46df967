"""Compact, exact storage formats for positions and policy targets (what the replay buffer holds per position).

A pgx observation is `f32[8, 8, 119]` (30 KB): planes 0-111 are 0/1 (8 history steps x 12 piece planes + 2
repetition planes) and planes 112-118 are constant over the board (colour, ply/512, four castling rights,
halfmove/100). Stored as 896 bytes of packed bits plus 7 floats, it decodes back bit for bit.

A policy target is non-zero only on legal moves; at most 218 moves are legal in any chess position, so a target is
stored as up to 218 (action, weight) pairs instead of 4672 floats.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from chessbrain_jax.config import PGX_MAX_PLIES
from chessbrain_jax.core.types import MAX_LEGAL_MOVES, NUM_ACTIONS, OBSERVATION_SHAPE, PackedObservation

BINARY_PLANES = 112
SCALAR_PLANES = OBSERVATION_SHAPE[-1] - BINARY_PLANES  # 7
PACKED_BYTES = 64 * BINARY_PLANES // 8  # 896
PLY_SCALAR = 1  # plane 113, pgx's "total move count": plies since the game's start / 512



def pack_observation(observation: jax.Array) -> PackedObservation:
    """`f32[..., 8, 8, 119]` -> `PackedObservation`; exact for pgx observations."""
    lead = observation.shape[:-3]
    binary = observation[..., :BINARY_PLANES].reshape(*lead, 64 * BINARY_PLANES) > 0.5
    return PackedObservation(jnp.packbits(binary, axis=-1), observation[..., 0, 0, BINARY_PLANES:])


def unpack_observation(packed: PackedObservation) -> jax.Array:
    """`PackedObservation` -> `f32[..., 8, 8, 119]`."""
    lead = packed.bits.shape[:-1]
    binary = jnp.unpackbits(packed.bits, axis=-1, count=64 * BINARY_PLANES)
    binary = binary.reshape(*lead, 8, 8, BINARY_PLANES).astype(jnp.float32)
    scalars = jnp.broadcast_to(packed.scalars[..., None, None, :].astype(jnp.float32), (*lead, 8, 8, SCALAR_PLANES))
    return jnp.concatenate([binary, scalars], axis=-1)


def plies(scalars: jax.Array) -> jax.Array:
    """`PackedObservation.scalars` `f32[..., 7]` -> `i32[...]` the plies played before each position (exact:
    k / 512 is a float32 for k <= 512)."""
    return jnp.round(scalars[..., PLY_SCALAR] * PGX_MAX_PLIES).astype(jnp.int32)


def compact_policy(legal_mask: jax.Array, weights: jax.Array) -> tuple[jax.Array, jax.Array]:
    """`bool[4672]`, `f32[4672]` -> (`i16[218]` legal actions padded with -1, `f32[218]` their weights). Unbatched."""
    actions = jnp.nonzero(legal_mask, size=MAX_LEGAL_MOVES, fill_value=-1)[0]
    compact_weights = jnp.where(actions >= 0, weights[jnp.maximum(actions, 0)], 0.0)
    return actions.astype(jnp.int16), compact_weights.astype(jnp.float32)


def actions_mask(actions: jax.Array) -> jax.Array:
    """`i16[B, 218]` actions, -1 padded -> `bool[B, 4672]` the mask with exactly those actions set."""
    index = jnp.where(actions >= 0, actions.astype(jnp.int32), NUM_ACTIONS)  # padding -> dropped
    return jax.vmap(lambda row: jnp.zeros(NUM_ACTIONS, jnp.bool_).at[row].set(True, mode="drop"))(index)


def expand_policy(actions: jax.Array, weights: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Inverse of `compact_policy`, batched: `i16[B, 218]`, `f32[B, 218]` -> (`bool[B, 4672]`, `f32[B, 4672]`)."""
    index = jnp.where(actions >= 0, actions.astype(jnp.int32), NUM_ACTIONS)
    dense = jax.vmap(lambda row, w: jnp.zeros(NUM_ACTIONS, jnp.float32).at[row].set(w, mode="drop"))(index, weights)
    return actions_mask(actions), dense
