"""Search values terminal states by the game result: with an untrained network it still finds mate in one."""

from __future__ import annotations

import chess
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from chessbrain_jax.core import chess_env
from chessbrain_jax.core.search import (legal_slots, make_search_fn, mask_illegal, moves_left_utility, to_actions,
                                        with_root_noise)
from chessbrain_jax.play import notation
from tests.conftest import confident_prior, make_config

MATE_IN_ONE = [
    ("6k1/5ppp/8/8/8/8/5PPP/R5K1 w - - 0 1", "a1a8"),  # white mates on the back rank
    ("r5k1/5ppp/8/8/8/8/5PPP/6K1 b - - 0 1", "a8a1"),  # black to move: pgx mirrors the board
]


@pytest.fixture(scope="module")
def mate_states():
    states = [notation.from_fen(fen) for fen, _ in MATE_IN_ONE]
    mates = [notation.move_to_action(chess.Board(fen), chess.Move.from_uci(uci)) for fen, uci in MATE_IN_ONE]
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *states), np.array(mates)


@pytest.mark.parametrize("algorithm", ["gumbel", "puct"])
def test_search_finds_mate_in_one_with_untrained_network(algorithm, mate_states, tiny_network):
    states, mates = mate_states
    _, params, apply_fn = tiny_network
    config = make_config(search=algorithm, mcts_simulations=64, gumbel_considered_actions=32)
    output = jax.jit(make_search_fn(config, apply_fn))(params, jax.random.PRNGKey(0), states)

    weights = np.asarray(output.action_weights)
    assert np.all(weights[~np.asarray(states.legal_action_mask)] == 0)  # no weight on illegal moves
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(weights.argmax(-1), mates)
    if algorithm == "gumbel":
        np.testing.assert_array_equal(np.asarray(output.action), mates)
    else:  # PUCT's root prior carries Dirichlet noise over the legal moves (the network's prior is uniform)
        root_slots = output.search_tree.embeddings.actions[:, 0]
        root_prior = np.asarray(to_actions(jax.nn.softmax(output.search_tree.children_prior_logits[:, 0]), root_slots))
        legal = np.asarray(states.legal_action_mask)
        uniform = legal / legal.sum(-1, keepdims=True)
        assert np.all(np.abs(root_prior - uniform).sum(-1) > 0.1)
        assert np.all(root_prior[~legal] == 0)
    # The mating edge is worth exactly +1 to the mover: reward 1, then discount 0 (the value is not the network's).
    tree = output.search_tree
    root_q = np.asarray(to_actions(tree.qvalues(jnp.zeros(2, jnp.int32)), tree.embeddings.actions[:, 0]))
    np.testing.assert_allclose(root_q[np.arange(2), mates], 1.0)
    np.testing.assert_allclose(np.asarray(output.root_value), np.asarray(tree.node_values[:, 0]))


def test_tree_slots_are_the_legal_moves(mate_states):
    """Slots list each state's legal actions in increasing order (as replay stores policies), -1 padded, and
    scattering per-slot values back to pgx actions puts them on exactly those actions."""
    states, _ = mate_states
    slots = np.asarray(legal_slots(states.legal_action_mask))
    for row, mask in zip(slots, np.asarray(states.legal_action_mask)):
        count = int(mask.sum())
        np.testing.assert_array_equal(row[:count], np.flatnonzero(mask))
        assert np.all(row[count:] == -1)
    values = jnp.arange(1, slots.shape[1] + 1, dtype=jnp.float32)[None].repeat(2, 0)
    dense = np.asarray(to_actions(values, jnp.asarray(slots)))
    for b in range(2):
        legal = np.flatnonzero(np.asarray(states.legal_action_mask[b]))
        np.testing.assert_array_equal(dense[b, legal], np.arange(1, len(legal) + 1))
        assert dense[b].sum() == sum(range(1, len(legal) + 1))


def test_root_noise_mixes_dirichlet_over_legal_moves_only(mate_states):
    states, _ = mate_states
    legal = states.legal_action_mask
    logits = mask_illegal(jax.random.normal(jax.random.PRNGKey(0), legal.shape), legal)
    prior = np.asarray(jax.nn.softmax(logits))
    noisy = np.asarray(jax.nn.softmax(with_root_noise(jax.random.PRNGKey(1), logits, legal, 0.3, 0.25)))
    legal = np.asarray(legal)
    assert np.all(noisy[~legal] == 0)
    np.testing.assert_allclose(noisy.sum(-1), 1.0, rtol=1e-5)
    noise = (noisy - 0.75 * prior) / 0.25  # what was mixed in: a distribution over the legal moves
    assert np.all(noise[legal] > -1e-5)
    np.testing.assert_allclose(noise.sum(-1), 1.0, rtol=1e-4)
    unchanged = np.asarray(jax.nn.softmax(with_root_noise(jax.random.PRNGKey(1), logits, jnp.asarray(legal), 0.3, 0.0)))
    np.testing.assert_allclose(unchanged, prior, rtol=1e-5, atol=1e-7)


def test_best_action_plays_the_mate_that_gumbels_sampled_choice_sometimes_misses(tiny_network):
    """64 searches of the fool's mate position (30 legal moves): self-play's sampled choice misses ...Qh4# now and
    then; `best_action` (the most visited, ranked by the improved policy without noise) never does."""
    fen = "rnbqkbnr/pppp1ppp/8/4p3/6P1/5P2/PPPPP2P/RNBQKBNR b KQkq - 0 2"
    mate = notation.move_to_action(chess.Board(fen), chess.Move.from_uci("d8h4"))
    _, params, apply_fn = tiny_network
    states = notation.stack_states([notation.from_fen(fen)] * 64)
    config = make_config(mcts_simulations=32, gumbel_considered_actions=32)
    output = jax.jit(make_search_fn(config, apply_fn))(params, jax.random.PRNGKey(0), states)
    assert np.all(np.asarray(output.best_action) == mate)
    assert np.any(np.asarray(output.action) != mate)


def test_a_move_that_repeats_a_position_is_a_draw_inside_the_tree(tiny_network):
    """After 1.Nf3 Nf6 2.Ng1, black's ...Ng8 brings back the start position: the tree ends that line as a draw
    (reward 0, discount 0) while every other visited move continues (discount -1)."""
    board = chess.Board()
    for uci in ("g1f3", "g8f6", "f3g1"):
        board.push_uci(uci)
    repeat = notation.move_to_action(board, chess.Move.from_uci("f6g8"))
    _, params, apply_fn = tiny_network
    states = notation.stack_states([notation.board_to_state(board)])
    assert int(chess_env.repetitions(states)[0]) == 0
    config = make_config(mcts_simulations=32, gumbel_considered_actions=32)  # black has 22 moves: all visited
    tree = jax.jit(make_search_fn(config, apply_fn))(params, jax.random.PRNGKey(0), states).search_tree
    slots = np.asarray(tree.embeddings.actions[0, 0])
    visited = np.asarray(tree.children_visits[0, 0]) > 0
    discounts = np.asarray(tree.children_discounts[0, 0])
    (slot,) = np.flatnonzero(slots == repeat)
    assert visited[slot] and discounts[slot] == 0.0 and float(tree.children_rewards[0, 0, slot]) == 0.0
    others = visited & (np.arange(len(slots)) != slot)
    assert others.sum() > 10 and np.all(discounts[others] == -1.0)
    after = chess_env.step(states, jnp.array([repeat], jnp.int32))
    assert int(chess_env.repetitions(after)[0]) == 1 and not bool(after.terminated[0])


def test_value_discount_makes_the_quicker_win_worth_more(mate_states):
    """A network that calls every position lost for the side to move makes every move look winning. Undiscounted,
    the mate in one and the other moves tie at +1; with --value-discount 0.9 the other moves are worth 0.9 (the win
    is at least a ply further away) and the mate keeps its full reward."""
    states, mates = mate_states

    def lost_for_the_mover(params, observation):
        return jnp.zeros((observation.shape[0], 4672)), -jnp.ones(observation.shape[0])

    for discount, other_value in ((1.0, 1.0), (0.9, 0.9)):
        config = make_config(mcts_simulations=32, gumbel_considered_actions=32, value_discount=discount)
        tree = jax.jit(make_search_fn(config, lost_for_the_mover))(None, jax.random.PRNGKey(0), states).search_tree
        visited = np.asarray(tree.children_visits[:, 0]) > 0
        children = np.asarray(tree.children_index[:, 0])
        q = np.asarray(tree.children_rewards[:, 0] + tree.children_discounts[:, 0] * tree.children_values[:, 0])
        for b, mate in enumerate(mates):
            mate_slot = int(np.flatnonzero(np.asarray(tree.embeddings.actions[b, 0]) == mate)[0])
            assert visited[b, mate_slot] and q[b, mate_slot] == pytest.approx(1.0)
            once = visited[b] & (np.arange(visited.shape[1]) != mate_slot)
            once &= np.asarray(tree.children_visits[b, np.maximum(children[b], 0)]).sum(-1) == 0  # leaves only
            assert once.sum() > 5
            np.testing.assert_allclose(q[b, once], other_value, rtol=1e-6)


def test_moves_left_utility_prefers_the_shorter_win_and_the_longer_loss():
    """v - sign(v) x a x min(effect, slope x plies), a = (|v| - threshold) / (1 - threshold) clipped to [0, 1]."""
    config = make_config(moves_left_weight=0.1, moves_left_effect=0.05, moves_left_slope=0.002,
                         moves_left_threshold=0.3)
    value, plies = jnp.float32([0.9, 0.9, -0.9, 0.2, 1.0]), jnp.float32([10, 50, 50, 50, 100])
    activation = (0.9 - 0.3) / 0.7
    np.testing.assert_allclose(moves_left_utility(value, plies, config),
                               [0.9 - activation * 0.02, 0.9 - activation * 0.05, -0.9 + activation * 0.05, 0.2,
                                0.95], rtol=1e-6)


def test_the_search_reads_values_through_the_moves_left_utility(mate_states):
    """A network that calls every position lost for the side to move (-0.9) and predicts plies left from the
    observation: every searched leaf is worth 0.9 - a x min(effect, slope x its plies) to the root's mover, so the
    leaf that ends sooner is worth more; with --moves-left-effect 0 (or no head) the search reads the value alone."""
    states, _ = mate_states

    def plies_left(observation):
        return observation.sum(axis=(1, 2, 3)) % 37

    def network(params, observation, heads=False):
        logits, value = jnp.zeros((observation.shape[0], 4672)), jnp.full(observation.shape[0], -0.9)
        return (logits, value, {"moves_left": plies_left(observation)}) if heads else (logits, value)

    activation = (0.9 - 0.3) / 0.7
    for effect in (0.05, 0.0):
        config = make_config(mcts_simulations=8, gumbel_considered_actions=8, moves_left_weight=0.1,
                             moves_left_effect=effect, moves_left_slope=0.002, moves_left_threshold=0.3)
        tree = jax.jit(make_search_fn(config, network))(None, jax.random.PRNGKey(0), states).search_tree
        children = np.asarray(tree.children_index[:, 0])
        for b in range(2):
            leaves = [(slot, child) for slot, child in enumerate(children[b]) if child >= 0
                      and np.asarray(tree.children_visits[b, child]).sum() == 0
                      and not bool(tree.children_discounts[b, 0, slot] == 0)]  # not terminal
            assert len(leaves) > 5
            for slot, child in leaves:
                action = int(tree.embeddings.actions[b, 0, slot])
                after = chess_env.step(jax.tree.map(lambda x: x[b:b + 1], states), jnp.int32([action]))
                expected = 0.9 - activation * min(effect, 0.002 * float(plies_left(after.observation)[0]))
                assert float(tree.node_values[b, child]) == pytest.approx(-expected, rel=1e-5)


@pytest.mark.parametrize("value_scale, play_mates, finds_mate", [(0.1, False, False), (1.0, False, True),
                                                                  (0.1, True, True)])
def test_value_scale_decides_whether_a_searched_mate_overrules_a_confident_prior(value_scale, play_mates,
                                                                                finds_mate, tiny_network):
    """A prior that puts e^-8 of the favourite's weight on the mating move: every root move is searched (32
    simulations, ~20 legal moves), so the mate's value of +1 is known; c_scale 0.1 (mctx's default) lifts it by
    about 5 logits and the favourite stays, c_scale 1.0 by about 50 and the mate is played.
    `--play-searched-mates` plays it at any c_scale, in self-play too, with the mate as the whole policy target."""
    fen, uci = MATE_IN_ONE[0]
    board = chess.Board(fen)
    mate = notation.move_to_action(board, chess.Move.from_uci(uci))
    favourite = notation.move_to_action(board, chess.Move.from_uci("g1f1"))
    _, params, apply_fn = tiny_network
    confident = confident_prior(apply_fn, favourite, mate)

    states = notation.stack_states([notation.from_fen(fen)] * 4)
    config = make_config(mcts_simulations=32, gumbel_considered_actions=32, gumbel_value_scale=value_scale,
                         play_searched_mates=play_mates)
    output = jax.jit(make_search_fn(config, confident))(params, jax.random.PRNGKey(0), states)
    tree = output.search_tree
    visits = np.asarray(to_actions(tree.children_visits[:, 0], tree.embeddings.actions[:, 0]))
    assert np.all(visits[:, mate] >= 1)  # searched in every case: the prior, not the search, decides
    assert np.all((np.asarray(output.best_action) == mate) == finds_mate)
    weights = np.asarray(output.action_weights)
    assert np.all(np.asarray(output.mate_found) == play_mates)
    if play_mates:
        assert np.all(np.asarray(output.action) == mate)  # self-play's sampled move too
        np.testing.assert_allclose(weights[:, mate], 1.0)
        np.testing.assert_allclose(np.asarray(output.root_value), 1.0)
    elif not finds_mate:
        assert np.all(weights[:, mate] < 0.5)
