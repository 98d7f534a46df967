"""Compact storage is exact: packed observations and compact policies decode to what was stored."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from chessbrain_jax.core import chess_env, encoding


def _random_game_states(num_plies: int, seed: int = 0):
    """States along a random game (as a batch of one game, stepped with jitted pgx)."""
    step = jax.jit(chess_env.step)
    state = chess_env.initial_states(1)
    rng = np.random.default_rng(seed)
    states = []
    for _ in range(num_plies):
        states.append(state)
        legal = np.flatnonzero(np.asarray(state.legal_action_mask[0]))
        state = step(state, jnp.array([rng.choice(legal)], jnp.int32))
        if bool(state.terminated[0]):
            break
    return states


def test_packed_observation_round_trip_is_exact():
    states = _random_game_states(60)
    observations = jnp.concatenate([s.observation for s in states])  # [n, 8, 8, 119]
    packed = jax.jit(encoding.pack_observation)(observations)
    assert packed.bits.shape == (len(states), encoding.PACKED_BYTES) and packed.bits.dtype == jnp.uint8
    assert packed.scalars.shape == (len(states), encoding.SCALAR_PLANES)
    restored = jax.jit(encoding.unpack_observation)(packed)
    np.testing.assert_array_equal(np.asarray(restored), np.asarray(observations))
    # Black-to-move positions are included, and history planes are populated.
    assert {float(s.observation[0, 0, 0, 112]) for s in states} == {0.0, 1.0}


def test_compact_policy_round_trip():
    state = _random_game_states(9)[-1]
    legal = state.legal_action_mask[0]
    weights = jnp.where(legal, jax.random.uniform(jax.random.PRNGKey(1), legal.shape), 0.0)
    weights = weights / weights.sum()
    actions, compact = encoding.compact_policy(legal, weights)
    assert actions.dtype == jnp.int16 and actions.shape == (encoding.MAX_LEGAL_MOVES,)
    assert int((actions >= 0).sum()) == int(legal.sum())
    mask, dense = encoding.expand_policy(actions[None], compact[None])
    np.testing.assert_array_equal(np.asarray(mask[0]), np.asarray(legal))
    np.testing.assert_allclose(np.asarray(dense[0]), np.asarray(weights), rtol=0, atol=0)
