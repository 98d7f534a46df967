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
    moves_left = (jnp.arange(size) * 7 % 60).astype(jnp.float32)  # plies to the end, 0-59
    return Batch(observation, policy, legal, value, jnp.arange(size) % 4 != 3, moves_left, jnp.arange(size) % 3 != 2)


def _setup(config, dtype="float32"):
    network = model.make_network(config, dtype)
    params = model.init_params(network, jax.random.PRNGKey(0))
    apply_fn = model.make_apply(network)
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


def test_adamw_decays_kernels_apart_from_the_gradient_step():
    """One step of adamw minus one step of adam (same gradient) is exactly -lr x decay x the kernel, and nothing at
    biases and normalisation scales."""
    settings = dict(l2_weight=0.0, learning_rate=1e-2, grad_clip=0.0)
    adam_state, adam_step = _setup(make_config(optimizer="adam", **settings))
    adamw_state, adamw_step = _setup(make_config(optimizer="adamw", weight_decay=0.5, **settings))
    batch = _batch(8)
    after_adam, after_adamw = adam_step(adam_state, batch)[0].params, adamw_step(adamw_state, batch)[0].params
    mask = learner.kernel_mask(adam_state.params)
    expected = jax.tree.map(lambda p, k: -1e-2 * 0.5 * p if k else jnp.zeros_like(p), adam_state.params, mask)
    difference = jax.tree.map(lambda a, b: a - b, after_adamw, after_adam)
    for got, want in zip(jax.tree.leaves(difference), jax.tree.leaves(expected)):
        np.testing.assert_allclose(got, want, atol=1e-7)
    assert sum(jax.tree.leaves(mask)) >= 3 and not all(jax.tree.leaves(mask))


def test_positions_without_a_policy_target_train_the_value_only():
    """All-zero policy rows (cheap searches under playout-cap randomisation) leave the policy loss equal to the mean
    over the rows that have targets, and still count in the value loss."""
    config = make_config(l2_weight=0.0, learning_rate=3e-3)
    state, train_step = _setup(config)
    for _ in range(5):  # a non-uniform network, so that which rows are averaged matters
        state, _ = train_step(state, _batch(8, seed=1))
    network = model.make_network(config)
    apply_fn = model.make_apply(network)
    loss_fn = jax.jit(learner.loss_fn, static_argnums=(2, 3))
    batch = _batch(8)
    has_target = np.arange(8) % 2 == 0
    masked = batch._replace(policy=jnp.where(has_target[:, None], batch.policy, 0.0))
    subset = jax.tree.map(lambda x: x[has_target], batch)
    _, got = loss_fn(state.params, masked, apply_fn, 0.0)
    _, full = loss_fn(state.params, batch, apply_fn, 0.0)
    _, want = loss_fn(state.params, subset, apply_fn, 0.0)
    np.testing.assert_allclose(float(got["policy_loss"]), float(want["policy_loss"]), rtol=1e-5)
    np.testing.assert_allclose(float(got["value_loss"]), float(full["value_loss"]), rtol=1e-6)
    assert float(got["policy_targets_known"]) == 0.5 and float(full["policy_targets_known"]) == 1.0
    assert float(got["policy_loss"]) != pytest.approx(float(full["policy_loss"]), rel=1e-3)


def test_loss_terms():
    config = make_config(l2_weight=0.0)
    state, _ = _setup(config)
    network = model.make_network(config)
    apply_fn = model.make_apply(network)
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
    # Diagnostics: the target's entropy, and KL(target || uniform prior over 20 moves) = log 20 - entropy.
    target = np.asarray(batch.policy)
    entropy = -np.sum(np.where(target > 0, target * np.log(np.where(target > 0, target, 1.0)), 0.0)) / 8
    np.testing.assert_allclose(float(metrics["policy_target_entropy"]), entropy, rtol=1e-5)
    np.testing.assert_allclose(float(metrics["policy_kl"]), np.log(20.0) - entropy, rtol=1e-4)
    assert 0.0 < entropy < np.log(20.0)


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


def test_accumulation_with_unequal_known_counts_averages_the_micro_batch_gradients():
    """Known targets 4, 1, 0, 3 in the four micro-batches: each normalises its value loss by its own count and
    MultiSteps averages the gradients (`learner.loss_fn`), which is not one batch of 16 (8 known)."""
    known = np.array([4, 1, 0, 3])
    mask = jnp.asarray(np.arange(4)[None, :] < known[:, None]).reshape(16)
    batch = _batch(16, seed=3)._replace(value_mask=mask)
    micro = [jax.tree.map(lambda x: x[index * 4:(index + 1) * 4], batch) for index in range(4)]
    # SGD: the update is linear in the gradient (Adam's first step is nearly its sign), so weightings show.
    small_config = make_config(batch_size=4, grad_accum_steps=4, optimizer="sgd", learning_rate=1e-2)
    small, small_step = _setup(small_config)
    params = small.params
    for micro_batch in micro:
        small, _ = small_step(small, micro_batch)
    assert int(small.step) == 1

    network = model.make_network(small_config)
    apply_fn = model.make_apply(network)
    grad_fn = jax.jit(jax.grad(learner.loss_fn, has_aux=True), static_argnums=(2, 3))
    l2_weight = small_config.l2_weight
    grads = [grad_fn(params, b, apply_fn, l2_weight)[0] for b in micro]
    without_value = [grad_fn(params, b._replace(value_mask=jnp.zeros(4, bool)), apply_fn, l2_weight)[0] for b in micro]
    one_batch = grad_fn(params, batch, apply_fn, l2_weight)[0]

    def mean(trees, weights):
        return jax.tree.map(lambda *leaves: sum(w * leaf for w, leaf in zip(weights, leaves)), *trees)

    def close(a, b):
        jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=2e-4, atol=2e-6), a, b)

    # The exact relation: the step applies the inner optimizer to the plain mean of the micro-batch gradients.
    reference_config = make_config(batch_size=16, grad_accum_steps=1, optimizer="sgd", learning_rate=1e-2)
    reference, reference_step = _setup(reference_config)
    optimizer = learner.make_optimizer(reference_config)
    updates, _ = optimizer.update(mean(grads, [0.25] * 4), reference.opt_state, params)
    close(small.params, jax.tree.map(lambda p, u: p + u, params, updates))
    # One batch of 16 weighs micro-batch i's (normalised) value gradient n_i / 8, the accumulation 1 / 4 each;
    # policy and L2 gradients agree.
    value = [jax.tree.map(jnp.subtract, g, w) for g, w in zip(grads, without_value)]
    close(one_batch, jax.tree.map(jnp.add, mean(without_value, [0.25] * 4), mean(value, known / known.sum())))
    one_batch_state, _ = reference_step(reference, batch)
    difference = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(small.params),
                                                                   jax.tree.leaves(one_batch_state.params)))
    assert difference > 1e-4, difference  # not one batch of 16 when the counts differ


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


def test_cosine_decays_over_lr_decay_episodes():
    stored = make_config(lr_schedule="cosine", episodes=4, lr_decay_episodes=2, learning_rate=0.1)
    assert stored.optimizer_steps_per_episode == 2  # 4 games x 4 plies / batch 8: a 4-step horizon
    schedule = learner.learning_rate_schedule(stored)
    assert float(schedule(2)) == pytest.approx(0.05) and float(schedule(4)) == float(schedule(7)) == 0.0
    unset = learner.learning_rate_schedule(make_config(lr_schedule="cosine", episodes=4, learning_rate=0.1))
    assert float(unset(4)) == pytest.approx(0.05) and float(unset(8)) == 0.0  # 0: over --episodes


def test_scan_and_host_training_loops_agree():
    from tests.test_replay import _games, _trajectory

    config = make_config(selfplay_batch=4, plies_per_episode=3, batch_size=4, grad_accum_steps=2, replay_capacity=64)
    network = model.make_network(config)
    apply_fn = model.make_apply(network)
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


def test_wdl_head_trains_by_cross_entropy_on_soft_targets():
    """Untrained, a WDL head is uniform: value W - L = 0 and cross-entropy log 3 against any soft target; the soft
    targets' W - L is the scalar target; a few steps fit the value."""
    np.testing.assert_allclose(learner.wdl_targets(jnp.array([1.0, -0.5, 0.0])),
                               [[1, 0, 0], [0, 0.5, 0.5], [0, 1, 0]])
    config = make_config(value_head="wdl", l2_weight=0.0, learning_rate=3e-3, batch_size=16)
    state, train_step = _setup(config)
    network = model.make_network(config)
    batch = _batch(16)
    _, metrics = learner.loss_fn(state.params, batch, model.make_apply(network), 0.0)
    np.testing.assert_allclose(float(metrics["value_loss"]), np.log(3.0), rtol=1e-5)
    known = np.asarray(batch.value_mask)
    np.testing.assert_allclose(float(metrics["value_mse"]), np.mean(np.asarray(batch.value)[known] ** 2), rtol=1e-5)
    for _ in range(30):
        state, metrics = train_step(state, batch)
    assert float(metrics["value_mse"]) < 0.5 * np.mean(np.asarray(batch.value)[known] ** 2)
    logits, value, extras = model.make_apply(network)(state.params, batch.observation, heads=True)
    probabilities = jax.nn.softmax(extras["wdl"], axis=-1)
    np.testing.assert_allclose(value, probabilities[:, 0] - probabilities[:, 2], atol=1e-6)


def test_moves_left_head_trains_on_the_plies_to_the_end_of_finished_games():
    """Untrained, the head predicts 20 x softplus(0) plies everywhere; its loss is the Huber loss in units of 20
    plies over the positions with a result only, added with --moves-left-weight; a few steps fit the targets."""
    config = make_config(moves_left_weight=1.0, l2_weight=0.0, learning_rate=3e-3, batch_size=16)
    state, train_step = _setup(config)
    apply_fn = model.make_apply(model.make_network(config))
    batch = _batch(16)
    _, _, extras = apply_fn(state.params, batch.observation, heads=True)
    np.testing.assert_allclose(extras["moves_left"], 20 * np.log(2.0), rtol=1e-5)
    known = np.asarray(batch.moves_left_mask)
    error = (20 * np.log(2.0) - np.asarray(batch.moves_left)[known]) / 20
    huber = np.where(np.abs(error) <= 1, 0.5 * error ** 2, np.abs(error) - 0.5)
    loss, metrics = learner.loss_fn(state.params, batch, apply_fn, 0.0, moves_left_weight=0.5)
    np.testing.assert_allclose(float(metrics["moves_left_loss"]), huber.mean(), rtol=1e-5)
    np.testing.assert_allclose(float(metrics["moves_left_error"]), 20 * np.abs(error).mean(), rtol=1e-5)
    np.testing.assert_allclose(float(loss), float(metrics["policy_loss"] + metrics["value_loss"])
                               + 0.5 * huber.mean(), rtol=1e-5)
    first = float(metrics["moves_left_error"])
    for _ in range(40):
        state, metrics = train_step(state, batch)
    assert float(metrics["moves_left_error"]) < 0.6 * first
