"""pgx actions <-> python-chess moves: the legal sets agree move for move along random games."""

from __future__ import annotations

import chess
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from chessbrain_jax.core import chess_env
from chessbrain_jax.play import notation


def test_legal_sets_agree_along_random_games():
    step = jax.jit(chess_env.step)
    rng = np.random.default_rng(3)
    positions = 0
    for _ in range(3):
        state, board = chess_env.initial_states(1), chess.Board()
        for _ in range(80):
            pgx_legal = set(np.flatnonzero(np.asarray(state.legal_action_mask[0])).tolist())
            assert pgx_legal == notation.legal_actions(board), board.fen()
            for action in pgx_legal:
                move = notation.action_to_move(board, action)
                assert move in board.legal_moves
                assert notation.move_to_action(board, move) == action
            positions += 1
            action = int(rng.choice(sorted(pgx_legal)))
            board.push(notation.action_to_move(board, action))
            state = step(state, jnp.array([action], jnp.int32))
            if bool(state.terminated[0]):
                assert board.outcome(claim_draw=True) is not None
                break
    assert positions > 100


def test_special_moves():
    cases = [
        ("r3k2r/8/8/8/8/8/8/R3K2R w KQkq - 0 1", ["e1g1", "e1c1"]),
        ("r3k2r/8/8/8/8/8/8/R3K2R b KQkq - 0 1", ["e8g8", "e8c8"]),
        ("4k3/8/8/3pP3/8/8/8/4K3 w - d6 0 2", ["e5d6"]),
        ("4k3/8/8/8/3pP3/8/8/4K3 b - e3 0 2", ["d4e3"]),
        ("1n2k3/2P5/8/8/8/8/8/4K3 w - - 0 1", ["c7c8q", "c7c8r", "c7c8b", "c7c8n", "c7b8q", "c7b8n"]),
        ("4k3/8/8/8/8/8/2p5/1N2K3 b - - 0 1", ["c2c1q", "c2c1n", "c2b1r", "c2b1b"]),
    ]
    for fen, ucis in cases:
        board = chess.Board(fen)
        state = notation.from_fen(fen)
        pgx_legal = set(np.flatnonzero(np.asarray(state.legal_action_mask)).tolist())
        assert pgx_legal == notation.legal_actions(board), fen
        for uci in ucis:
            move = chess.Move.from_uci(uci)
            action = notation.move_to_action(board, move)
            assert action in pgx_legal
            assert notation.action_to_move(board, action) == move


@pytest.mark.parametrize("fen, fragment", [
    ("rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP w KQkq - 0 1", "invalid FEN"),
    ("not a fen", "invalid FEN"),
    ("rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP/RNBQKBNR x KQkq - 0 1", "invalid FEN"),
    ("8/8/8/8/8/8/8/8 w - - 0 1", "no white king"),
    ("4k3/4Q3/8/8/8/8/8/4K3 w - - 0 1", "opposite check"),
    ("P3k3/8/8/8/8/8/8/4K3 w - - 0 1", "pawns on backrank"),
])
def test_bad_fen_is_a_one_line_value_error(fen, fragment):
    with pytest.raises(ValueError) as caught:
        notation.from_fen(fen)
    assert fragment in str(caught.value) and "\n" not in str(caught.value)


def test_short_fen_gets_default_clocks():
    state = notation.from_fen("4k3/8/8/8/8/8/8/4K2R w K -")
    assert int(state._x.fullmove_count) == 1 and bool(state.legal_action_mask.any())


# Starting points for the exhaustive check: the initial position and positions built to reach castling (both sides,
# through attacked squares), en passant and every promotion quickly under random play.
EXHAUSTIVE_STARTS = [
    chess.STARTING_FEN,
    "r3k2r/pppppppp/8/8/8/8/PPPPPPPP/R3K2R w KQkq - 0 1",
    "r3k2r/1P4P1/8/2b2B2/8/8/1p4p1/R3K2R b KQkq - 0 1",
    "rn2k2r/1P2pppP/8/3pP3/2pP4/8/1p1PPPPp/RN2K2R w KQkq d6 0 9",
    "4k3/PP4PP/8/8/8/8/pp4pp/4K3 w - - 0 1",
]


def test_legal_sets_agree_exhaustively():
    """pgx's legal-action set maps one-to-one onto python-chess's legal moves in thousands of random-game positions
    (64 games from each start, batched), every action round-trips, and pgx's FEN of the state equals python-chess's."""
    games, plies = 64, 24
    step = jax.jit(chess_env.step)
    rng = np.random.default_rng(11)
    checked = special = fens = 0
    for fen in EXHAUSTIVE_STARTS:
        boards = [chess.Board(fen) for _ in range(games)]
        state = notation.stack_states([notation.board_to_state(boards[0])] * games)
        alive = np.ones(games, bool)
        for ply in range(plies):
            masks, terminated = jax.device_get((state.legal_action_mask, state.terminated))
            actions = np.zeros(games, np.int32)
            for i in np.flatnonzero(alive):
                board = boards[i]
                if terminated[i]:
                    assert board.is_game_over(claim_draw=True), board.fen()
                    alive[i] = False
                    continue
                pgx_legal = set(np.flatnonzero(masks[i]).tolist())
                assert pgx_legal == notation.legal_actions(board), board.fen()
                for action in pgx_legal:
                    move = notation.action_to_move(board, action)
                    assert notation.move_to_action(board, move) == action
                    special += board.is_castling(move) or board.is_en_passant(move) or move.promotion is not None
                if i % 16 == 0:
                    single = jax.tree.map(lambda leaf: leaf[i], state)
                    assert notation.state_to_fen(single).split()[:4] == board.fen(en_passant="fen").split()[:4]
                    fens += 1
                checked += 1
                actions[i] = rng.choice(sorted(pgx_legal))
                board.push(notation.action_to_move(board, int(actions[i])))
            state = step(state, jnp.asarray(actions))
    assert checked >= 5000, checked
    assert special >= 1000 and fens >= 300, (special, fens)


def test_board_to_state_keeps_history():
    """A state built from a board with moves equals the one reached by stepping, repetition count included."""
    board = chess.Board()
    for uci in ["g1f3", "g8f6", "f3g1", "f6g8", "g1f3", "g8f6", "f3g1"]:
        board.push_uci(uci)
    state = notation.board_to_state(board)
    assert not bool(state.terminated)
    board.push_uci("f6g8")  # third occurrence of the start position: pgx ends the game
    assert bool(notation.board_to_state(board).terminated) and board.is_repetition(3)
    board.pop()
    assert notation.state_to_fen(state).split()[:4] == board.fen().split()[:4]


@pytest.mark.parametrize("fen", EXHAUSTIVE_STARTS + ["4k3/8/8/8/3pP3/8/8/4K3 b - e3 0 2",
                                                     "rnbqkbnr/pppp1ppp/8/4p3/4P3/8/PPPP1PPP/RNBQKBNR w Kq - 4 17"])
def test_from_fen_equals_pgx_parser_with_an_empty_history(fen):
    """Same state as pgx's parser, except that nothing precedes the root (pgx's shows the start position there)."""
    from pgx.experimental.chess import from_fen as pgx_from_fen

    ours, theirs = notation.from_fen(fen), pgx_from_fen(chess.Board(fen).fen())
    history = {"board_history", "hash_history"}
    for (path, mine), reference in zip(jax.tree_util.tree_leaves_with_path(ours), jax.tree.leaves(theirs)):
        name = jax.tree_util.keystr(path)
        if any(field in name for field in history):
            np.testing.assert_array_equal(np.asarray(mine)[0], np.asarray(reference)[0])
            assert not np.asarray(mine)[1:].any()
        elif "observation" not in name:
            np.testing.assert_array_equal(np.asarray(mine), np.asarray(reference), err_msg=name)
    observation, reference = np.asarray(ours.observation), np.asarray(theirs.observation)
    np.testing.assert_array_equal(observation[..., :14], reference[..., :14])  # the root: 12 piece + 2 repetition
    np.testing.assert_array_equal(observation[..., 112:], reference[..., 112:])  # colour, counters, castling
    for past in range(1, 8):  # no pieces in the 7 history steps before the root
        assert not observation[..., 14 * past:14 * past + 12].any()


def test_start_position_from_fen_looks_like_a_fresh_game():
    """What the network sees from a FEN of the start position equals what self-play shows it (ENV.init)."""
    fresh = jax.tree.map(lambda leaf: leaf[0], chess_env.initial_states(1))
    parsed = notation.from_fen(chess.STARTING_FEN)
    np.testing.assert_array_equal(np.asarray(parsed.observation), np.asarray(fresh.observation))
    np.testing.assert_array_equal(np.asarray(parsed.legal_action_mask), np.asarray(fresh.legal_action_mask))
