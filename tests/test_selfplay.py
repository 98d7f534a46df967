"""Self-play: every move legal (replayed through python-chess), results and value targets right for both colours,
truncation at --max-plies honest, finished games restart, unfinished ones carry over, PUCT samples moves by visit count
for --temperature-plies and then plays the most visited."""

from __future__ import annotations

import math

import chess
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from chessbrain_jax.core import chess_env, replay, selfplay, targets
from chessbrain_jax.play import notation
from tests.conftest import make_config

STARTS = [
    ("6k1/5ppp/8/8/8/8/5PPP/R5K1 w - - 0 1", 1.0),  # white mates in one
    ("r5k1/5ppp/8/8/8/8/5PPP/6K1 b - - 0 1", -1.0),  # black mates in one
    ("8/8/8/4k3/8/8/8/R3K3 w - - 99 80", 0.0),  # any move draws by the 50-move rule
    (chess.STARTING_FEN, None),  # truncated at max_plies
]
MAX_PLIES = 6
PLIES = 10


def _episodes(apply_fn, params, seeds, **overrides):
    """(config, [(final state, host trajectory, host stats) per seed]): one compiled episode from the STARTS."""
    config = make_config(selfplay_batch=4, plies_per_episode=PLIES, mcts_simulations=32, gumbel_considered_actions=32,
                         max_plies=MAX_PLIES, **overrides)
    starts = [notation.from_fen(fen) for fen, _ in STARTS]
    start = jax.tree.map(lambda *leaves: jnp.stack(leaves), *starts)
    state = selfplay.init_selfplay(config, start)
    play = jax.jit(selfplay.make_play_episode(config, apply_fn))
    played = []
    for seed in seeds:
        final, trajectory, stats = play(params, state, jax.random.PRNGKey(seed))
        played.append((final, jax.device_get(trajectory), jax.device_get(stats)))
    return config, played


def _play(apply_fn, params, **overrides):
    # Gumbel search at 32 simulations misses a mate in one ~10% of the time (its final choice adds Gumbel noise to
    # the scores of the most visited moves); this key's episode plays all three mates.
    config, [(final, trajectory, stats)] = _episodes(apply_fn, params, (0,), **overrides)
    return config, final, trajectory, stats


@pytest.fixture(scope="module")
def episode(tiny_network):
    """Gumbel search, no random moves."""
    _, params, apply_fn = tiny_network
    return _play(apply_fn, params, exploration_rate=0.0)


@pytest.fixture(scope="module")
def random_episode(tiny_network):
    """PUCT search with visit-count sampling, and every move replaced by a random legal one (epsilon = 1)."""
    _, params, apply_fn = tiny_network
    return _play(apply_fn, params, search="puct", exploration_rate=1.0)


def _material(board: chess.Board) -> int:
    """White's material minus black's in pawns, as python-chess counts the pieces."""
    values = {chess.PAWN: 1, chess.KNIGHT: 3, chess.BISHOP: 3, chess.ROOK: 5, chess.QUEEN: 9, chess.KING: 0}
    return sum(values[p.piece_type] * (1 if p.color == chess.WHITE else -1) for p in board.piece_map().values())


def _replay_through_python_chess(final, trajectory) -> float:
    """Replays every slot's games with python-chess, checking legality, recorded legal sets, policy targets and results.

    Returns the fraction of moves that were the policy target's most likely move."""
    history = final.results.shape[1]
    results = np.asarray(final.results)
    greedy = []
    for slot, (fen, _) in enumerate(STARTS):
        board, generation = chess.Board(fen), 0
        for t in range(PLIES):
            if trajectory.position.generation[t, slot] != generation:  # the previous game ended: check its result
                assert trajectory.position.generation[t, slot] == generation + 1
                assert _result_of(board, generation) == _table(results, slot, generation, history)
                board, generation = chess.Board(), generation + 1
            assert bool(trajectory.position.white_to_move[t, slot]) == (board.turn == chess.WHITE)
            assert int(trajectory.position.material[t, slot]) == _material(board)
            assert -1.0 <= float(trajectory.position.root_value[t, slot]) <= 1.0
            legal = trajectory.position.legal_actions[t, slot]
            assert {int(a) for a in legal if a >= 0} == notation.legal_actions(board)
            policy = trajectory.position.policy[t, slot]
            np.testing.assert_allclose(policy.sum(), 1.0, rtol=1e-5)
            assert np.all(policy[legal < 0] == 0)
            action = int(trajectory.action[t, slot])
            greedy.append(action == int(legal[np.argmax(policy)]))
            move = notation.action_to_move(board, action)
            assert move in board.legal_moves
            board.push(move)
        assert int(final.generation[slot]) == generation  # unfinished game carries over
        assert math.isnan(results[slot, generation % history])
    return float(np.mean(greedy))


def test_moves_are_legal_and_results_match_python_chess(episode):
    _, final, trajectory, _ = episode
    _replay_through_python_chess(final, trajectory)


def test_puct_with_random_moves_is_legal_and_consistent(random_episode):
    _, final, trajectory, stats = random_episode
    greedy_fraction = _replay_through_python_chess(final, trajectory)
    assert greedy_fraction < 0.5  # epsilon = 1: moves are uniformly random, rarely the search's favourite
    assert int(stats["games_finished"] + stats["truncated"]) >= 4  # every slot reaches at least the ply cap


TEMPERATURE_PLIES = 3


@pytest.fixture(scope="module")
def puct_episodes(tiny_network):
    """PUCT search without random moves (epsilon = 0), sampling by visit count for the first TEMPERATURE_PLIES plies
    of each game; four keys of one compiled episode."""
    _, params, apply_fn = tiny_network
    _, played = _episodes(apply_fn, params, (0, 1, 2, 3), search="puct", exploration_rate=0.0,
                          temperature_plies=TEMPERATURE_PLIES)
    return played


def _game_plies(generation: np.ndarray) -> np.ndarray:
    """`i32[T, B]` the ply of each recorded position within its game: every STARTS game and every restarted one
    begins at ply 0 (a FEN root counts as ply 0, as `chess_env.plies` does), and a slot's generation steps up when
    its game ends."""
    plies = np.zeros_like(generation)
    for t in range(1, generation.shape[0]):
        plies[t] = np.where(generation[t] == generation[t - 1], plies[t - 1] + 1, 0)
    return plies


def test_puct_samples_by_visits_for_temperature_plies_then_plays_the_most_visited(puct_episodes):
    sampled, greedy = [], 0
    for final, trajectory, _ in puct_episodes:
        _replay_through_python_chess(final, trajectory)
        position = trajectory.position
        plies = _game_plies(np.asarray(position.generation))
        for t, slot in np.ndindex(plies.shape):
            legal, policy = position.legal_actions[t, slot], position.policy[t, slot]  # policy: visit fractions
            action = int(trajectory.action[t, slot])
            # The search's best_action: the most visited move, the first in action order among ties.
            most_visited = int(legal[np.argmax(policy)])
            if plies[t, slot] < TEMPERATURE_PLIES:
                played_visits = policy[list(legal).index(action)]
                assert played_visits > 0, (t, slot)  # a move the search visited
                if policy.max() < 1.0:  # visits spread over several moves: a sample need not be the most visited
                    sampled.append(action != most_visited)
            else:
                assert action == most_visited, (t, slot, plies[t, slot])
                greedy += 1
    # 4 keys x 40 moves: plies 0-2 of every game are sampled, plies 3-5 played greedily (106 and 53 here).
    assert len(sampled) >= 80 and greedy >= 40, (len(sampled), greedy)
    # 32 simulations over ~20 moves give a few visits each: a sample is mostly not the most visited move (83% of the
    # time here); playing the most visited one throughout would give 0.
    assert 0.5 < np.mean(sampled) < 1.0, np.mean(sampled)


def _result_of(board: chess.Board, generation: int) -> float | None:
    outcome = board.outcome(claim_draw=True)
    if outcome is None:
        assert board.ply() - _start_ply(board) == MAX_PLIES  # truncated by --max-plies
        return None
    return {chess.WHITE: 1.0, chess.BLACK: -1.0, None: 0.0}[outcome.winner]


def _start_ply(board: chess.Board) -> int:
    return board.ply() - len(board.move_stack)


def _table(results, slot, generation, history):
    value = results[slot, generation % history]
    return None if math.isnan(value) else float(value)


def test_start_positions_end_with_known_results(episode):
    _, final, trajectory, stats = episode
    history = final.results.shape[1]
    for slot, (_, expected) in enumerate(STARTS[:3]):
        assert _table(np.asarray(final.results), slot, 0, history) == expected
    np.testing.assert_array_equal(np.asarray(final.result_plies)[:, 0], [1, 1, 1, MAX_PLIES])  # game lengths
    # Slots 0-2: a result at ply 1, then a fresh game truncated after 6 plies; slot 3 truncated after 6 plies.
    assert {name: int(value) for name, value in stats.items()} == dict(
        games_finished=3, white_wins=1, black_wins=1, draws=1, truncated=4, adjudicated_wins=0,
        drawn_ahead=1, ended_game_plies=1 + 1 + 1 + 4 * 6,  # the fifty-move draw with a rook up is drawn_ahead
        pool_finished=0, pool_decisive=0, mates_played=0)  # mates played, but without --play-searched-mates
    np.testing.assert_array_equal(np.asarray(final.generation), [2, 2, 2, 1])
    # Positions of the fresh games start from the initial position.
    assert trajectory.position.white_to_move[1, :3].all()


def test_replay_value_targets_come_from_results_for_both_colours(episode):
    config, final, trajectory, _ = episode
    buffer = replay.add(replay.init_replay(config), trajectory, final)
    row, column = (x.reshape(-1) for x in jnp.meshgrid(jnp.arange(PLIES), jnp.arange(4), indexing="ij"))
    value, known = (np.asarray(x).reshape(PLIES, 4) for x in replay.value_targets(buffer, row, column))
    # First positions: white to move and mates (+1), black to move and mates (+1 for the mover), a draw (0).
    np.testing.assert_array_equal(known[0], [True, True, True, False])
    np.testing.assert_array_equal(value[0, :3], [1.0, 1.0, 0.0])
    # Everything else belongs to truncated or still running games: no value target.
    assert not known[1:].any()


ADJUDICATED = [  # (start, material balance white minus black, white's result with --adjudicate-material 3)
    ("4k3/8/8/p7/P7/8/PPPP4/4K3 w - - 0 1", 4, 1.0),  # white four pawns up; no capture can happen in two plies
    ("4k3/pppp4/8/p7/P7/8/8/4K3 b - - 0 1", -4, -1.0),  # black four pawns up, black to move
    ("4k3/8/8/p7/P7/8/PP6/4K3 w - - 0 1", 2, 0.0),  # two pawns up: below the threshold, a draw
    (chess.STARTING_FEN, 0, 0.0),
]


def test_material_balance_is_white_minus_black_whoever_moves():
    for fen, balance, _ in ADJUDICATED:
        assert int(chess_env.material_balance(notation.from_fen(fen))) == balance
    queens = notation.from_fen("3qk3/8/8/8/8/8/8/RNB1KBNR b - - 0 1")
    assert int(chess_env.material_balance(queens)) == 5 + 3 + 3 + 3 + 3 + 5 - 9


def test_games_cut_at_the_ply_cap_are_adjudicated_on_material(tiny_network):
    _, params, apply_fn = tiny_network
    config = make_config(selfplay_batch=4, plies_per_episode=2, max_plies=2, mcts_simulations=4,
                         exploration_rate=1.0, adjudicate_material=3)
    start = jax.tree.map(lambda *leaves: jnp.stack(leaves), *[notation.from_fen(fen) for fen, _, _ in ADJUDICATED])
    final, trajectory, stats = jax.jit(selfplay.make_play_episode(config, apply_fn))(
        params, selfplay.init_selfplay(config, start), jax.random.PRNGKey(1))
    history = final.results.shape[1]
    np.testing.assert_array_equal(np.asarray(final.results)[:, 0 % history], [1.0, -1.0, 0.0, 0.0])
    assert int(stats["truncated"]) == 4 and int(stats["adjudicated_wins"]) == 2 and int(stats["games_finished"]) == 0
    buffer = replay.add(replay.init_replay(config), trajectory, final)
    row, column = (x.reshape(-1) for x in jnp.meshgrid(jnp.arange(2), jnp.arange(4), indexing="ij"))
    value, known = (np.asarray(x).reshape(2, 4) for x in replay.value_targets(buffer, row, column))
    assert known.all()
    # From the mover's view: slot 0 white moves first (+1 then -1), slot 1 black moves first and wins (+1 then -1).
    np.testing.assert_array_equal(value, [[1.0, 1.0, 0.0, 0.0], [-1.0, -1.0, 0.0, 0.0]])
    # Discounted per ply: the first position is 2 plies from the end (x 0.9), the last one ply (full result).
    np.testing.assert_array_equal(np.asarray(final.result_plies)[:, 0], [2, 2, 2, 2])
    value, known = (np.asarray(x).reshape(2, 4) for x in replay.value_targets(buffer, row, column, discount=0.9))
    assert known.all()
    np.testing.assert_allclose(value, [[0.9, 0.9, 0.0, 0.0], [-1.0, -1.0, 0.0, 0.0]], rtol=1e-6)


DRAWS = [  # (start, a move that ends the game, white's result, who is a rook up in a draw: 1 white, -1 black, 0 none)
    ("8/8/8/4k3/8/8/8/R3K3 w - - 99 80", "e1d2", 0.0, 1),  # the fifty-move rule with white a rook up
    ("r7/8/8/4k3/8/8/8/4K3 b - - 99 80", "e5d5", 0.0, -1),  # the same with black a rook up, black moving
    ("1r6/8/8/4k3/8/8/8/R3K3 w - - 99 80", "e1d2", 0.0, 0),  # level material: a draw stays a draw
    ("6k1/5ppp/8/8/8/8/5PPP/R5K1 w - - 0 1", "a1a8", 1.0, 0),  # a mate is a mate
]


@pytest.mark.parametrize("drawn_ahead", [0.0, -1.0, -0.5])
def test_draws_far_ahead_record_value_drawn_ahead_for_the_leader(drawn_ahead):
    """The results table gets `value_drawn_ahead` from the leader's view (white's: x the leader's sign) for a draw
    by the rules 5+ pawns ahead; the natural result (`white_result`) stays a draw."""
    boards = [chess.Board(fen) for fen, *_ in DRAWS]
    state = jax.tree.map(lambda *leaves: jnp.stack(leaves), *[notation.from_fen(fen) for fen, *_ in DRAWS])
    actions = jnp.asarray([notation.move_to_action(b, chess.Move.from_uci(m)) for b, (_, m, *_) in zip(boards, DRAWS)])
    after = chess_env.step(state, actions)
    ended = targets.ply_outcome(make_config(value_drawn_ahead=drawn_ahead), state, after)
    assert np.asarray(ended.done).all() and not np.asarray(ended.truncated).any()
    np.testing.assert_array_equal(np.asarray(ended.white_result), [result for _, _, result, _ in DRAWS])
    expected = [drawn_ahead * leader if leader else result for _, _, result, leader in DRAWS]
    np.testing.assert_allclose(np.asarray(ended.outcome), expected)
    ahead = targets.drawn_ahead(ended.white_result, ~ended.truncated, chess_env.material_balance(after))
    assert list(np.asarray(ahead)) == [True, True, False, False]


def _board_after(plies: int, seed: int) -> chess.Board:
    import random

    rng, board = random.Random(seed), chess.Board()
    while board.ply() < plies:
        board.push(rng.choice(sorted(board.legal_moves, key=chess.Move.uci)))
    assert not board.is_game_over()
    return board


def test_random_moves_only_in_the_first_exploration_plies():
    """--exploration-plies 10 with epsilon 1: the games at ply 0 and 9 play random moves, those at ply 10 and 30 the
    search's move (a game's ply is the plies played before the position)."""
    from chessbrain_jax.core.search import SearchOutput

    boards = [_board_after(plies, seed=plies) for plies in (0, 9, 10, 30)]
    env = notation.stack_states([notation.board_to_state(board) for board in boards])
    assert chess_env.plies(env).tolist() == [0, 9, 10, 30]
    searched = jnp.asarray([notation.move_to_action(board, min(board.legal_moves, key=chess.Move.uci))
                            for board in boards], jnp.int32)
    output = SearchOutput(searched, searched, None, None, None, None)

    def choose(config, seed):
        return np.asarray(jax.jit(lambda key: selfplay.choose_action(config, env, output, *jax.random.split(key)))(
            jax.random.PRNGKey(seed)))

    limited = make_config(exploration_rate=1.0, exploration_plies=10)
    actions = np.stack([choose(limited, seed) for seed in range(8)])
    assert (actions[:, :2] != np.asarray(searched[:2])).mean() > 0.8  # ~20-30 legal moves: rarely the search's one
    assert (actions[:, 2:] == np.asarray(searched[2:])).all()
    everywhere = choose(make_config(exploration_rate=1.0), 0)
    assert (everywhere[2:] != np.asarray(searched[2:])).any()  # 0 keeps the old meaning: every ply


def test_gumbel_sample_plies_switches_to_the_best_move_after_the_opening():
    """--gumbel-sample-plies 10: games at ply 0 and 9 play Gumbel's sampled choice (`action`), those at ply 10 and
    30 its best move (`best_action`); 0 (the default) samples at every ply, and PUCT ignores the setting."""
    from chessbrain_jax.core.search import SearchOutput

    boards = [_board_after(plies, seed=plies) for plies in (0, 9, 10, 30)]
    env = notation.stack_states([notation.board_to_state(board) for board in boards])
    moves = [sorted(board.legal_moves, key=chess.Move.uci) for board in boards]
    sampled = jnp.asarray([notation.move_to_action(b, m[0]) for b, m in zip(boards, moves)], jnp.int32)
    best = jnp.asarray([notation.move_to_action(b, m[1]) for b, m in zip(boards, moves)], jnp.int32)
    output = SearchOutput(sampled, best, None, None, None, None)

    def choose(**overrides):
        config = make_config(exploration_rate=0.0, **overrides)
        return np.asarray(selfplay.choose_action(config, env, output, *jax.random.split(jax.random.PRNGKey(0))))

    np.testing.assert_array_equal(choose(gumbel_sample_plies=10), np.concatenate([sampled[:2], best[2:]]))
    np.testing.assert_array_equal(choose(), sampled)
    np.testing.assert_array_equal(choose(search="puct", temperature_plies=100, gumbel_sample_plies=10), sampled)


def test_playout_cap_plies_are_full_or_cheap_for_the_whole_batch(tiny_network):
    """With --playout-cap-fraction 0.5 each ply is one draw for all games: a full search's ply records policy
    targets (summing to 1), a cheap one's records none (all zeros); both kinds occur, and the moves stay legal."""
    _, params, apply_fn = tiny_network
    config, [(final, trajectory, _)] = _episodes(apply_fn, params, (3,), exploration_rate=0.0,
                                                 playout_cap_fraction=0.5, playout_cap_simulations=2)
    sums = trajectory.position.policy.sum(axis=-1)  # [T, B]
    full = np.isclose(sums[:, 0], 1.0)
    assert np.all(np.isclose(sums, 1.0) == full[:, None]) and np.all(sums[~full] == 0)
    assert 0 < full.sum() < PLIES
    assert config.cheap_simulations == 2


@pytest.mark.parametrize("mate_targets", [False, True])
def test_a_cheap_search_that_finds_a_mate_gives_it_as_policy_target(mate_targets, tiny_network):
    """Every ply cheap (31 simulations, every root move visited): the mates in one of the first two starts are
    played, and with --playout-cap-mate-targets they are the whole policy target of that ply; no other position
    gets one."""
    _, params, apply_fn = tiny_network
    _, [(_, trajectory, stats)] = _episodes(apply_fn, params, (0,), exploration_rate=0.0, playout_cap_fraction=1e-9,
                                        playout_cap_simulations=31, play_searched_mates=True,
                                        playout_cap_mate_targets=mate_targets)
    position = trajectory.position
    for game, (fen, _) in enumerate(STARTS[:2]):
        board = chess.Board(fen)
        mate = notation.move_to_action(board, chess.Move.from_uci("a1a8" if game == 0 else "a8a1"))
        assert int(trajectory.action[0, game]) == mate
        expected = (np.asarray(position.legal_actions[0, game]) == mate).astype(np.float32) * mate_targets
        np.testing.assert_allclose(np.asarray(position.policy[0, game]), expected)
    sums = np.asarray(position.policy).sum(axis=-1)
    assert sums[0, 2:].sum() == 0 and sums[1:].sum() == 0
    assert int(stats["mates_played"]) == 2  # the two mates; the fresh games after them have none in 10 plies


def test_the_cheap_search_is_the_search_with_cheap_simulations(tiny_network):
    from chessbrain_jax.core.search import make_search_fn

    _, params, apply_fn = tiny_network
    config = make_config(mcts_simulations=16, playout_cap_fraction=1e-9, playout_cap_simulations=3)
    env = chess_env.initial_states(2)
    key = jax.random.PRNGKey(1)
    output, full = jax.jit(selfplay.make_capped_search(config, apply_fn))(params, key, env)
    reference = make_search_fn(config, apply_fn, 3)(params, jax.random.split(key)[1], env)
    assert not bool(full) and output.search_tree is None
    np.testing.assert_allclose(output.action_weights, reference.action_weights, atol=1e-6)
    assert int(reference.search_tree.num_simulations) == 3


def test_the_selfplay_chunk_has_no_host_round_trip_inside(tiny_network):
    """The whole chunk stays on the device: no Python callback, infeed/outfeed or send/recv in its program (the
    gpu-marked twin checks the same on a GPU)."""
    from tests.test_gpu import host_round_trips

    _, params, apply_fn = tiny_network
    config = make_config(playout_cap_fraction=0.5, playout_cap_simulations=2)
    lowered = jax.jit(selfplay.make_play_episode(config, apply_fn)).lower(
        params, selfplay.init_selfplay(config), jax.random.PRNGKey(0))
    assert host_round_trips(lowered.as_text()) == []
