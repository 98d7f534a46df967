"""The ladder's host opponents on positions with known answers: greedy's one-ply rules, minimax's alpha-beta."""

from __future__ import annotations

import importlib.util

import chess
import pytest

from chessbrain_jax.play import arena, opponents

MATE_OR_ROOK = "6k1/5ppp/8/8/7r/6P1/5P1P/R5K1 w - - 0 1"  # Ra8# mates; gxh4 wins a rook
PROMOTION = "8/P6k/8/8/8/8/8/K7 w - - 0 1"  # a8=Q is worth 8
POISONED = "4k3/8/8/8/8/2p5/1p6/1Q2K3 w - - 0 1"  # Qxb2?? cxb2; greedy grabs, depth 2 sees the recapture


def _uci(player, fen: str) -> str:
    return player.move(chess.Board(fen)).uci()


def test_material_counts_from_the_movers_side():
    assert opponents.material(chess.Board()) == 0
    board = chess.Board("4k3/8/8/8/8/8/8/QR2K3 w - - 0 1")
    assert opponents.material(board) == 14
    board.turn = chess.BLACK
    assert opponents.material(board) == -14


def test_greedy_mates_first_then_takes_the_most_material():
    greedy = opponents.GreedyPlayer(seed=0)
    assert _uci(greedy, MATE_OR_ROOK) == "a1a8"
    assert _uci(greedy, "4k3/8/8/3q4/8/2N5/8/4K2p w - - 0 1") == "c3d5"  # the queen, not a pawn or a quiet move
    assert _uci(greedy, PROMOTION) == "a7a8q"
    assert opponents.material_gain(chess.Board("4k3/8/8/3Pp3/8/8/8/4K3 w - e6 0 1"),
                                   chess.Move.from_uci("d5e6")) == 1  # en passant takes a pawn


def test_greedy_without_captures_plays_seeded_random_legal_moves():
    board = chess.Board()
    first = [opponents.GreedyPlayer(seed=3).move(board) for _ in range(2)]
    assert first[0] == first[1] and first[0] in board.legal_moves
    player = opponents.GreedyPlayer(seed=0)
    assert len({player.move(board) for _ in range(40)}) > 5  # a random choice, not the first move in the list


def test_minimax_sees_the_recapture_that_greedy_walks_into():
    assert _uci(opponents.GreedyPlayer(), POISONED) == "b1b2"
    assert _uci(opponents.MinimaxPlayer(depth=1), POISONED) == "b1b2"
    assert _uci(opponents.MinimaxPlayer(depth=2), POISONED) != "b1b2"


def _mate_in_one_exists(board: chess.Board) -> bool:
    for move in list(board.legal_moves):
        board.push(move)
        mated = board.is_checkmate()
        board.pop()
        if mated:
            return True
    return False


def test_minimax_prefers_the_quicker_mate_and_avoids_being_mated():
    assert _uci(opponents.MinimaxPlayer(depth=3), MATE_OR_ROOK) == "a1a8"  # mate in 1 beats the rook
    # Black to move against Rb8#: five of its moves allow the mate; depth 2 never picks one.
    back_rank = "6k1/p4ppp/8/8/8/8/n4PPP/1R4K1 b - - 0 1"
    board = chess.Board(back_rank)
    allowing = sum(_mate_in_one_exists(_after(board, move)) for move in board.legal_moves)
    assert allowing >= 5
    for seed in range(4):
        reply = opponents.MinimaxPlayer(depth=2, seed=seed).move(board)
        assert not _mate_in_one_exists(_after(board, reply)), reply
        assert opponents.MinimaxPlayer(depth=1, seed=seed).move(board) in board.legal_moves


def _after(board: chess.Board, move: chess.Move) -> chess.Board:
    board = board.copy()
    board.push(move)
    return board


def test_minimax_breaks_ties_by_seed():
    board = chess.Board()
    assert opponents.MinimaxPlayer(2, seed=5).move(board) == opponents.MinimaxPlayer(2, seed=5).move(board)
    assert len({opponents.MinimaxPlayer(2, seed=seed).move(board) for seed in range(8)}) > 2


@pytest.mark.parametrize("spec, description", [("greedy", "greedy"), ("greedy,seed=4", "greedy"),
                                               ("minimax", "minimax(depth=2)"),
                                               ("minimax,depth=3,seed=1", "minimax(depth=3)")])
def test_ladder_specs(spec, description):
    assert arena.describe(arena.parse_player(spec)) == description


@pytest.mark.parametrize("spec, fragment", [("minimax,depth=0", "depth must be >= 1"),
                                            ("greedy,depth=2", r"unknown option\(s\) depth")])
def test_bad_ladder_specs(spec, fragment):
    with pytest.raises(arena.ArenaError, match=fragment):
        arena.parse_player(spec)


def test_tactics_script_counts_pieces_left_en_prise_and_free_pieces_taken(tmp_path):
    spec = importlib.util.spec_from_file_location("tactics", "scripts/tactics.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    games = [("net", "greedy", "1. e4 d6 2. Qg4 Bxg4 *"),  # white leaves its queen to the c8 bishop; black takes it
             ("greedy", "net", "1. e4 e5 2. Nf3 Nc6 3. Bb5 a6 4. Bxc6 dxc6 *")]  # a fair trade is not en prise
    text = "".join(f'[White "{white}"]\n[Black "{black}"]\n[Result "*"]\n\n{moves}\n\n' for white, black, moves in games)
    (tmp_path / "games.pgn").write_text(text)
    assert script.tactics(str(tmp_path / "games.pgn")) == {
        "net": {"moves": 6, "en_prise": 1, "offered": 1, "taken": 1},
        "greedy": {"moves": 6, "en_prise": 0, "offered": 1, "taken": 1}}
    assert script.tactics(str(tmp_path / "games.pgn"), plies=2) == {
        "net": {"moves": 2, "en_prise": 0, "offered": 0, "taken": 0},
        "greedy": {"moves": 2, "en_prise": 0, "offered": 0, "taken": 0}}
    assert script.main([str(tmp_path), "--json", str(tmp_path / "table.json")]) == 0
    assert script.main([str(tmp_path / "missing")]) == 2
