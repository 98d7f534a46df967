"""Learner: loss goes down on a fixed batch, MultiSteps accumulation equals one large batch, both precisions run."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from chessbrain_jax.core import learner, model, replay
from chessbrain_jax.core.types import Batch
from tests.conftest import make_config


def _batch(size: int, seed: int = 0) -> Batch:
    """A fixed batch with binary piece planes, 20 legal moves per position, a peaked policy target and results."""
    keys = jax.random.split(jax.random.PRNGKey(seed), 4)
    observation = jax.random.bernoulli(keys[0], 0.1, (size, 8, 8, 119)).astype(jnp.float32)
    legal_moves = jax.vmap(lambda k: jax.random.choice(k, 4672, (20,), replace=False))(jax.random.split(keys[1], size))
    legal = jnp.zeros((size, 4672), bool).at[jnp.arange(size)[:, None], legal_moves].set(True)
    policy = jnp.zeros((size, 4672)).at[jnp.arange(size)[:, None], legal_moves].set(
        jax.nn.softmax(3.0 * jax.random.normal(keys[2], (size, 20))))
    value = jax.random.choice(keys[3], jnp.float32([-1, 0, 1]), (size,))
    return Batch(observation, policy, legal, value, jnp.arange(size) % 4 != 3)


def _setup(config, dtype="float32"):
    network = model.make_network(config, dtype)
    params = model.init_params(network, jax.random.PRNGKey(0))
    apply_fn = lambda p, o: network.apply({"params": p}, o)  # noqa: E731
    optimizer = learner.make_optimizer(config)
    return learner.init_train_state(params, optimizer), jax.jit(learner.make_train_step(config, apply_fn, optimizer))


def test_loss_goes_down_on_a_fixed_batch():
    config = make_config(learning_rate=3e-3, batch_size=16)
    state, train_step = _setup(config)
    batch = _batch(16)
    losses = []
    for _ in range(30):
        state, metrics = train_step(state, batch)
        losses.append(float(metrics["loss"]))
    assert int(state.step) == 30
    assert losses[-1] < 0.6 * losses[0], losses
    assert float(metrics["policy_loss"]) < losses[0]
    assert float(metrics["value_targets_known"]) == pytest.approx(0.75)


def test_loss_terms():
    config = make_config(l2_weight=0.0)
    state, _ = _setup(config)
    network = model.make_network(config)
    apply_fn = lambda p, o: network.apply({"params": p}, o)  # noqa: E731
    batch = _batch(8)
    loss_fn = jax.jit(learner.loss_fn, static_argnums=(2, 3))
    _, metrics = loss_fn(state.params, batch, apply_fn, 0.0)
    # Untrained: uniform over the 20 legal moves, value 0.
    np.testing.assert_allclose(float(metrics["policy_loss"]), np.log(20.0), rtol=1e-5)
    known = np.asarray(batch.value_mask)
    np.testing.assert_allclose(float(metrics["value_loss"]), np.mean(np.asarray(batch.value)[known] ** 2), rtol=1e-5)
    _, with_l2 = loss_fn(state.params, batch, apply_fn, 0.5)
    expected_l2 = 0.5 * sum(float(jnp.sum(x ** 2)) for p, x in jax.tree_util.tree_leaves_with_path(state.params)
                            if p[-1].key == "kernel")
    np.testing.assert_allclose(float(with_l2["l2"]), expected_l2, rtol=1e-5)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_multisteps_accumulation_matches_one_large_batch(optimizer):
    batch = _batch(16, seed=3)
    large_config = make_config(batch_size=16, grad_accum_steps=1, optimizer=optimizer, learning_rate=1e-2)
    large, large_step = _setup(large_config)
    large, _ = large_step(large, batch)

    small_config = make_config(batch_size=4, grad_accum_steps=4, optimizer=optimizer, learning_rate=1e-2)
    small, small_step = _setup(small_config)
    for index in range(4):
        before = small.params
        small, _ = small_step(small, jax.tree.map(lambda x: x[index * 4:(index + 1) * 4], batch))
        if index < 3:  # no update until the k-th micro-batch
            assert int(small.step) == 0
            jax.tree.map(np.testing.assert_array_equal, before, small.params)
    assert int(small.step) == int(large.step) == 1
    # Per-micro-batch value losses average over each micro-batch's known targets (3 of 4 everywhere here),
    # so the mean of micro-batch gradients equals the large-batch gradient.
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6), small.params, large.params)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_both_precisions_train_with_finite_losses(dtype):
    config = make_config(batch_size=8)
    state, train_step = _setup(config, dtype)
    for _ in range(3):
        state, metrics = train_step(state, _batch(8))
    assert all(np.isfinite(float(v)) for v in metrics.values())
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(state.params))  # fp32 master weights


def test_learning_rate_schedules():
    cosine = learner.learning_rate_schedule(make_config(lr_schedule="cosine", warmup_steps=2, episodes=2,
                                                        learning_rate=0.1))
    assert float(cosine(0)) == 0.0 and float(cosine(2)) == pytest.approx(0.1)
    assert float(cosine(3)) < 0.1
    constant = learner.learning_rate_schedule(make_config(learning_rate=0.1))
    assert float(constant(0)) == float(constant(1000)) == pytest.approx(0.1)


def test_scan_and_host_training_loops_agree():
    from tests.test_replay import _games, _trajectory

    config = make_config(selfplay_batch=4, plies_per_episode=3, batch_size=4, grad_accum_steps=2, replay_capacity=64)
    network = model.make_network(config)
    apply_fn = lambda p, o: network.apply({"params": p}, o)  # noqa: E731
    optimizer = learner.make_optimizer(config)
    buffer = replay.add(replay.init_replay(config), _trajectory(0), _games(config))
    params = model.init_params(network, jax.random.PRNGKey(0))
    results = {}
    for loop, wait in (("scan", False), ("host", False), ("host", True)):
        chunk = learner.TrainChunk(config, apply_fn, optimizer, loop, wait=wait)
        state = learner.init_train_state(jax.tree.map(jnp.copy, params), optimizer)
        chunk.compile(state, buffer, jax.random.PRNGKey(5))
        results[loop, wait] = chunk(state, buffer, jax.random.PRNGKey(5))
    assert config.micro_steps_per_episode == 4 and int(results["host", False][0].step) == 2
    for other in (("host", False), ("host", True)):
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), results["scan", False],
                     results[other])
    assert learner.resolve_train_loop(config, "cpu") == "host"
    assert learner.resolve_train_loop(config, "gpu") == "scan"
