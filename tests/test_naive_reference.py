"""The old-design baseline (`benchmarks/naive_reference.py`): legal self-play, exact visit counts, mate found by
search with an untrained network, pgx's exact observation and game end, consistent figures."""

from __future__ import annotations

import random

import chess
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import naive_reference
from chessbrain_jax.core import chess_env, model
from chessbrain_jax.play import notation
from tests.conftest import make_config

# (root FEN, moves, whether a position repeats): castling both ways, en passant (legal at a FEN root too),
# promotions, repetitions up to pgx's threefold draw.
LINES = [
    (chess.STARTING_FEN, "e2e4 g8f6 g1f3 f6g8 f3g1 g8f6 g1f3 f6g8 e4e5 d7d5 e5d6 c7c5 f1c4 b8c6 e1g1 d8b6 d1e2 "
                         "c8e6 b1c3 e8c8", True),
    ("r3k2r/ppp2ppp/2q5/3pP3/8/8/PPP2PPP/R3K2R w KQkq d6 0 12", "e5d6 e8c8 e1g1 c8b8 f1e1 b8c8 e1f1 c8b8 f1e1 "
                                                                "b8c8 e1f1", True),
    ("rnbqkbnr/ppp1pppp/8/8/2Pp4/8/PP1PPPPP/RNBQKBNR b KQkq c3 0 3", "d4c3 b1c3 e7e5 c3d5 g8f6", False),
    ("4k3/1P6/8/8/8/8/6p1/4K3 w - - 0 1", "b7b8n g2g1q e1e2 g1g2 e2e3 e8d8 b8c6 d8c7", False),
]


def random_line(seed: int, plies: int) -> tuple[str, str, bool]:
    rng, board = random.Random(seed), chess.Board()
    while board.ply() < plies and not board.is_game_over():
        board.push(rng.choice(list(board.legal_moves)))
    return chess.STARTING_FEN, " ".join(move.uci() for move in board.move_stack), False


@pytest.fixture(scope="module")
def config():
    return make_config()


@pytest.fixture(scope="module")
def params(config):
    return model.init_params(model.make_network(config), jax.random.PRNGKey(0))


@pytest.fixture(scope="module")
def pgx_step():
    return jax.jit(chess_env.ENV.step)


@pytest.mark.parametrize("fen, line, repeats", LINES + [random_line(0, 120), random_line(1, 120)])
def test_observation_and_game_end_match_pgx(fen, line, repeats, pgx_step):
    """At every ply the numpy observation equals pgx's (stepped from `notation.from_fen`, as `board_to_state`
    does), and the game ends exactly where pgx ends it."""
    board = chess.Board(fen)
    state = notation.from_fen(fen)
    history = naive_reference.game_history(board)
    repeated_somewhere = False
    for uci in line.split() + [None]:
        keys = [past.key for past in history]
        planes = naive_reference.observation(history[-8:], keys.count, board)
        np.testing.assert_array_equal(planes, np.asarray(state.observation), err_msg=f"at {board.fen()}")
        repeated_somewhere |= bool(planes[..., 13::14].any())
        result = naive_reference.terminal_value(board, list(board.legal_moves), keys.count(keys[-1]) - 1)
        assert (result is not None) == bool(state.terminated), board.fen()
        if uci is None or result is not None:
            break
        move = board.parse_uci(uci)
        state = pgx_step(state, jnp.int32(notation.move_to_action(board, move)))
        board.push(move)
        history.append(naive_reference.position(board))
    np.testing.assert_array_equal(planes, np.asarray(notation.board_to_state(board).observation))
    assert repeated_somewhere or not repeats


def test_search_visit_counts_sum_to_simulations(config, params):
    board = chess.Board()
    for uci in ("e2e4", "e7e5", "g1f3"):
        board.push_uci(uci)
    evaluator = naive_reference.Evaluator(config, params)
    for dirichlet in (None, (0.3, 0.25)):
        visits = naive_reference.search(board, evaluator, 24, dirichlet=dirichlet, rng=np.random.default_rng(0))
        assert set(visits) == set(board.legal_moves)
        assert sum(visits.values()) == 24
    assert evaluator.timings.network_calls == 2 * 25  # the root, then one leaf per simulation


@pytest.mark.parametrize("fen, mate", [("6k1/5ppp/8/8/8/8/8/R5K1 w - - 0 1", "a1a8"),
                                       ("r5k1/8/8/8/8/8/5PPP/6K1 b - - 0 1", "a8a1")])
def test_search_finds_mate_in_one_with_untrained_network(fen, mate, config, params):
    """Uniform priors and value 0 everywhere: only the game result (a mated side to move is worth -1) singles
    out the mate."""
    visits = naive_reference.search(chess.Board(fen), naive_reference.Evaluator(config, params), 64)
    assert max(visits, key=visits.get).uci() == mate


def test_play_legal_games_and_consistent_figures(params):
    config = make_config(max_plies=5)
    result = naive_reference.play(config, params, moves=12, simulations=8, seed=0, return_games=True)

    assert [len(game) for game in result["games_uci"]] == [5, 5, 2]  # a new game after max_plies
    for game in result["games_uci"]:
        board = chess.Board()
        for uci in game:
            move = chess.Move.from_uci(uci)
            assert move in board.legal_moves
            board.push(move)
    assert result["games_uci"] == naive_reference.play(config, params, 12, 8, seed=0, return_games=True)["games_uci"]

    seconds = result["seconds"]
    assert (result["moves"], result["games"], result["simulations"]) == (12, 3, 8)
    assert result["network_calls"] == 12 * (8 + 1)  # no simulation reaches a finished game this early
    assert result["moves_per_s"] == pytest.approx(12 / seconds)
    assert result["simulations_per_s"] == pytest.approx(12 * 8 / seconds)
    assert result["network_calls_per_s"] == pytest.approx(result["network_calls"] / seconds)
    assert result["ms_per_network_call"] == pytest.approx(1e3 * result["network_s"] / result["network_calls"])
    assert min(result["network_s"], result["encoding_s"], result["tree_s"]) > 0
    assert result["network_s"] + result["encoding_s"] + result["tree_s"] == pytest.approx(seconds)
