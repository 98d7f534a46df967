"""The network: output shapes and dtypes, and the policy head's square order matching pgx's action encoding."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from chessbrain_jax.core import chess_env, model
from chessbrain_jax.core.types import NUM_ACTIONS
from chessbrain_jax.play import notation


@pytest.mark.parametrize("fen", [
    "rnbqkbnr/pppppppp/8/8/4P3/8/PPPP1PPP/RNBQKBNR b KQkq e3 0 1",  # black to move: pgx flips the board
    "r3k2r/p1ppqpb1/bn2pnp1/3PN3/1p2P3/2N2Q1p/PPPBBPPP/R3K2R w KQkq - 0 1",
])
def test_policy_order_maps_observation_cells_to_pgx_squares(fen):
    state = notation.from_fen(fen)
    board = np.asarray(state._x.board)  # pgx square order, side to move positive
    observation = state.observation[None]
    for piece in range(1, 7):
        plane = observation[..., piece - 1: piece]  # "my" pieces of this type, one plane
        by_square = np.asarray(model.observation_to_action_order(plane))[0]
        np.testing.assert_array_equal(by_square, (board == piece).astype(np.float32))


def test_network_outputs(tiny_network):
    _, params, apply_fn = tiny_network
    observation = chess_env.initial_states(3).observation
    logits, value = jax.jit(apply_fn)(params, observation)
    assert logits.shape == (3, NUM_ACTIONS) and logits.dtype == jnp.float32
    assert value.shape == (3,) and value.dtype == jnp.float32
    assert bool(jnp.all(jnp.abs(value) <= 1.0))
    # Untrained: uniform prior and zero value (zero-initialised output layers).
    np.testing.assert_array_equal(np.asarray(logits), 0.0)
    np.testing.assert_array_equal(np.asarray(value), 0.0)

    # Mixed precision computes the same function to bfloat16 accuracy, returning float32.
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
    trained = jax.tree.unflatten(treedef, [x + 0.2 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])
    logits32, value32 = jax.jit(apply_fn)(trained, observation)
    bf16 = model.ChessNet(channels=8, blocks=1, dtype=jnp.bfloat16)
    logits16, value16 = jax.jit(lambda p, o: bf16.apply({"params": p}, o))(trained, observation)
    assert logits16.dtype == jnp.float32 and value16.dtype == jnp.float32
    # The output layers compute in float32: most logits are not bfloat16 numbers (cast from bfloat16, all would be).
    representable = np.asarray(logits16.astype(jnp.bfloat16).astype(jnp.float32) == logits16)
    assert representable.mean() < 0.1
    assert float(jnp.std(logits32)) > 0.1
    np.testing.assert_allclose(np.asarray(logits16), np.asarray(logits32), atol=0.1 * float(jnp.std(logits32)) + 0.05)
    np.testing.assert_allclose(np.asarray(value16), np.asarray(value32), atol=0.05)


def test_parameter_count_grows_with_width_and_depth():
    def count(net):
        shapes = jax.eval_shape(lambda key: model.init_params(net, key), jax.random.PRNGKey(0))
        return sum(x.size for x in jax.tree.leaves(shapes))

    small, deeper, wider = (count(model.ChessNet(channels=c, blocks=b)) for c, b in ((16, 1), (16, 3), (32, 1)))
    assert small < deeper and small < wider
    # Each extra block adds two 3x3 convolutions (no bias) and two GroupNorms (scale + bias).
    assert deeper - small == 2 * (2 * 9 * 16 * 16 + 2 * 2 * 16)


def test_a_network_with_fewer_history_steps_reads_only_the_newest_positions():
    """history_steps=2: the stem sees 2 x 14 + 7 planes; the 6 older positions' planes change nothing, a plane of
    the previous position or a scalar plane does."""
    network = model.ChessNet(channels=8, blocks=1, history_steps=2)
    params = model.init_params(network, jax.random.PRNGKey(0))
    assert params["stem"]["kernel"].shape == (3, 3, 2 * 14 + 7, 8)
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
    params = jax.tree.unflatten(treedef, [x + 0.2 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])
    apply = jax.jit(lambda o: network.apply({"params": params}, o))
    observation = notation.board_to_state(_played("e2e4", "e7e5", "g1f3", "b8c6")).observation[None]
    logits, value = apply(observation)
    older = observation.at[..., 28:112].set(1.0 - observation[..., 28:112])
    np.testing.assert_array_equal(np.asarray(apply(older)[0]), np.asarray(logits))
    for plane in (14, 27, 112, 118):  # the previous position's first and last plane, the side and counter planes
        changed = observation.at[..., plane].set(1.0 - observation[..., plane])
        assert not np.allclose(np.asarray(apply(changed)[1]), np.asarray(value)) or \
            not np.allclose(np.asarray(apply(changed)[0]), np.asarray(logits))
    assert model.matmul_flops_per_position(32, 4, history_steps=1) == \
        model.matmul_flops_per_position(32, 4) - 2 * 484 * 7 * 14 * 32


def _played(*moves: str):
    import chess

    board = chess.Board()
    for move in moves:
        board.push_uci(move)
    return board
