"""The learner: loss, optimizer and the pure, jitted training step over replay samples.

loss = policy cross-entropy against the search policy over legal moves (where the position has one)
     + value MSE against the game result (only where the result is known; cross-entropy with a WDL head)
     + l2_weight * sum of squared kernel weights (or, with `--optimizer adamw`, decoupled decay of the kernels).
Gradients are clipped to `grad_clip` global norm; `optax.MultiSteps` accumulates `grad_accum_steps` micro-batches
per optimizer step. Parameters and optimizer state are float32; the network computes in its own dtype (bfloat16
with mixed precision), and the loss is computed in float32.
"""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from chessbrain_jax.config import Config
from chessbrain_jax.core import replay, targets
from chessbrain_jax.core.model import MOVES_LEFT_SCALE
from chessbrain_jax.core.search import mask_illegal
from chessbrain_jax.core.types import ApplyFn, Batch


@flax.struct.dataclass
class TrainState:
    """params: float32 network parameters; opt_state: `optax.MultiSteps` state; step: `i32[]` optimizer updates
    applied (MultiSteps' gradient_step: skipped non-finite micro-batches do not count)."""

    params: Any
    opt_state: Any
    step: jax.Array


def learning_rate_schedule(config: Config) -> optax.Schedule:
    """The learning rate per optimizer step. The cosine decays to 0 over `lr_decay_episodes` episodes, which a new
    job fixes at its `--episodes` (`run.job.with_lr_horizon`), so a resume with other `--episodes` keeps it; 0 (a
    config that was never started as a job) means `episodes`."""
    horizon = config.lr_decay_episodes or config.episodes
    total = max(horizon * config.optimizer_steps_per_episode, 1)
    if config.lr_schedule == "cosine":
        return optax.warmup_cosine_decay_schedule(
            0.0, config.learning_rate, config.warmup_steps, max(total, config.warmup_steps + 1))
    if config.warmup_steps:
        return optax.linear_schedule(0.0, config.learning_rate, config.warmup_steps)
    return optax.constant_schedule(config.learning_rate)


def make_optimizer(config: Config) -> optax.MultiSteps:
    schedule = learning_rate_schedule(config)
    if config.optimizer == "sgd":
        inner = optax.sgd(schedule, momentum=0.9, nesterov=True)
    elif config.optimizer == "adamw":
        inner = optax.adamw(schedule, weight_decay=config.weight_decay, mask=kernel_mask)
    else:
        inner = optax.adam(schedule)
    if config.grad_clip > 0:
        inner = optax.chain(optax.clip_by_global_norm(config.grad_clip), inner)
    # A micro-batch whose gradient is not finite is skipped (counted in the MultiSteps state), not applied.
    return optax.MultiSteps(inner, every_k_schedule=config.grad_accum_steps,
                            should_skip_update_fn=optax.skip_not_finite)


def init_train_state(params, optimizer: optax.MultiSteps) -> TrainState:
    return TrainState(params=params, opt_state=optimizer.init(params), step=jnp.zeros((), jnp.int32))


def _is_kernel(path) -> bool:
    return getattr(path[-1], "key", None) == "kernel"


def kernel_mask(params):
    """True at the kernels (convolutions and dense layers), False at biases and normalisation scales: what L2 and
    decoupled weight decay act on."""
    return jax.tree_util.tree_map_with_path(lambda path, _: _is_kernel(path), params)


def l2_penalty(params) -> jax.Array:
    """Sum of squared kernel weights (see `kernel_mask`)."""
    leaves = jax.tree_util.tree_leaves_with_path(params)
    return sum(jnp.sum(jnp.square(leaf)) for path, leaf in leaves if _is_kernel(path))


def wdl_targets(value: jax.Array) -> jax.Array:
    """`f32[n, 3]` soft win/draw/loss targets of `f32[n]` value targets in [-1, 1]: (max(v, 0), 1 - |v|,
    max(-v, 0)), whose W - L is v (a result of +1, 0 or -1 is one-hot)."""
    return jnp.stack([jnp.maximum(value, 0.0), 1.0 - jnp.abs(value), jnp.maximum(-value, 0.0)], axis=-1)


def loss_fn(params, batch: Batch, apply_fn: ApplyFn, l2_weight: float, axis: str | None = None,
            moves_left_weight: float = 0.0):
    """Returns (loss, metrics dict) for one batch; all terms float32. A network with a win/draw/loss head trains it
    by cross-entropy against `wdl_targets` (`value_mse` reports the squared error of W - L either way); one with a
    moves-left head adds `moves_left_weight` x its Huber loss in units of `model.MOVES_LEFT_SCALE` plies, over the
    positions whose game has a result (`moves_left_loss`, and `moves_left_error`, the mean absolute error in
    plies).

    With `axis` (inside `shard_map` over a data-parallel mesh axis) `batch` is this device's share of the global
    batch and every term is this device's share of the global term: summed over devices, loss, metrics and the
    gradient are exactly those of the whole batch on one device (the value loss is normalised by the global count
    of known targets, not a mean of per-device means).

    With `--grad-accum-steps k` the k micro-batches of an optimizer step are not one batch of k x b: each micro-batch
    normalises its value loss by its own count n_i of known targets, and `optax.MultiSteps` averages the k gradients,
    so micro-batch i's value gradient weighs 1/k where one large batch would weigh it n_i / sum(n) (the same holds
    for the policy term's count under playout-cap randomisation; L2 is exact). They agree when every micro-batch has
    as many known targets. Making it exact would need the
    group's total count before its first micro-batch is trained: either every micro-step samples the indices of all k
    micro-batches of its group, or the accumulator keeps the value gradient's sum and the known count apart from
    MultiSteps' mean (a new optimizer-state layout, which checkpoints would have to migrate). Neither fits the
    one-sample-then-train micro-step, so the difference stays: it is the spread of n_i between micro-batches, which is
    largest early in a run, while few games have results (a micro-batch with one known target gives it the weight of
    a whole micro-batch), and small once micro-batches hold many known targets.
    """
    shards = 1 if axis is None else jax.lax.psum(1, axis)
    global_total = (lambda x: x) if axis is None else (lambda x: jax.lax.psum(x, axis))
    logits, value, extras = apply_fn(params, batch.observation, heads=True)
    value = value.astype(jnp.float32)
    log_probs = jax.nn.log_softmax(mask_illegal(logits.astype(jnp.float32), batch.legal_mask), axis=-1)
    samples = batch.value.shape[0] * shards
    has_policy = (batch.policy.sum(axis=-1) > 0).astype(jnp.float32)  # all zero: no target (playout-cap)
    policy_total = jnp.maximum(global_total(has_policy.sum()), 1.0)
    policy_loss = -jnp.sum(batch.policy * log_probs) / policy_total
    known = batch.value_mask.astype(jnp.float32)
    known_total = global_total(known.sum())
    squared = jnp.sum(known * jnp.square(value - batch.value)) / jnp.maximum(known_total, 1.0)
    if "wdl" in extras:
        cross_entropy = -jnp.sum(wdl_targets(batch.value) * jax.nn.log_softmax(extras["wdl"], axis=-1), axis=-1)
        value_loss = jnp.sum(known * cross_entropy) / jnp.maximum(known_total, 1.0)
    else:
        value_loss = squared
    l2 = l2_weight * l2_penalty(params) / shards
    loss = policy_loss + value_loss + l2
    head_metrics = {}
    if "moves_left" in extras:
        moves_left_loss, moves_left_error = _moves_left_loss(extras["moves_left"], batch, global_total)
        loss = loss + moves_left_weight * moves_left_loss
        head_metrics = dict(moves_left_loss=moves_left_loss, moves_left_error=moves_left_error)
    # Diagnostics (no gradient flows from them): the search target's entropy, and KL(target || prior) = the policy
    # loss (a cross-entropy) minus that entropy: how much search still teaches the network.
    entropy = -jnp.sum(jnp.where(batch.policy > 0, batch.policy * jnp.log(jnp.maximum(batch.policy, 1e-30)), 0.0))
    entropy = jax.lax.stop_gradient(entropy / policy_total)
    return loss, dict(loss=loss, policy_loss=policy_loss, value_loss=value_loss, value_mse=squared, l2=l2,
                      value_targets_known=known.sum() / samples, policy_targets_known=has_policy.sum() / samples,
                      policy_target_entropy=entropy,
                      policy_kl=jax.lax.stop_gradient(policy_loss) - entropy, **head_metrics)


def _moves_left_loss(predicted: jax.Array, batch: Batch, global_total) -> tuple[jax.Array, jax.Array]:
    """(Huber loss with delta 1 on plies / `MOVES_LEFT_SCALE`, mean absolute error in plies) over the positions of
    `batch` whose game has a result, normalised by their global count (`loss_fn`)."""
    known = batch.moves_left_mask.astype(jnp.float32)
    total = jnp.maximum(global_total(known.sum()), 1.0)
    error = predicted.astype(jnp.float32) - batch.moves_left
    huber = optax.huber_loss(error / MOVES_LEFT_SCALE, delta=1.0)
    return jnp.sum(known * huber) / total, jax.lax.stop_gradient(jnp.sum(known * jnp.abs(error)) / total)


def make_train_step(config: Config, apply_fn: ApplyFn, optimizer: optax.MultiSteps, axis: str | None = None):
    """Returns the pure `train_step(state, batch) -> (state, metrics)`: one micro-batch through MultiSteps.

    With `axis`, gradients and metrics are summed over the devices of that mesh axis (see `loss_fn`) before the
    update, so every device applies the same update to its replica of the state."""
    grad_fn = jax.grad(loss_fn, has_aux=True)

    def train_step(state: TrainState, batch: Batch):
        with jax.named_scope("train_step"):
            grads, metrics = grad_fn(state.params, batch, apply_fn, config.l2_weight, axis,
                                     config.moves_left_weight)
            if axis is not None:
                grads, metrics = jax.lax.psum((grads, metrics), axis)
            updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
            params = optax.apply_updates(state.params, updates)
        metrics["grad_norm"] = optax.tree.norm(grads)
        metrics["nonfinite_skipped"] = opt_state.skip_state["should_skip"].astype(jnp.float32)
        return TrainState(params=params, opt_state=opt_state, step=opt_state.gradient_step.astype(jnp.int32)), metrics

    return train_step


def make_micro_step(config: Config, apply_fn: ApplyFn, optimizer: optax.MultiSteps, mesh=None):
    """Returns the pure `micro_step(state, buffer, key) -> (state, metrics)`: sample a micro-batch, train on it.

    With a data-parallel `mesh` (`sharding.DataParallel`), each device samples its share of the batch from its own
    columns of the buffer (key folded with the device index) and the update is summed over devices."""
    if mesh is not None:
        return mesh.micro_step(config, apply_fn, optimizer)
    train_step = make_train_step(config, apply_fn, optimizer)

    def micro_step(state: TrainState, buffer: replay.ReplayBuffer, key: jax.Array):
        return train_step(state, replay.sample(buffer, key, config.batch_size, config.value_discount,
                                                  targets.ValueMix.of(config)))

    return micro_step


def resolve_train_loop(config: Config, platform: str) -> str:
    """'scan' or 'host' (see `TrainChunk`); `auto` picks host on CPU, where it is measured ~13x faster."""
    if config.train_loop != "auto":
        return config.train_loop
    return "host" if platform == "cpu" else "scan"


class TrainChunk:
    """`chunk(state, buffer, key) -> (state, mean metrics)`: the episode's `micro_steps_per_episode` micro-batches.

    loop='scan': one jitted `lax.scan` over micro-steps. loop='host': the host dispatches one jitted micro-step per
    micro-batch without waiting for any (no device-to-host transfer until the metrics are read). XLA:CPU runs weight
    gradients of convolutions inside a while loop about 13x slower than outside one (docs/performance.md), so the host
    loop is the CPU default. Both give the same result; `state` is donated. `wait`: the host loop waits for each
    micro-step before dispatching the next (`sharding.DataParallel.one_program_at_a_time`).
    """

    def __init__(self, config: Config, apply_fn: ApplyFn, optimizer: optax.MultiSteps, loop: str = "scan",
                 mesh=None, wait: bool = False):
        micro_step = self._micro_step = make_micro_step(config, apply_fn, optimizer, mesh)
        self.loop, self.wait = loop, wait
        self.num_micro_steps = config.micro_steps_per_episode
        if loop == "scan":
            def scan_chunk(state, buffer, key):
                keys = jax.random.split(key, self.num_micro_steps)
                state, metrics = jax.lax.scan(lambda carry, k: micro_step(carry, buffer, k), state, keys)
                return state, jax.tree.map(jnp.mean, metrics)

            self._compiled = jax.jit(scan_chunk, donate_argnums=0)
        else:
            self._compiled = jax.jit(micro_step, donate_argnums=0)
            self._split = jax.jit(lambda key: jax.random.split(key, self.num_micro_steps))
            self._mean = jax.jit(lambda metrics: jax.tree.map(lambda *xs: jnp.mean(jnp.stack(xs)), *metrics))

    def compile(self, state: TrainState, buffer: replay.ReplayBuffer, key: jax.Array) -> None:
        """Compiles ahead of the first call (arguments are only read for their shapes)."""
        self._compiled = self._compiled.lower(state, buffer, key).compile()
        if self.loop == "host":
            self._split = self._split.lower(key).compile()
            _, metrics = jax.eval_shape(self._micro_step, state, buffer, key)
            placed = getattr(state.step, "sharding", None)  # metrics are replicated like the step counter
            metrics = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=placed), metrics)
            self._mean = self._mean.lower([metrics] * self.num_micro_steps).compile()

    def __call__(self, state: TrainState, buffer: replay.ReplayBuffer, key: jax.Array):
        if self.loop == "scan":
            return self._compiled(state, buffer, key)
        keys = self._split(key)
        metrics = []
        for index in range(self.num_micro_steps):
            state, step_metrics = self._compiled(state, buffer, keys[index])
            if self.wait:
                jax.block_until_ready(step_metrics)
            metrics.append(step_metrics)
        return state, self._mean(metrics)
