"""Batched tree search with mctx over pgx chess: Gumbel MuZero or PUCT (AlphaZero) with Dirichlet root noise.

Two-player conventions (as mctx's and pgx's examples use them): the reward of an edge is the one received by the
player who just moved, the discount is -1 between plies (values flip sides) and 0 after the game ends, and a terminal
state's value is 0 because its result is already in the reward -- so terminal states are valued by the game result,
never by the network. mctx masks illegal actions only at the root; the recurrent function masks them at every interior
node through the prior logits (and pgx scores an illegal move as a loss for the mover, so search never prefers one).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import mctx

from chessbrain_jax import chess_env
from chessbrain_jax.config import Config

ApplyFn = Callable[[object, jax.Array], tuple[jax.Array, jax.Array]]  # (params, f32[B,8,8,119]) -> logits, value


def mask_illegal(logits: jax.Array, legal_mask: jax.Array) -> jax.Array:
    """`f32[B, A]` logits with illegal actions pushed to the dtype's minimum."""
    return jnp.where(legal_mask, logits, jnp.finfo(logits.dtype).min)


def with_root_noise(key: jax.Array, logits: jax.Array, legal_mask: jax.Array, alpha: float,
                    fraction: float) -> jax.Array:
    """AlphaZero's root exploration: prior = (1 - fraction) * prior + fraction * Dirichlet(alpha) over legal moves.

    mctx's own Dirichlet noise spreads over all 4672 actions before illegal ones are masked, so only ~20/4672 of it
    would reach the legal moves of a chess position; this draws it over the legal moves alone. `[B, A]` logits in,
    `[B, A]` logits out (illegal moves stay at the dtype's minimum).
    """
    noise = jnp.where(legal_mask, jax.random.gamma(key, alpha, logits.shape), 0.0)
    noise = noise / jnp.maximum(noise.sum(axis=-1, keepdims=True), jnp.finfo(jnp.float32).tiny)
    prior = jax.nn.softmax(logits, axis=-1)
    mixed = (1.0 - fraction) * prior + fraction * noise
    return mask_illegal(jnp.log(jnp.maximum(mixed, jnp.finfo(jnp.float32).tiny)), legal_mask)


def make_recurrent_fn(apply_fn: ApplyFn) -> mctx.RecurrentFn:
    def recurrent_fn(params, rng_key, action, state: chess_env.State):
        del rng_key
        next_state = chess_env.step(state, action)
        with jax.named_scope("network"):
            logits, value = apply_fn(params, next_state.observation)
        terminal = next_state.terminated
        output = mctx.RecurrentFnOutput(
            reward=chess_env.mover_reward(state, next_state),
            discount=jnp.where(terminal, 0.0, -1.0),
            prior_logits=mask_illegal(logits, next_state.legal_action_mask),
            value=jnp.where(terminal, 0.0, value),
        )
        return output, chess_env.without_observation(next_state)

    return recurrent_fn


def make_search_fn(config: Config, apply_fn: ApplyFn):
    """Returns `search(params, key, states) -> mctx.PolicyOutput` for `[B]` non-terminal pgx states.

    `action_weights` `[B, 4672]` is the policy target: normalised visit counts for PUCT, the improved policy for Gumbel.
    """
    recurrent_fn = make_recurrent_fn(apply_fn)

    def search(params, key: jax.Array, states: chess_env.State) -> mctx.PolicyOutput:
        with jax.named_scope("network"):
            logits, value = apply_fn(params, states.observation)
        root = mctx.RootFnOutput(
            prior_logits=mask_illegal(logits, states.legal_action_mask),
            value=value,
            embedding=chess_env.without_observation(states),
        )
        legal = states.legal_action_mask
        invalid = ~legal
        if config.search == "gumbel":
            return mctx.gumbel_muzero_policy(
                params, key, root, recurrent_fn,
                num_simulations=config.mcts_simulations,
                invalid_actions=invalid,
                max_num_considered_actions=config.gumbel_considered_actions,
            )
        noise_key, search_key = jax.random.split(key)
        root = root.replace(prior_logits=with_root_noise(
            noise_key, root.prior_logits, legal, config.dirichlet_alpha, config.dirichlet_fraction))
        return mctx.muzero_policy(
            params, search_key, root, recurrent_fn,
            num_simulations=config.mcts_simulations,
            invalid_actions=invalid,
            pb_c_init=config.mcts_cpuct,
            dirichlet_fraction=0.0,  # mixed in above, over legal moves only
            temperature=1.0,
        )

    return search
