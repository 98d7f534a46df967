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

from chessbrain_jax.config import Config
from chessbrain_jax.core import encoding, targets
from chessbrain_jax.core.selfplay import SelfPlayState, result_history_length
from chessbrain_jax.core.types import MAX_LEGAL_MOVES, Batch, PackedObservation, Position, Trajectory


def replay_rows(config: Config) -> int:
    """R, the positions kept per self-play slot (the buffer holds R x selfplay_batch >= replay_capacity)."""
    return math.ceil(config.replay_capacity / config.selfplay_batch)


class ReplayBuffer(NamedTuple):
    """R = `replay_rows`, B = selfplay_batch, H = results kept per slot.

    positions: `Position` `[R, B, ...]` (packed observation, legal moves, policy target, game id); column b
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


def init_replay(config: Config) -> ReplayBuffer:
    rows, batch, history = replay_rows(config), config.selfplay_batch, result_history_length(config)
    return ReplayBuffer(
        positions=Position(
            observation=PackedObservation(
                bits=jnp.zeros((rows, batch, encoding.PACKED_BYTES), jnp.uint8),
                scalars=jnp.zeros((rows, batch, encoding.SCALAR_PLANES), jnp.float32),
            ),
            legal_actions=jnp.full((rows, batch, MAX_LEGAL_MOVES), -1, jnp.int16),
            policy=jnp.zeros((rows, batch, MAX_LEGAL_MOVES), jnp.float32),
            white_to_move=jnp.zeros((rows, batch), jnp.bool_),
            slot=jnp.zeros((rows, batch), jnp.int32),
            generation=jnp.zeros((rows, batch), jnp.int32),
            material=jnp.zeros((rows, batch), jnp.int8),
            root_value=jnp.zeros((rows, batch), jnp.float32),
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
    """(`f32[n]` value target from the mover's view, `bool[n]` known) for the positions at (`row`, `column`)
    `i32[n]`: their games' results as of the last `add`, discounted per ply (`targets.lookup`)."""
    positions = buffer.positions
    return targets.lookup(buffer.results, buffer.result_plies, buffer.slot_generation, column,
                          positions.generation[row, column], positions.white_to_move[row, column],
                          encoding.plies(positions.observation.scalars[row, column]), discount)


def material_ahead(buffer: ReplayBuffer, row: jax.Array, column: jax.Array, plies: int) -> jax.Array:
    """`i32[n]` the mover's material lead (pawns) `plies` plies after the positions at (`row`, `column`) `i32[n]`,
    read from the same column (a slot's consecutive plies); where the game ended sooner, or those plies are not
    played yet, at the game's last stored position before then."""
    rows = buffer.positions.white_to_move.shape[0]
    positions = buffer.positions
    generation = positions.generation[row, column]
    written_after = (buffer.insert_at[column] - 1 - row) % rows  # positions stored after `row` in its column
    lead = positions.material[row, column].astype(jnp.int32)
    for ahead in range(1, plies + 1):
        later = (row + ahead) % rows
        same_game = (ahead <= written_after) & (positions.generation[later, column] == generation)
        lead = jnp.where(same_game, positions.material[later, column].astype(jnp.int32), lead)
    return jnp.where(positions.white_to_move[row, column], lead, -lead)


def sample(buffer: ReplayBuffer, key: jax.Array, batch_size: int, discount: float = 1.0,
           weights: targets.ValueMix = targets.RESULTS_ONLY) -> Batch:
    """`batch_size` positions drawn uniformly (with replacement) from the filled entries, value targets discounted
    per ply by `discount` (`value_targets`) and mixed with material and root values by `weights` (`targets.mix`),
    and the plies left to their games' ends where those have results. Requires a filled entry."""
    column_key, row_key = jax.random.split(key)
    filled = buffer.size.astype(jnp.float32)
    column = jax.random.categorical(column_key, jnp.log(filled), shape=(batch_size,))  # P(column) ~ its entries
    row = jax.random.randint(row_key, (batch_size,), 0, jnp.maximum(buffer.size[column], 1))
    chosen = jax.tree.map(lambda x: x[row, column], buffer.positions)
    legal_mask, policy = encoding.expand_policy(chosen.legal_actions, chosen.policy)
    value, value_mask = value_targets(buffer, row, column, discount)
    moves_left = targets.plies_left(buffer.result_plies, column, chosen.generation,
                                    encoding.plies(chosen.observation.scalars))
    result_known = value_mask
    if weights.material_weight or weights.root_weight:
        material = targets.material_value(material_ahead(buffer, row, column, weights.material_plies))
        value, value_mask = targets.mix(value, value_mask, material, chosen.root_value, weights)
    observation = encoding.unpack_observation(chosen.observation)
    return Batch(observation, policy, legal_mask, value, value_mask, moves_left, result_known)
