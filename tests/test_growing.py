"""The growing tree: mctx's own search, continued across calls, with Gumbel's schedule for a traced budget."""

from __future__ import annotations

import chess
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from mctx._src import seq_halving

from chessbrain_jax.core.growing import considered_visit, make_growing_search
from chessbrain_jax.core.search import make_search_fn
from chessbrain_jax.play import notation
from tests.conftest import confident_prior, make_config

ITALIAN = "r1bqkbnr/pppp1ppp/2n5/4p3/2B1P3/5N2/PPPP1PPP/RNBQK2R b KQkq - 3 3"
CAPACITY = 64  # nodes of the test trees
MATE_IN_ONE = "6k1/5ppp/8/8/8/8/5PPP/R5K1 w - - 0 1"  # a1a8 mates


def test_considered_visit_is_mctx_sequential_halving_table():
    visit = jax.jit(jax.vmap(considered_visit, (None, 0, None, None)), static_argnums=3)
    for target in (1, 2, 3, 7, 16, 33, 64, 100, 257):
        table = seq_halving.get_table_of_considered_visits(16, target)
        for considered in range(17):
            got = visit(jnp.int32(considered), jnp.arange(target), jnp.int32(target), 16)
            np.testing.assert_array_equal(np.asarray(got), table[considered], err_msg=f"{considered} {target}")


def _halving_sequence(considered: int, target: int, length: int) -> list[int]:
    """mctx's `get_sequence_of_considered_visits(considered, target)`, generated past its end to `length`."""
    log2max = int(np.ceil(np.log2(considered)))
    sequence, visits, current = [], [0] * considered, considered
    while len(sequence) < length:
        for _ in range(max(1, int(target / (log2max * current)))):
            sequence.extend(visits[:current])
            visits[:current] = [visit + 1 for visit in visits[:current]]
        current = max(2, current // 2)
    return sequence[:length]


def test_past_its_target_halving_goes_on_between_two_moves():
    visit = jax.jit(jax.vmap(considered_visit, (None, 0, None, None)), static_argnums=3)
    for considered, target in ((16, 64), (5, 20), (16, 7)):
        got = visit(jnp.int32(considered), jnp.arange(4 * target), jnp.int32(target), 16)
        np.testing.assert_array_equal(np.asarray(got), _halving_sequence(considered, target, 4 * target))


@pytest.fixture(scope="module")
def growing(tiny_network):
    _, params, apply_fn = tiny_network

    built = {}

    def build(search: str):  # one tree size for all tests: each (search, size) costs seconds of compile
        if search not in built:
            config = make_config(search=search, mcts_simulations=24, gumbel_considered_actions=32)
            functions = make_growing_search(config, apply_fn, CAPACITY, multipv=4, line_length=8)
            built[search] = config, jax.jit(functions.start), jax.jit(functions.grow), jax.jit(functions.summary)
        return built[search]

    return params, apply_fn, build


@pytest.mark.parametrize("search", ["gumbel", "puct"])
def test_a_tree_grown_in_steps_is_mctx_search_of_its_size(search, growing):
    params, apply_fn, build = growing
    config, start, grow, _ = build(search)
    state, key = notation.from_fen(ITALIAN), jax.random.PRNGKey(3)
    once = grow(params, start(params, key, state, 24), 24)
    stepped = start(params, key, state, 24)
    for upper in (5, 13, 24):
        stepped = grow(params, stepped, upper)
    for a, b in zip(jax.tree.leaves(once.tree), jax.tree.leaves(stepped.tree)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert int(stepped.simulations) == 24

    if search == "puct":
        return  # (mctx's PUCT breaks ties with noise from the keys, which the steps draw differently)
    # The same root statistics as mctx's one-call search of 24 simulations: Gumbel's choices use no key beyond the
    # root's noise, drawn alike.
    output = jax.jit(make_search_fn(config, apply_fn))(params, key, jax.tree.map(lambda leaf: leaf[None], state))
    np.testing.assert_array_equal(np.asarray(once.tree.children_visits[0, 0]),
                                  np.asarray(output.search_tree.children_visits[0, 0]))
    assert int(once.tree.node_visits[0, 0]) == 25


def test_summary_ranks_root_moves_and_finds_the_mate(growing):
    params, _, build = growing
    _, start, grow, summary = build("gumbel")
    board = chess.Board(MATE_IN_ONE)
    grown = grow(params, start(params, jax.random.PRNGKey(0), notation.from_fen(MATE_IN_ONE), 60), 60)
    out = jax.device_get(summary(grown))
    mate = notation.move_to_action(board, chess.Move.from_uci("a1a8"))
    assert int(out.best_action) == mate and int(out.actions[0]) == mate
    assert float(out.q[0]) == pytest.approx(1.0)  # the mating edge: reward 1, nothing after it
    assert list(out.visits) == sorted(out.visits, reverse=True) and len(set(out.actions.tolist())) == 4
    assert all(int(line[0]) == int(action) for line, action in zip(out.lines, out.actions))
    assert int(out.simulations) == 60 and 1 <= int(out.seldepth) <= 60
    legal = set(notation.legal_actions(board))
    assert set(out.actions.tolist()) <= legal
    assert set(np.flatnonzero(out.prior_logits > np.finfo(np.float32).min).tolist()) == legal


@pytest.mark.parametrize("play_mates", [False, True])
def test_the_grown_tree_plays_a_searched_mate_over_a_confident_prior(play_mates, tiny_network):
    """As `make_search_fn` (test_search.py): the mate has e^-8 of the favourite's prior; 24 simulations over 32
    considered moves visit it, and only `--play-searched-mates` plays it at c_scale 0.1."""
    _, params, apply_fn = tiny_network
    board = chess.Board(MATE_IN_ONE)
    mate = notation.move_to_action(board, chess.Move.from_uci("a1a8"))
    favourite = notation.move_to_action(board, chess.Move.from_uci("g1f1"))
    confident = confident_prior(apply_fn, favourite, mate)

    config = make_config(mcts_simulations=24, gumbel_considered_actions=32, play_searched_mates=play_mates)
    functions = make_growing_search(config, confident, CAPACITY)
    grown = functions.grow(params, functions.start(params, jax.random.PRNGKey(0), notation.from_fen(MATE_IN_ONE),
                                                   24), 24)
    slots = np.asarray(grown.tree.embeddings.actions[0, 0])
    assert int(grown.tree.children_visits[0, 0][np.flatnonzero(slots == mate)[0]]) >= 1  # searched either way
    out = jax.device_get(functions.summary(grown))
    assert (int(out.best_action) == mate) == play_mates
    assert int(out.actions[0]) == int(out.best_action)  # the UCI engine answers with the first line's move


def test_the_tree_stops_growing_when_full(growing):
    params, _, build = growing
    _, start, grow, summary = build("puct")
    grown = grow(params, start(params, jax.random.PRNGKey(0), notation.from_fen(ITALIAN), 1000), 1000)
    assert int(grown.simulations) == CAPACITY - 1  # node i + 1 is added by simulation i
    assert int(grown.tree.node_visits[0, 0]) == CAPACITY
    grown = grow(params, grown, 2000)
    assert int(grown.simulations) == CAPACITY - 1
    depth = np.asarray(grown.depth)
    parents = np.asarray(grown.tree.parents[0])
    np.testing.assert_array_equal(depth[1:], depth[parents[1:]] + 1)  # every node one ply below its parent
    assert int(summary(grown).seldepth) == depth.max()


def test_a_tree_enlarged_when_full_grows_on_as_the_larger_tree_would(growing):
    """A 32-node tree filled, moved into the 64-node capacity and grown to 50 simulations is, node for node, the
    64-node tree grown to 50 from the start: what lets the engine start small and still grow."""
    params, apply_fn, build = growing
    config, start, grow, _ = build("gumbel")
    small = make_growing_search(config, apply_fn, CAPACITY // 2, multipv=4, line_length=8)
    big = make_growing_search(config, apply_fn, CAPACITY, multipv=4, line_length=8)
    state, key = notation.from_fen(ITALIAN), jax.random.PRNGKey(5)
    grown = jax.jit(small.grow)(params, jax.jit(small.start)(params, key, state, 50), 1000)
    assert int(grown.simulations) == CAPACITY // 2 - 1
    enlarged = grow(params, jax.jit(big.enlarge)(params, grown), 50)
    direct = grow(params, start(params, key, state, 50), 50)
    for a, b in zip(jax.tree.leaves(direct), jax.tree.leaves(enlarged)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(ValueError, match="does not fit"):
        small.enlarge(params, direct)
