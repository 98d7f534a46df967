"""One mctx tree grown across calls: the anytime search behind the UCI engine.

mctx builds and searches a fresh tree in one call of a fixed simulation count. An engine wants one tree that keeps
growing while its clock allows, so `start` allocates a tree of `capacity` nodes once per `go` and `grow` runs more of
`mctx.search`'s own simulations on it, any number per call: its `loop_fn` continues the stored tree from its
simulation count (the fresh tree `mctx.search` allocates is dead code XLA drops). One compile of each function per
capacity serves every node budget, and `enlarge` moves a tree into a larger capacity when it fills up, so a search
can start in a tree sized to its budget (on the CPU a simulation costs more in a larger tree: XLA copies the
tree's node arrays) and still grow on.

Gumbel's sequential halving spreads a known total budget over the root moves; `considered_visit` computes mctx's
schedule for a traced `target`, so a budget known only at `go` time (nodes, or seconds x measured speed) needs no
compile, and a tree grown past its target goes on halving down to two moves.
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import mctx

from chessbrain_jax.config import Config
from chessbrain_jax.core import chess_env
from chessbrain_jax.core.search import (Node, gumbel_qtransform, legal_slots, make_evaluate, make_recurrent_fn,
                                        mask_illegal, principal_variation, searched_mates, slot_logits)
from chessbrain_jax.core.types import ApplyFn


class Grown(NamedTuple):
    """A tree in growth; `N` = capacity nodes, `S` = action slots, batch 1 (mctx's trees are batched).

    tree: the `mctx.Tree` (`[1, N]` nodes, `[1, N, S]` edges); node `i > 0` was added by simulation `i - 1`.
    root: the root's `mctx.RootFnOutput` (`[1, S]` prior logits), which `mctx.search` asks for on every call.
    key: the search's key; simulation `i` runs with `fold_in(key, i)`.
    simulations: `i32[]` simulations run so far (at most N - 1).
    target: `i32[]` the budget Gumbel's sequential halving plans for.
    depth: `i32[N]` plies from the root to each node (0 for the root and for nodes not yet added).
    prior_logits: `f32[4672]` the network's root prior (illegal moves at the dtype's minimum).
    """

    tree: mctx.Tree
    root: mctx.RootFnOutput
    key: jax.Array
    simulations: jax.Array
    target: jax.Array
    depth: jax.Array
    prior_logits: jax.Array


class Summary(NamedTuple):
    """What a GUI is told about a grown tree; `K` = root moves reported (MultiPV), `L` = line length.

    best_action: `i32[]` the pgx action to play: among the most visited root moves, the one the improved policy
      (Gumbel) rates highest, or the most visited (PUCT).
    value: `f32[]` the root's search value for the side to move, in [-1, 1].
    simulations: `i32[]` simulations in the tree.
    seldepth: `i32[]` the deepest node's plies from the root.
    actions: `i32[K]` the best root moves (pgx actions) by visits, then improved policy; -1 where fewer exist.
    visits: `i32[K]` their visit counts.
    q: `f32[K]` their search values for the side to move (0 where unvisited).
    lines: `i32[K, L]` each move, then the most visited child below it; -1 padded.
    prior_logits: `f32[4672]` the network's root prior (illegal moves at the dtype's minimum).
    """

    best_action: jax.Array
    value: jax.Array
    simulations: jax.Array
    seldepth: jax.Array
    actions: jax.Array
    visits: jax.Array
    q: jax.Array
    lines: jax.Array
    prior_logits: jax.Array


def considered_visit(num_considered: jax.Array, index: jax.Array, target: jax.Array, max_considered: int) -> jax.Array:
    """mctx's sequential-halving table entry `table[num_considered][index]` for a budget of `target` simulations,
    with traced arguments (`seq_halving.get_sequence_of_considered_visits`): the visit count a root move must have
    to be searched by simulation `index`. Past the target it continues halving's last phase (two moves alternate).

    Phase p considers c_p = max(2, m // 2**p) moves and gives each max(1, target // (ceil(log2 m) * c_p)) visits;
    all considered moves enter a phase with the same count, so an entry is that count plus the rounds done in it.
    """
    m = num_considered.astype(jnp.int32)
    index, target = index.astype(jnp.int32), target.astype(jnp.int32)
    log2m = sum((m > 2**k).astype(jnp.int32) for k in range(max(int(max_considered), 2).bit_length()))
    start, base, considered = jnp.int32(0), jnp.int32(0), m
    value, found = jnp.int32(0), jnp.bool_(False)
    for _ in range(max(int(max_considered), 2).bit_length()):  # phases with more than two moves
        extra = jnp.maximum(1, target // jnp.maximum(log2m * considered, 1))
        length = extra * considered
        here = ~found & (considered > 2) & (index < start + length)
        value = jnp.where(here, base + (index - start) // jnp.maximum(considered, 1), value)
        moving_on = ~found & ~here & (considered > 2)
        start, base = jnp.where(moving_on, start + length, start), jnp.where(moving_on, base + extra, base)
        considered = jnp.where(moving_on, jnp.maximum(2, considered // 2), considered)
        found = found | here
    value = jnp.where(found, value, base + (index - start) // 2)
    return jnp.where(m <= 1, index, value)


def _gumbel_root_selection(rng_key, tree: mctx.Tree, node_index, *, target: jax.Array, max_considered: int,
                           qtransform):
    """`mctx.gumbel_muzero_root_action_selection` with a traced budget (`considered_visit`); unbatched tree."""
    del rng_key
    visits = tree.children_visits[node_index]
    logits = tree.children_prior_logits[node_index]
    completed = qtransform(tree, node_index)
    num_valid = jnp.sum(1 - tree.root_invalid_actions, axis=-1).astype(jnp.int32)
    visit = considered_visit(jnp.minimum(max_considered, num_valid), jnp.sum(visits), target, max_considered)
    score = jnp.maximum(-1e9, tree.extra_data.root_gumbel + logits - jnp.max(logits) + completed)
    score = jnp.where(visits == visit, score, -jnp.inf)
    return jnp.argmax(jnp.where(tree.root_invalid_actions, -jnp.inf, score)).astype(jnp.int32)


class GrowingSearch(NamedTuple):
    """The pure functions of a growing search (the caller jits them; `grow` may donate its `Grown`).

    start(params, key, state, target) -> Grown: a tree holding only the root of the unbatched pgx `state`.
    grow(params, grown, upper) -> Grown: simulations until `upper` in all (at most capacity - 1).
    summary(grown) -> Summary: the move to play and what to report.
    enlarge(params, grown) -> Grown: a `Grown` of fewer nodes moved into this capacity, the same tree with room to
      grow (growing it on is what growing it here from the start would have been).
    """

    start: Callable
    grow: Callable
    summary: Callable
    enlarge: Callable


# The `mctx.Tree` fields with a node axis (`[1, N, ...]`); its other fields are per root.
NODE_FIELDS = ("node_visits", "raw_values", "node_values", "parents", "action_from_parent", "children_index",
               "children_prior_logits", "children_visits", "children_rewards", "children_discounts",
               "children_values", "embeddings")


def make_growing_search(config: Config, apply_fn: ApplyFn, capacity: int, multipv: int = 1,
                        line_length: int = 16) -> GrowingSearch:
    """A growing search of `capacity` nodes with `config`'s algorithm (Gumbel with its considered moves and noise on
    the root's sampling, or PUCT with `mcts_cpuct` and no root noise), reporting `multipv` root moves."""
    if capacity < 2:
        raise ValueError(f"a growing tree needs at least 2 nodes, got {capacity}")
    apply_fn = make_evaluate(config, apply_fn)
    recurrent_fn = make_recurrent_fn(apply_fn, config.value_discount)
    gumbel = config.search == "gumbel"
    qtransform = gumbel_qtransform(config)

    def search(params, key, root, invalid, extra_data, target, loop_fn):
        if gumbel:
            root_select = functools.partial(_gumbel_root_selection, target=target,
                                            max_considered=config.gumbel_considered_actions, qtransform=qtransform)
            interior_select = functools.partial(mctx.gumbel_muzero_interior_action_selection, qtransform=qtransform)
        else:
            interior_select = functools.partial(mctx.muzero_action_selection, pb_c_init=config.mcts_cpuct)
            root_select = functools.partial(interior_select, depth=0)
        return mctx.search(params, key, root=root, recurrent_fn=recurrent_fn, root_action_selection_fn=root_select,
                           interior_action_selection_fn=interior_select, num_simulations=capacity - 1,
                           invalid_actions=invalid,
                           extra_data=extra_data, loop_fn=loop_fn)

    def start(params, key, state: chess_env.State, target) -> Grown:
        states = jax.tree.map(lambda leaf: leaf[None], state)
        logits, value = apply_fn(params, states.observation)
        actions = legal_slots(states.legal_action_mask)
        root = mctx.RootFnOutput(prior_logits=slot_logits(logits, actions), value=value,
                                 embedding=Node.of(states, actions))
        search_key, gumbel_key = jax.random.split(key)
        extra = mctx.GumbelMuZeroExtraData(root_gumbel=jax.random.gumbel(gumbel_key, root.prior_logits.shape))
        tree = search(params, search_key, root, actions < 0, extra, jnp.int32(target),
                      lambda lower, upper, body, init: init)
        return Grown(tree, root, search_key, jnp.int32(0), jnp.int32(target), jnp.zeros(capacity, jnp.int32),
                     mask_illegal(logits, states.legal_action_mask)[0])

    def grow(params, grown: Grown, upper) -> Grown:
        first = grown.simulations
        last = jnp.clip(jnp.int32(upper), first, capacity - 1)

        def loop_fn(lower, upper_, body, init):
            del lower, upper_

            def simulation(index, tree):  # its key depends on its index alone: growing in steps changes nothing
                return body(index, (jax.random.fold_in(grown.key, index), tree))[1]

            return init[0], jax.lax.fori_loop(first, last, simulation, grown.tree)

        tree = search(params, grown.key, grown.root, grown.tree.root_invalid_actions, grown.tree.extra_data,
                      grown.target, loop_fn)
        parents = tree.parents[0]

        def add_depth(node, depth):
            return depth.at[node].set(jnp.where(parents[node] >= 0, depth[jnp.maximum(parents[node], 0)] + 1, 0))

        depth = jax.lax.fori_loop(first + 1, last + 1, add_depth, grown.depth)
        return grown._replace(tree=tree, simulations=last, depth=depth)

    def summary(grown: Grown) -> Summary:
        tree = jax.tree.map(lambda leaf: leaf[0], grown.tree)
        slots = tree.embeddings.actions.astype(jnp.int32)[0]  # [S] pgx action per root slot
        legal = slots >= 0
        visits = tree.children_visits[0]
        if gumbel:
            completed = qtransform(tree, 0)
            weights = jax.nn.softmax(jnp.where(legal, tree.children_prior_logits[0] + completed, -jnp.inf))
        else:
            weights = visits / jnp.maximum(visits.sum(), 1)
        most = legal & (visits == jnp.max(jnp.where(legal, visits, -1)))
        best_slot = jnp.argmax(jnp.where(most, weights, -1.0))
        if config.play_searched_mates:
            mates = searched_mates(visits, tree.children_discounts[0], tree.children_rewards[0])
            best_slot = jnp.where(mates.any(), jnp.argmax(mates), best_slot)
        rank = jnp.where(legal, visits + 0.5 * weights, -1.0)  # visits first, the improved policy breaks ties
        rank = jnp.where(jnp.arange(rank.shape[0]) == best_slot, jnp.inf, rank)  # the move to play leads
        order = jnp.argsort(-rank)[:multipv]
        shown = legal[order]
        top = jnp.where(shown, slots[order], -1)
        lines = jax.vmap(lambda action: principal_variation(tree, action, line_length))(top)
        q = jnp.where(visits[order] > 0, tree.qvalues(0)[order], 0.0)
        return Summary(
            best_action=slots[best_slot], value=tree.node_values[0], simulations=grown.simulations,
            seldepth=jnp.max(grown.depth), actions=top, visits=jnp.where(shown, visits[order], 0),
            q=jnp.where(shown, q, 0.0), lines=jnp.where(shown[:, None], lines, -1), prior_logits=grown.prior_logits)

    def enlarge(params, small: Grown) -> Grown:
        nodes = small.depth.shape[0]
        if nodes > capacity:
            raise ValueError(f"a tree of {nodes} nodes does not fit in {capacity}")
        fresh = search(params, small.key, small.root, small.tree.root_invalid_actions, small.tree.extra_data,
                       small.target, lambda lower, upper, body, init: init)  # mctx's empty tree, root filled
        moved = {name: jax.tree.map(lambda big, old: big.at[:, :nodes].set(old), getattr(fresh, name),
                                    getattr(small.tree, name)) for name in NODE_FIELDS}
        return small._replace(tree=fresh.replace(**moved),
                              depth=jnp.zeros(capacity, jnp.int32).at[:nodes].set(small.depth))

    return GrowingSearch(start, grow, summary, enlarge)
