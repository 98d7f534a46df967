"""The replay buffer: a ring of positions per self-play slot, on the device; a pytree with pure `add` and `sample`.

The buffer is `[R, B]`: column b holds the last R = ceil(replay_capacity / selfplay_batch) positions of self-play
slot b, so the layout does not depend on how many devices share it: with data parallelism each device holds the
columns of its own games (`sharding`), and a checkpoint restores onto any device count that divides B. Positions
are stored compactly (`encoding`); value targets are not stored but looked up at sample time in the self-play
results table copied in by `add`, so a position written before its game ended gets its target as soon as the game
has one. Positions of truncated games, and of games still running, are sampled with `value_mask` False: they train
the policy only.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from chessbrain_jax import encoding
from chessbrain_jax.config import Config
from chessbrain_jax.selfplay import Position, SelfPlayState, Trajectory, result_history_length


def replay_rows(config: Config) -> int:
    """R, the positions kept per self-play slot (the buffer holds R x selfplay_batch >= replay_capacity)."""
    return math.ceil(config.replay_capacity / config.selfplay_batch)


class ReplayBuffer(NamedTuple):
    """R = `replay_rows`, B = selfplay_batch, H = results kept per slot.

    positions: `selfplay.Position` `[R, B, ...]` (packed observation, legal moves, policy target, game id); column b
      is slot b's ring.
    results: `f32[B, H]`, result_plies: `i32[B, H]`, slot_generation: `i32[B]`: the self-play results table (and
      game lengths) as of the last `add`.
    insert_at: `i32[B]` next row written in each column; size: `i32[B]` filled rows of each column (<= R).
    """

    positions: Position
    results: jax.Array
    result_plies: jax.Array
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
    rows, batch, history = replay_rows(config), config.selfplay_batch, result_history_length(config)
    return ReplayBuffer(
        positions=Position(
            observation=encoding.PackedObservation(
                bits=jnp.zeros((rows, batch, encoding.PACKED_BYTES), jnp.uint8),
                scalars=jnp.zeros((rows, batch, encoding.SCALAR_PLANES), jnp.float32),
            ),
            legal_actions=jnp.full((rows, batch, encoding.MAX_LEGAL_MOVES), -1, jnp.int16),
            policy=jnp.zeros((rows, batch, encoding.MAX_LEGAL_MOVES), jnp.float32),
            white_to_move=jnp.zeros((rows, batch), jnp.bool_),
            slot=jnp.zeros((rows, batch), jnp.int32),
            generation=jnp.zeros((rows, batch), jnp.int32),
        ),
        results=jnp.full((batch, history), jnp.nan, jnp.float32),
        result_plies=jnp.zeros((batch, history), jnp.int32),
        slot_generation=jnp.zeros(batch, jnp.int32),
        insert_at=jnp.zeros(batch, jnp.int32),
        size=jnp.zeros(batch, jnp.int32),
    )


def add(buffer: ReplayBuffer, trajectory: Trajectory, selfplay: SelfPlayState,
        first_slot: int | jax.Array = 0) -> ReplayBuffer:
    """Appends the `[T, b]` positions of `trajectory` (oldest first) to columns `first_slot .. first_slot + b - 1`,
    overwriting each column's oldest rows when full, and takes those slots' results from `selfplay` (the `[b]` games
    after the episode that produced `trajectory`). b = B fills every column; a producer's block fills its own."""
    rows = buffer.positions.white_to_move.shape[0]
    count, width = trajectory.action.shape
    new = trajectory.position
    if count > rows:  # static shapes: only the newest `rows` plies can be kept
        new = jax.tree.map(lambda x: x[count - rows:], new)
        count = rows

    def columns(x, axis):
        return jax.lax.dynamic_slice_in_dim(x, first_slot, width, axis=axis)

    def put_columns(x, block, axis):
        return jax.lax.dynamic_update_slice_in_dim(x, block.astype(x.dtype), first_slot, axis=axis)

    insert_at = columns(buffer.insert_at, 0)
    row = (insert_at[None, :] + jnp.arange(count)[:, None]) % rows  # [count, b]
    column = jnp.broadcast_to(jnp.arange(width), (count, width))
    write = lambda stored, x: put_columns(  # noqa: E731
        stored, columns(stored, 1).at[row, column].set(x.astype(stored.dtype)), 1)
    return ReplayBuffer(
        positions=jax.tree.map(write, buffer.positions, new),
        results=put_columns(buffer.results, selfplay.results, 0),
        result_plies=put_columns(buffer.result_plies, selfplay.result_plies, 0),
        slot_generation=put_columns(buffer.slot_generation, selfplay.generation, 0),
        insert_at=put_columns(buffer.insert_at, (insert_at + count) % rows, 0),
        size=put_columns(buffer.size, jnp.minimum(columns(buffer.size, 0) + count, rows), 0),
    )


def value_targets(buffer: ReplayBuffer, row: jax.Array, column: jax.Array,
                  discount: float = 1.0) -> tuple[jax.Array, jax.Array]:
    """(`f32[n]` value target from the mover's view, `bool[n]` known) for the positions at (`row`, `column`) `i32[n]`.

    The target is the game's result times `discount^(d - 1)`, d the plies from the position to the game's end: the
    return the search's per-ply discount (`search`) gives the same game, so the mating move's position gets the full
    result.
    """
    generation = buffer.positions.generation[row, column]
    history = buffer.results.shape[1]
    white_result = buffer.results[column, generation % history]
    still_recorded = buffer.slot_generation[column] - generation < history
    known = jnp.isfinite(white_result) & still_recorded
    value = jnp.where(buffer.positions.white_to_move[row, column], white_result, -white_result)
    if discount != 1.0:
        to_end = (buffer.result_plies[column, generation % history]
                  - encoding.plies(buffer.positions.observation.scalars[row, column]))
        value = value * jnp.float32(discount) ** jnp.maximum(to_end - 1, 0).astype(jnp.float32)
    return jnp.where(known, value, 0.0), known


def sample(buffer: ReplayBuffer, key: jax.Array, batch_size: int, discount: float = 1.0) -> Batch:
    """`batch_size` positions drawn uniformly (with replacement) from the filled entries, value targets discounted
    per ply by `discount` (`value_targets`). Requires a filled entry."""
    column_key, row_key = jax.random.split(key)
    filled = buffer.size.astype(jnp.float32)
    column = jax.random.categorical(column_key, jnp.log(filled), shape=(batch_size,))  # P(column) ~ its entries
    row = jax.random.randint(row_key, (batch_size,), 0, jnp.maximum(buffer.size[column], 1))
    chosen = jax.tree.map(lambda x: x[row, column], buffer.positions)
    legal_mask, policy = encoding.expand_policy(chosen.legal_actions, chosen.policy)
    value, value_mask = value_targets(buffer, row, column, discount)
    observation = encoding.unpack_observation(chosen.observation)
    return Batch(observation, policy, legal_mask, value, value_mask)
