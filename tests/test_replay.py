"""Replay buffer: per-slot ring wraparound, column blocks, sample shapes and dtypes, value lookup (known, pending, truncated, too old)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from chessbrain_jax.core import encoding, replay, selfplay, targets
from chessbrain_jax.core.types import PackedObservation, Position, Trajectory
from tests.conftest import make_config

T, B = 3, 4


def _trajectory(first_id: int, generation=0, material=0, root_value=0.0) -> Trajectory:
    """A synthetic [T, B] trajectory whose entry ids (stored in the policy weight 0) are first_id, first_id + 1, ...;
    generation, material and root_value are scalars or [T, B] arrays."""
    ids = (first_id + jnp.arange(T * B, dtype=jnp.float32)).reshape(T, B)
    legal = jnp.full((T, B, encoding.MAX_LEGAL_MOVES), -1, jnp.int16).at[..., :3].set(jnp.int16([5, 100, 4671]))
    position = Position(
        observation=PackedObservation(
            bits=jnp.full((T, B, encoding.PACKED_BYTES), 255, jnp.uint8),
            scalars=jnp.broadcast_to(ids[..., None], (T, B, encoding.SCALAR_PLANES)),
        ),
        legal_actions=legal,
        policy=jnp.zeros((T, B, encoding.MAX_LEGAL_MOVES)).at[..., 0].set(ids).at[..., 1].set(1.0),
        white_to_move=jnp.broadcast_to(jnp.arange(T)[:, None] % 2 == 0, (T, B)),
        slot=jnp.broadcast_to(jnp.arange(B), (T, B)).astype(jnp.int32),
        generation=jnp.broadcast_to(jnp.asarray(generation, jnp.int32), (T, B)),
        material=jnp.broadcast_to(jnp.asarray(material, jnp.int8), (T, B)),
        root_value=jnp.broadcast_to(jnp.asarray(root_value, jnp.float32), (T, B)),
    )
    return Trajectory(position=position, action=jnp.zeros((T, B), jnp.int32))


def _games(config, results=None, generation=None) -> selfplay.SelfPlayState:
    state = selfplay.init_selfplay(config)
    return state._replace(
        results=state.results if results is None else results,
        generation=state.generation if generation is None else generation,
    )


def test_add_wraps_around_each_column_and_keeps_the_newest():
    config = make_config(selfplay_batch=B, replay_capacity=20, batch_size=4)  # 5 rows per slot
    buffer = replay.init_replay(config)
    assert buffer.positions.policy.shape[:2] == (5, B) and replay.replay_rows(config) == 5
    add = jax.jit(replay.add)
    buffer = add(buffer, _trajectory(0), _games(config))
    np.testing.assert_array_equal(np.asarray(buffer.size), [3] * B)
    np.testing.assert_array_equal(np.asarray(buffer.insert_at), [3] * B)
    buffer = add(buffer, _trajectory(12), _games(config))  # plies 3..5 of each slot into 5 rows: ply 5 -> row 0
    np.testing.assert_array_equal(np.asarray(buffer.size), [5] * B)
    np.testing.assert_array_equal(np.asarray(buffer.insert_at), [1] * B)
    stored_ids = np.asarray(buffer.positions.policy[..., 0])  # [row, slot]; id = ply * B + slot
    ply = np.array([5, 1, 2, 3, 4])[:, None]
    np.testing.assert_array_equal(stored_ids, ply * B + np.arange(B))
    # Every stored field moved together.
    np.testing.assert_array_equal(np.asarray(buffer.positions.observation.scalars[..., 0]), stored_ids)


def test_add_of_a_column_block_leaves_the_other_columns_alone():
    config = make_config(selfplay_batch=2 * B, replay_capacity=16, batch_size=4)  # 2 rows per slot
    games = selfplay.init_selfplay(make_config(selfplay_batch=B, replay_capacity=16))
    games = games._replace(generation=jnp.full(B, 3, jnp.int32))
    buffer = jax.jit(replay.add)(replay.init_replay(config), _trajectory(0), games, B)  # slots 4..7 only
    np.testing.assert_array_equal(np.asarray(buffer.size), [0] * B + [2] * B)
    np.testing.assert_array_equal(np.asarray(buffer.slot_generation), [0] * B + [3] * B)
    np.testing.assert_array_equal(np.asarray(buffer.positions.policy[:, B:, 0]), [[4, 5, 6, 7], [8, 9, 10, 11]])
    assert not np.asarray(buffer.positions.policy[:, :B]).any()
    # Sampling draws only filled entries.
    batch = replay.sample(buffer, jax.random.PRNGKey(0), 64)
    assert set(np.asarray(batch.policy[:, 5]).astype(int)) == {4, 5, 6, 7, 8, 9, 10, 11}


def test_add_larger_than_capacity_keeps_the_last_entries():
    config = make_config(selfplay_batch=B, replay_capacity=8, batch_size=4)  # 2 rows per slot
    buffer = replay.add(replay.init_replay(config), _trajectory(0), _games(config))
    np.testing.assert_array_equal(np.asarray(buffer.size), [2] * B)
    np.testing.assert_array_equal(np.sort(np.asarray(buffer.positions.policy[..., 0]).ravel()), np.arange(4, 12))


def test_sample_shapes_dtypes_and_content():
    config = make_config(selfplay_batch=B, replay_capacity=64, batch_size=4)
    results = jnp.full((B, selfplay.result_history_length(config)), jnp.nan).at[:, 0].set(jnp.float32([1, -1, 0, 1]))
    buffer = replay.add(replay.init_replay(config), _trajectory(0), _games(config, results, jnp.ones(B, jnp.int32)))
    batch = jax.jit(replay.sample, static_argnums=2)(buffer, jax.random.PRNGKey(0), 32)
    assert batch.observation.shape == (32, 8, 8, 119) and batch.observation.dtype == jnp.float32
    assert batch.policy.shape == (32, 4672) and batch.policy.dtype == jnp.float32
    assert batch.legal_mask.shape == (32, 4672) and batch.legal_mask.dtype == jnp.bool_
    assert batch.value.shape == (32,) and batch.value.dtype == jnp.float32
    assert batch.value_mask.shape == (32,) and batch.value_mask.dtype == jnp.bool_
    np.testing.assert_array_equal(np.asarray(batch.legal_mask.sum(-1)), 3)
    assert bool(jnp.all(batch.legal_mask[:, jnp.array([5, 100, 4671])]))
    assert bool(jnp.all(batch.observation[..., :112] == 1.0))
    ids = np.asarray(batch.policy[:, 5]).astype(int)  # entry id was stored as the weight of action 5
    assert set(ids) <= set(range(12))  # uniformity: test_sample_is_uniform_over_the_filled_entries
    # Value from the mover's view: slot = id % 4, white to move on even t = id // 4.
    white_result = np.array([1, -1, 0, 1])[ids % 4]
    expected = np.where((ids // 4) % 2 == 0, white_result, -white_result)
    np.testing.assert_array_equal(np.asarray(batch.value), expected)
    assert bool(batch.value_mask.all())


def _chi_square_survival(statistic: float, dof: int) -> float:
    """P(X >= statistic) for X chi-square with an even `dof` = 2m: exp(-x/2) * sum_{j<m} (x/2)^j / j! (closed form,
    no scipy)."""
    half = statistic / 2
    return math.exp(-half) * sum(half ** j / math.factorial(j) for j in range(dof // 2))


def test_sample_is_uniform_over_the_filled_entries():
    config = make_config(selfplay_batch=B, replay_capacity=32, batch_size=4)  # 8 rows per slot
    games = jax.tree.map(lambda x: x[:2], _games(config))
    add = jax.jit(replay.add)  # one program: 3 plies of a two-column block, at any first slot
    buffer = replay.init_replay(config)
    for first_id, first_slot in ((1, 1), (101, 2), (201, 2)):
        buffer = add(buffer, jax.tree.map(lambda x: x[:, :2], _trajectory(first_id)), games, jnp.int32(first_slot))
    np.testing.assert_array_equal(np.asarray(buffer.size), [0, 3, 8, 6])  # slot 0 empty, slot 2 full and wrapped
    stored = np.asarray(buffer.positions.observation.scalars[..., 0]).astype(int)  # [row, slot] entry ids; 0 = empty
    filled = np.concatenate([stored[:size, column] for column, size in enumerate(np.asarray(buffer.size))])
    assert len(set(filled)) == len(filled) == 17 and 0 not in filled and (stored == 0).sum() == 32 - 17

    draws = 20_000
    ids = jax.jit(lambda buffer, key: replay.sample(buffer, key, draws).observation[:, 0, 0, encoding.BINARY_PLANES])(
        buffer, jax.random.PRNGKey(0))  # entry ids only: XLA drops the rest of the batch
    ids = np.asarray(ids).astype(int)
    assert set(ids) <= set(filled)  # never an empty entry (id 0), never an entry outside the filled rows
    counts = np.array([(ids == entry).sum() for entry in filled])
    expected = draws / len(filled)
    statistic = float(((counts - expected) ** 2 / expected).sum())
    # Goodness of fit against uniform over the 17 filled entries (16 degrees of freedom); p < 1e-4 means a statistic
    # above 45.9. Drawing columns uniformly instead of by their fill level gives ~3600.
    assert _chi_square_survival(statistic, len(filled) - 1) > 1e-4, (statistic, counts)


def test_value_targets_pending_truncated_and_forgotten():
    config = make_config(selfplay_batch=B, replay_capacity=64, batch_size=4)
    history = selfplay.result_history_length(config)
    # Slot 0: game 0 won by white; slot 1: game 0 truncated (NaN); slot 2: game 0 still running; slot 3: game 0's
    # result was overwritten by game `history` (its slot has moved on by a full table).
    results = jnp.full((B, history), jnp.nan).at[0, 0].set(1.0).at[3, 0].set(-1.0)
    generation = jnp.int32([1, 1, 0, history])
    buffer = replay.add(replay.init_replay(config), _trajectory(0), _games(config, results, generation))
    value, known = replay.value_targets(buffer, jnp.zeros(4, jnp.int32), jnp.arange(4))  # t = 0, slots 0..3
    np.testing.assert_array_equal(np.asarray(known), [True, False, False, False])
    np.testing.assert_array_equal(np.asarray(value), [1.0, 0.0, 0.0, 0.0])


def test_result_history_covers_the_buffer():
    config = make_config(selfplay_batch=16, replay_capacity=4096)
    # A slot adds one position per ply; the shortest game is 4 plies: 4096 / 16 / 4 = 64 games, plus margin.
    assert selfplay.result_history_length(config) == 66


def test_material_ahead_reads_the_same_game_later_across_the_ring():
    """Material k plies ahead comes from the same column: across the ring's wrap, not past the newest position,
    not into the slot's next game; from the mover's view (white moves at each trajectory's even steps)."""
    config = make_config(selfplay_batch=B, replay_capacity=20, batch_size=4)  # 5 rows per slot
    first = np.arange(1, 13, dtype=np.int8).reshape(T, B)  # plies 0-2; slot 3 starts a new game at ply 2
    generation = np.zeros((T, B), np.int32)
    generation[2, 3] = 1
    buffer = replay.add(replay.init_replay(config), _trajectory(0, generation, first), _games(config))
    ahead = jax.jit(replay.material_ahead, static_argnums=3)
    rows, columns = jnp.int32([0, 0, 0, 1, 2, 0]), jnp.int32([0, 0, 0, 0, 2, 3])
    np.testing.assert_array_equal(ahead(buffer, rows, columns, 1), [5, 5, 5, -9, 11, 8])
    np.testing.assert_array_equal(ahead(buffer, rows, columns, 4), [9, 9, 9, -9, 11, 8])  # no ply 3 stored yet
    np.testing.assert_array_equal(ahead(buffer, rows, columns, 0), [1, 1, 1, -5, 11, 4])
    second = np.arange(21, 33, dtype=np.int8).reshape(T, B)  # plies 3-5: ply 5 wraps to row 0
    buffer = replay.add(buffer, _trajectory(12, 0, second), _games(config))
    rows, columns = jnp.int32([4, 1, 0]), jnp.int32([0, 0, 0])  # plies 4 (black), 1 (black) and 5 (white), slot 0
    np.testing.assert_array_equal(ahead(buffer, rows, columns, 1), [-29, -9, 29])
    np.testing.assert_array_equal(ahead(buffer, rows, columns, 4), [-29, -29, 29])


def test_mix_blends_results_with_material_and_root_values():
    result, known = jnp.float32([1.0, -1.0, 0.0]), jnp.bool_([True, True, False])
    material, root = jnp.float32([0.5, 0.5, 0.5]), jnp.float32([-0.2, 0.4, 0.8])
    value, mask = targets.mix(result, known, material, root, targets.RESULTS_ONLY)
    assert value is result and mask is known
    value, mask = targets.mix(result, known, material, root, targets.ValueMix(0.25, 4, 0.25))
    np.testing.assert_allclose(value, [0.5 + 0.125 - 0.05, -0.5 + 0.125 + 0.1, 0.65], rtol=1e-6)
    assert bool(mask.all())  # every position has a target once anything is mixed in
    value, _ = targets.mix(result, known, material, root, targets.ValueMix(1.0, 4, 0.0))
    np.testing.assert_allclose(value, material)
    np.testing.assert_allclose(targets.material_value(jnp.int32([0, 3, -9])), np.tanh([0.0, 1.0, -3.0]), rtol=1e-6)


def test_sample_mixes_material_ahead_into_the_value_target():
    config = make_config(selfplay_batch=B, replay_capacity=64, batch_size=4)
    material = np.arange(1, 13, dtype=np.int8).reshape(T, B)
    results = jnp.full((B, selfplay.result_history_length(config)), jnp.nan).at[:, 0].set(jnp.float32([1, -1, 0, 1]))
    trajectory = _trajectory(0, 0, material, root_value=0.5)
    buffer = replay.add(replay.init_replay(config), trajectory, _games(config, results, jnp.ones(B, jnp.int32)))
    weights = targets.ValueMix(0.5, 1, 0.0)
    batch = jax.jit(replay.sample, static_argnums=(2, 3, 4))(buffer, jax.random.PRNGKey(0), 32, 1.0, weights)
    ids = np.asarray(batch.policy[:, 5]).astype(int)
    t, slot = ids // 4, ids % 4
    mover = np.where(t % 2 == 0, 1, -1)
    result = mover * np.array([1, -1, 0, 1])[slot]
    lead = mover * material[np.minimum(t + 1, T - 1), slot]
    np.testing.assert_allclose(np.asarray(batch.value), 0.5 * result + 0.5 * np.tanh(lead / 3.0), atol=1e-6)
    assert bool(batch.value_mask.all())


def test_sample_gives_the_plies_left_of_games_with_a_result():
    """Slots 0 and 1 finished their game 0 at ply 10 (a win and a draw), slot 2's is running, slot 3's was cut
    without a verdict: the moves-left target is 10 - ply where the result is known, masked elsewhere."""
    config = make_config(selfplay_batch=B, replay_capacity=64, batch_size=4)
    history = selfplay.result_history_length(config)
    results = jnp.full((B, history), jnp.nan).at[:2, 0].set(jnp.float32([1, 0]))
    games = _games(config, results, jnp.int32([1, 1, 0, 1]))._replace(
        result_plies=jnp.zeros((B, history), jnp.int32).at[:, 0].set(10))
    trajectory = _trajectory(0)
    plies = jnp.broadcast_to(jnp.arange(T)[:, None] + 4, (T, B))  # the positions of plies 4, 5, 6
    scalars = trajectory.position.observation.scalars.at[..., encoding.PLY_SCALAR].set(plies / 512)
    trajectory = trajectory._replace(position=trajectory.position._replace(
        observation=trajectory.position.observation._replace(scalars=scalars)))
    buffer = replay.add(replay.init_replay(config), trajectory, games)
    batch = replay.sample(buffer, jax.random.PRNGKey(0), 64, weights=targets.ValueMix(material_weight=0.5))
    slot = np.asarray(batch.policy[:, 5]).astype(int) % B
    ply = np.asarray(batch.policy[:, 5]).astype(int) // B + 4
    np.testing.assert_array_equal(np.asarray(batch.moves_left_mask), slot < 2)
    np.testing.assert_array_equal(np.asarray(batch.moves_left)[slot < 2], (10 - ply)[slot < 2])
    assert bool(batch.value_mask.all())  # the material mix gives every position a value target
