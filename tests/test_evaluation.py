"""Self-play games recorded as PGN from trajectories, and dropped again on resume."""

from __future__ import annotations

import chess
import chess.pgn
import numpy as np

from chessbrain_jax.play import evaluation, notation
from tests.conftest import make_config

FOOLS_MATE = ["f2f3", "e7e5", "g2g4", "d8h4"]


def _actions(ucis):
    board, actions = chess.Board(), []
    for uci in ucis:
        move = chess.Move.from_uci(uci)
        actions.append(notation.move_to_action(board, move))
        board.push(move)
    return actions


def _episode():
    """Slot 0: fool's mate (generation 0) then a new game (generation 1); slot 1: one unfinished game."""
    actions = np.zeros((6, 2), np.int32)
    actions[:, 0] = _actions(FOOLS_MATE) + _actions(["e2e4", "e7e5"])
    actions[:, 1] = _actions(["d2d4", "d7d5", "c2c4", "e7e6", "b1c3", "g8f6"])
    generations = np.array([[0, 0]] * 4 + [[1, 0]] * 2, np.int32)
    return actions, generations


def _read(path):
    games = []
    with open(path) as stream:
        while (game := chess.pgn.read_game(stream)) is not None:
            games.append(game)
    return games


def test_finished_games_are_written_with_their_result(tmp_path):
    recorder = evaluation.SelfPlayRecorder(make_config(selfplay_pgn_games=2), str(tmp_path))
    assert recorder.record(*_episode(), episode=3) == 1
    (game,) = _read(tmp_path / "selfplay.pgn")
    assert [move.uci() for move in game.mainline_moves()] == FOOLS_MATE
    assert game.headers["Result"] == "0-1" and game.headers["TerminationDetail"] == "checkmate"
    assert game.headers["Episode"] == "3" and game.headers["Round"] == "0.0"
    assert recorder.keep_up_to(3) == 0 and recorder.keep_up_to(2) == 1
    assert _read(tmp_path / "selfplay.pgn") == []


def test_after_resume_games_in_progress_are_skipped(tmp_path):
    recorder = evaluation.SelfPlayRecorder(make_config(selfplay_pgn_games=1), str(tmp_path), [0])
    assert recorder.record(*_episode(), episode=1) == 0
    actions, _ = _episode()
    more = np.array([[1, 0]] * 2 + [[2, 0]] * 4, np.int32)  # the generation-1 game ends after two more plies
    actions[:2, 0] = _actions(["e2e4", "e7e5", "g1f3", "b8c6"])[2:]
    assert recorder.record(actions, more, episode=2) == 1
    (game,) = _read(tmp_path / "selfplay.pgn")
    assert [move.uci() for move in game.mainline_moves()] == ["e2e4", "e7e5", "g1f3", "b8c6"]
    assert game.headers["Result"] == "1/2-1/2"


def test_a_resumed_game_in_progress_is_not_replayed_from_the_start(tmp_path):
    """Slot 0 resumes game 7 in the middle: its moves (black's, here) are not pushed onto a fresh board."""
    recorder = evaluation.SelfPlayRecorder(make_config(selfplay_pgn_games=1), str(tmp_path), [7, 3])
    middle = _actions(["e2e4", "e7e5", "g1f3"])[1:]  # the game in progress: black's move is illegal from the start
    actions = np.concatenate([middle, _actions(FOOLS_MATE)])[:, None].astype(np.int32)
    generations = np.array([[7], [7]] + [[8]] * 4, np.int32)
    assert recorder.record(actions, generations, episode=5) == 0
    assert [move.uci() for move in recorder.boards[0].move_stack] == FOOLS_MATE
    next_game = np.array(_actions(["e2e4"]), np.int32)[:, None]
    assert recorder.record(next_game, np.array([[9]], np.int32), episode=6) == 1  # game 8 is complete
    (game,) = _read(tmp_path / "selfplay.pgn")
    assert game.headers["Round"] == "0.8" and game.headers["Result"] == "0-1"


def test_games_cut_at_the_ply_cap_carry_the_material_verdict(tmp_path):
    """Slot 0 wins a knight for a pawn (white +2) before the 6-ply cap; slot 1 stays level."""
    knight_for_pawn = ["e2e4", "g8f6", "d2d3", "f6e4", "d3e4", "a7a6"]
    actions = np.array([_actions(knight_for_pawn), _actions(["d2d4", "d7d5", "c2c4", "e7e6", "b1c3", "g8f6"])]).T
    generations = np.array([[0, 0]] * 6 + [[1, 1]], np.int32)
    actions = np.concatenate([actions, _actions(["e2e4"]) * np.ones((1, 2), np.int32)]).astype(np.int32)
    verdicts = {}
    for threshold in (0, 2, 3):
        folder = tmp_path / str(threshold)
        folder.mkdir()
        config = make_config(selfplay_pgn_games=2, max_plies=6, adjudicate_material=threshold)
        assert evaluation.SelfPlayRecorder(config, str(folder)).record(actions, generations, 1) == 2
        verdicts[threshold] = [(g.headers["Result"], g.headers["TerminationDetail"]) for g in
                               _read(folder / "selfplay.pgn")]
    assert verdicts[0] == [("*", "truncated at 6 plies (no result, no value target)")] * 2
    assert verdicts[2] == [("1-0", "adjudicated at 6 plies on material (white +2)"),
                           ("1/2-1/2", "adjudicated at 6 plies on material (white +0)")]
    assert verdicts[3][0] == ("1/2-1/2", "adjudicated at 6 plies on material (white +2)")
