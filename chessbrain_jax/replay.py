"""The replay buffer: a fixed-capacity ring of positions on the device, a pytree with pure `add` and `sample`.

Positions are stored compactly (`encoding`); value targets are not stored but looked up at sample time in the
self-play results table copied in by `add`, so a position written before its game ended gets its target as soon as
the game has one. Positions of truncated games, and of games still running, are sampled with `value_mask` False:
they train the policy only.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from chessbrain_jax import encoding
from chessbrain_jax.config import Config
from chessbrain_jax.selfplay import Position, SelfPlayState, Trajectory, result_history_length


class ReplayBuffer(NamedTuple):
    """C = replay_capacity positions, B = selfplay_batch, H = results kept per slot.

    positions: `selfplay.Position` `[C, ...]` (packed observation, legal moves, policy target, game id).
    results: `f32[B, H]`, slot_generation: `i32[B]`: the self-play results table as of the last `add`.
    insert_at: `i32[]` next index written; size: `i32[]` filled entries (<= C).
    """

    positions: Position
    results: jax.Array
    slot_generation: jax.Array
    insert_at: jax.Array
    size: jax.Array


class Batch(NamedTuple):
    """A training batch of b positions.

    observation: `f32[b, 8, 8, 119]`; policy: `f32[b, 4672]` target, zero off legal moves; legal_mask: `bool[b, 4672]`;
    value: `f32[b]` game result from the mover's view (0 where unknown); value_mask: `bool[b]` True where known.
    """

    observation: jax.Array
    policy: jax.Array
    legal_mask: jax.Array
    value: jax.Array
    value_mask: jax.Array


def init_replay(config: Config) -> ReplayBuffer:
    capacity, batch = config.replay_capacity, config.selfplay_batch
    return ReplayBuffer(
        positions=Position(
            observation=encoding.PackedObservation(
                bits=jnp.zeros((capacity, encoding.PACKED_BYTES), jnp.uint8),
                scalars=jnp.zeros((capacity, encoding.SCALAR_PLANES), jnp.float32),
            ),
            legal_actions=jnp.full((capacity, encoding.MAX_LEGAL_MOVES), -1, jnp.int16),
            policy=jnp.zeros((capacity, encoding.MAX_LEGAL_MOVES), jnp.float32),
            white_to_move=jnp.zeros(capacity, jnp.bool_),
            slot=jnp.zeros(capacity, jnp.int32),
            generation=jnp.zeros(capacity, jnp.int32),
        ),
        results=jnp.full((batch, result_history_length(config)), jnp.nan, jnp.float32),
        slot_generation=jnp.zeros(batch, jnp.int32),
        insert_at=jnp.zeros((), jnp.int32),
        size=jnp.zeros((), jnp.int32),
    )


def add(buffer: ReplayBuffer, trajectory: Trajectory, selfplay: SelfPlayState) -> ReplayBuffer:
    """Appends the `[T, B]` positions of `trajectory` (oldest first), overwriting the oldest entries when full, and
    takes the results table from `selfplay` (the state after the episode that produced `trajectory`)."""
    capacity = buffer.positions.white_to_move.shape[0]
    flat = jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), trajectory.position)
    count = flat.white_to_move.shape[0]
    if count > capacity:  # static shapes: only the newest `capacity` positions can be kept
        flat = jax.tree.map(lambda x: x[count - capacity:], flat)
        count = capacity
    index = (buffer.insert_at + jnp.arange(count)) % capacity
    write = lambda stored, new: stored.at[index].set(new.astype(stored.dtype))  # noqa: E731
    return ReplayBuffer(
        positions=jax.tree.map(write, buffer.positions, flat),
        results=selfplay.results,
        slot_generation=selfplay.generation,
        insert_at=(buffer.insert_at + count) % capacity,
        size=jnp.minimum(buffer.size + count, capacity),
    )


def value_targets(buffer: ReplayBuffer, index: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(`f32[n]` result from the mover's view, `bool[n]` known) for the positions at `index` `i32[n]`."""
    slot, generation = buffer.positions.slot[index], buffer.positions.generation[index]
    history = buffer.results.shape[1]
    white_result = buffer.results[slot, generation % history]
    still_recorded = buffer.slot_generation[slot] - generation < history
    known = jnp.isfinite(white_result) & still_recorded
    value = jnp.where(buffer.positions.white_to_move[index], white_result, -white_result)
    return jnp.where(known, value, 0.0), known


def sample(buffer: ReplayBuffer, key: jax.Array, batch_size: int) -> Batch:
    """`batch_size` positions drawn uniformly (with replacement) from the filled part. Requires size >= 1."""
    index = jax.random.randint(key, (batch_size,), 0, jnp.maximum(buffer.size, 1))
    chosen = jax.tree.map(lambda x: x[index], buffer.positions)
    legal_mask, policy = encoding.expand_policy(chosen.legal_actions, chosen.policy)
    value, value_mask = value_targets(buffer, index)
    observation = encoding.unpack_observation(chosen.observation)
    return Batch(observation, policy, legal_mask, value, value_mask)
