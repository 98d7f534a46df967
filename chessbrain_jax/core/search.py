"""Batched tree search with mctx over pgx chess: Gumbel MuZero or PUCT (AlphaZero) with Dirichlet root noise.

Two-player conventions (as mctx's and pgx's examples use them): the reward of an edge is the one received by the
player who just moved, the discount is -1 between plies (values flip sides; -`value_discount` when results are
discounted per ply) and 0 after the game ends, and a terminal state's value is 0 because its result is already in the
reward -- so terminal states are valued by the game result, never by the network. Inside the tree, a position that
occurred before (in the game or earlier on the path) counts as a terminal draw. The tree's actions are slots over
each node's legal moves (`Node.actions`), so illegal moves exist nowhere in it; empty slots are invalid at the root
and have the minimum prior logit below it.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import mctx

from chessbrain_jax.config import Config
from chessbrain_jax.core import chess_env, targets
from chessbrain_jax.core.encoding import actions_mask
from chessbrain_jax.core.types import MAX_LEGAL_MOVES, NUM_ACTIONS, ApplyFn


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


class Node(NamedTuple):
    """What the tree stores per node (its embedding, 1.9 KB): the `chess_env.compact` pgx state, and `i16[..., S]` the
    pgx action of each of the node's `S = MAX_LEGAL_MOVES` action slots (its legal moves in action order, -1 after),
    which also rebuild the state's legal-move mask."""

    state: chess_env.State
    actions: jax.Array

    @classmethod
    def of(cls, states: chess_env.State, actions: jax.Array) -> "Node":
        """`[B]` full pgx states and their `i32[B, S]` legal-move slots."""
        return cls(chess_env.compact(states), actions.astype(jnp.int16))

    def full_state(self) -> chess_env.State:
        """The `[B]` pgx states (without observation) that `step` takes."""
        return chess_env.expand(self.state, actions_mask(self.actions))


class SearchOutput(NamedTuple):
    """A batch of searches, in pgx actions.

    action: `i32[B]` the move chosen by mctx (Gumbel: sequential halving; PUCT: sampled by visit count): self-play
      plays it. Gumbel's choice is a sample (the Gumbel-max trick over the improved policy), so it misses a mate in
      one about 1 time in 10 at 32 simulations.
    best_action: `i32[B]` the move to play without exploring: among the most visited root moves, the one the policy
      target rates highest (no Gumbel noise; PUCT: the most visited). Players and the UCI engine play it.
    action_weights: `f32[B, 4672]` the policy target: the improved policy (Gumbel) or visit fractions (PUCT).
    root_value: `f32[B]` the root's search value for the side to move.
    root_prior_logits: `f32[B, 4672]` the network's prior at the root (illegal moves at the dtype's minimum).
    search_tree: the `mctx.Tree` over action slots; `search_tree.embeddings.actions` maps slots to pgx actions.
    mate_found: `bool[B]` the search visited a mate in one and `--play-searched-mates` chose it (else all False).
    """

    action: jax.Array
    best_action: jax.Array
    action_weights: jax.Array
    root_value: jax.Array
    root_prior_logits: jax.Array
    search_tree: mctx.Tree
    mate_found: jax.Array | None = None


def legal_slots(legal_mask: jax.Array) -> jax.Array:
    """`bool[B, 4672]` -> `i32[B, S]`: the legal actions in increasing order, -1 padded (as `encoding` stores them)."""
    return jax.vmap(lambda mask: jnp.nonzero(mask, size=MAX_LEGAL_MOVES, fill_value=-1)[0])(legal_mask).astype(
        jnp.int32)


def slot_logits(logits: jax.Array, actions: jax.Array) -> jax.Array:
    """`f32[B, 4672]` logits gathered to `i32[B, S]` slots; empty slots at the dtype's minimum."""
    gathered = jnp.take_along_axis(logits, jnp.maximum(actions, 0), axis=-1)
    return jnp.where(actions >= 0, gathered, jnp.finfo(logits.dtype).min)


def to_actions(slot_values: jax.Array, actions: jax.Array, fill: float = 0.0) -> jax.Array:
    """`[B, S]` values per slot scattered to `[B, 4672]` pgx actions (`fill` elsewhere)."""
    dense = jnp.full((actions.shape[0], NUM_ACTIONS), fill, slot_values.dtype)
    index = jnp.where(actions >= 0, actions, NUM_ACTIONS)  # empty slots are dropped
    return jax.vmap(lambda row, i, v: row.at[i].set(v, mode="drop"))(dense, index, slot_values)


def step_nodes(node: Node, slot: jax.Array) -> tuple[chess_env.State, chess_env.State, jax.Array]:
    """The environment part of a simulation: `[B]` nodes, `i32[B]` slots -> (their full pgx states, the next states,
    the next states' `i32[B, S]` legal-move slots)."""
    action = jnp.take_along_axis(node.actions, slot[:, None], axis=1)[:, 0].astype(jnp.int32)
    state = node.full_state()
    next_state = chess_env.step(state, action)
    return state, next_state, legal_slots(next_state.legal_action_mask)


def moves_left_utility(value: jax.Array, plies_left: jax.Array, config: Config) -> jax.Array:
    """`f32[B]` values for the search from the value head's `f32[B]` and the moves-left head's predicted plies to
    the end (Leela Chess Zero's moves-left utility, applied at the leaves): v - sign(v) x a x min(effect, slope x
    plies), a = (|v| - threshold) / (1 - threshold) clipped to [0, 1]. Among lines of equal value a winning side
    then prefers the one that ends sooner and a losing side the one that lasts; a value below the threshold (an
    unclear position) is left alone."""
    threshold = config.moves_left_threshold
    activation = jnp.clip((jnp.abs(value) - threshold) / (1.0 - threshold), 0.0, 1.0)
    utility = jnp.minimum(config.moves_left_effect, config.moves_left_slope * plies_left)
    return value - jnp.sign(value) * activation * utility


def make_evaluate(config: Config, apply_fn: ApplyFn):
    """`evaluate(params, observation) -> (logits, value)`: the network as the search reads it, the value with the
    moves-left utility when the network has that head and `--moves-left-effect` > 0."""
    if not (config.moves_left_weight > 0 and config.moves_left_effect > 0):
        return apply_fn

    def evaluate(params, observation):
        logits, value, extras = apply_fn(params, observation, heads=True)
        return logits, moves_left_utility(value, extras["moves_left"], config)

    return evaluate


def make_recurrent_fn(apply_fn: ApplyFn, discount: float = 1.0) -> mctx.RecurrentFn:
    """mctx's `recurrent_fn` over `Node`s; values are discounted by `discount` per ply (`--value-discount`).
    `apply_fn` is the network as the search reads it (`make_evaluate`)."""

    def recurrent_fn(params, rng_key, slot: jax.Array, node: Node):
        del rng_key
        with jax.named_scope("env_step"):
            state, next_state, next_actions = step_nodes(node, slot)
        with jax.named_scope("network"):
            logits, value = apply_fn(params, next_state.observation)
        # A position seen before in the game or the tree is scored as a draw, as chess engines do: otherwise a
        # side that is winning but cannot see a mate shuffles back and forth until the threefold repetition.
        terminal = next_state.terminated | (chess_env.repetitions(next_state) > 0)
        output = mctx.RecurrentFnOutput(
            reward=chess_env.mover_reward(state, next_state),
            discount=targets.edge_discount(terminal, discount),
            prior_logits=slot_logits(logits, next_actions),
            value=jnp.where(terminal, 0.0, value),
        )
        return output, Node.of(next_state, next_actions)

    return recurrent_fn


def gumbel_qtransform(config: Config):
    """mctx's completed-Q transform with `config.gumbel_value_scale` as c_scale, for Gumbel's root and interior
    selection and its improved policy (`action_weights`)."""
    return functools.partial(mctx.qtransform_completed_by_mix_value, value_scale=config.gumbel_value_scale)


def make_search_fn(config: Config, apply_fn: ApplyFn, simulations: int | None = None):
    """Returns `search(params, key, states) -> SearchOutput` for `[B]` non-terminal pgx states, with `simulations`
    (default `config.mcts_simulations`) simulations per search.

    The tree works on action slots, not on pgx's 4672 actions: a node's children are its (at most 218) legal moves,
    so mctx's per-node statistics shrink ~21x and every simulation touches ~21x less memory.
    """
    apply_fn = make_evaluate(config, apply_fn)
    recurrent_fn = make_recurrent_fn(apply_fn, config.value_discount)
    simulations = config.mcts_simulations if simulations is None else simulations

    def search(params, key: jax.Array, states: chess_env.State) -> SearchOutput:
        with jax.named_scope("network"):
            logits, value = apply_fn(params, states.observation)
        actions = legal_slots(states.legal_action_mask)
        root = mctx.RootFnOutput(
            prior_logits=slot_logits(logits, actions),
            value=value,
            embedding=Node.of(states, actions),
        )
        legal = actions >= 0
        if config.search == "gumbel":
            output = mctx.gumbel_muzero_policy(
                params, key, root, recurrent_fn,
                num_simulations=simulations,
                invalid_actions=~legal,
                max_num_considered_actions=config.gumbel_considered_actions,
                qtransform=gumbel_qtransform(config),
            )
        else:
            noise_key, search_key = jax.random.split(key)
            root = root.replace(prior_logits=with_root_noise(
                noise_key, root.prior_logits, legal, config.dirichlet_alpha, config.dirichlet_fraction))
            output = mctx.muzero_policy(
                params, search_key, root, recurrent_fn,
                num_simulations=simulations,
                invalid_actions=~legal,
                pb_c_init=config.mcts_cpuct,
                dirichlet_fraction=0.0,  # mixed in above, over legal moves only
                temperature=1.0,
            )
        tree = output.search_tree
        visits = tree.children_visits[:, 0]  # [B, S] root visit counts per slot
        most_visited = legal & (visits == visits.max(axis=-1, keepdims=True))
        best_slot = jnp.argmax(jnp.where(most_visited, output.action_weights, -1.0), axis=-1)
        action_slot, weights, root_value = output.action, output.action_weights, tree.node_values[:, 0]
        found = jnp.zeros(action_slot.shape, bool)
        if config.play_searched_mates:
            mates = jax.vmap(searched_mates)(visits, tree.children_discounts[:, 0], tree.children_rewards[:, 0])
            found, mate_slot = mates.any(axis=-1), jnp.argmax(mates, axis=-1)
            action_slot = jnp.where(found, mate_slot, action_slot)
            best_slot = jnp.where(found, mate_slot, best_slot)
            weights = jnp.where(found[:, None], jax.nn.one_hot(mate_slot, weights.shape[-1]), weights)
            root_value = jnp.where(found, 1.0, root_value)
        return SearchOutput(
            action=jnp.take_along_axis(actions, action_slot[:, None], axis=1)[:, 0],
            best_action=jnp.take_along_axis(actions, best_slot[:, None], axis=1)[:, 0],
            action_weights=to_actions(weights, actions),
            root_value=root_value,
            root_prior_logits=mask_illegal(logits, states.legal_action_mask),
            search_tree=output.search_tree,
            mate_found=found,
        )

    return search


def searched_mates(visits: jax.Array, discounts: jax.Array, rewards: jax.Array) -> jax.Array:
    """`bool[S]` the root's children the search visited that end the game with the mover's win (a mate in one),
    from one node's `[S]` child visits, discounts (0 after a terminal edge) and rewards (the mover's)."""
    return (visits > 0) & (discounts == 0) & (rewards > 0)


def principal_variation(tree: mctx.Tree, first_action: jax.Array, length: int) -> jax.Array:
    """`i32[length]` pgx actions: `first_action` at the root, then the most visited child at each node below it,
    -1 once the line leaves the tree. For one unbatched tree (`jax.tree.map(lambda x: x[b], search_tree)`)."""
    slots = tree.embeddings.actions.astype(jnp.int32)  # [N, S]

    def step(carry, _):
        node, slot = carry
        inside = (node >= 0) & (slot >= 0)
        action = jnp.where(inside, slots[jnp.maximum(node, 0), jnp.maximum(slot, 0)], -1)
        child = jnp.where(inside, tree.children_index[jnp.maximum(node, 0), jnp.maximum(slot, 0)], -1)
        visits = tree.children_visits[jnp.maximum(child, 0)]
        next_node = jnp.where((child >= 0) & (visits.max() > 0), child, -1)
        return (next_node, jnp.argmax(visits).astype(jnp.int32)), action

    root_slot = jnp.argmax(slots[0] == first_action).astype(jnp.int32)
    root_slot = jnp.where(slots[0, root_slot] == first_action, root_slot, -1)
    _, line = jax.lax.scan(step, (jnp.int32(0), root_slot), None, length=length)
    return line
