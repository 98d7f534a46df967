"""The computed attack planes agree with python-chess's attack maps, from both sides' view, and feed the network."""

from __future__ import annotations

import random

import chess
import jax
import jax.numpy as jnp
import numpy as np

from chessbrain_jax.core import features, model
from chessbrain_jax.play import notation

PIECE_TYPES = (chess.PAWN, chess.KNIGHT, chess.BISHOP, chess.ROOK, chess.QUEEN, chess.KING)


def _random_positions(count: int, seed: int = 3) -> list[chess.Board]:
    """Positions of random games, 4-80 plies in, both colours to move, with promotions, castling and captures."""
    rng, boards = random.Random(seed), []
    while len(boards) < count:
        board, plies = chess.Board(), rng.randrange(4, 80)
        for _ in range(plies):
            moves = list(board.legal_moves)
            if not moves:
                break
            board.push(rng.choice(moves))
        if not board.is_game_over():
            boards.append(board)
    return boards


def _expected(board: chess.Board) -> np.ndarray:
    """`[8, 8, 12]` from python-chess: the mover's then the opponent's attacks by piece type, in pgx's cells (the
    mover at the bottom: rank 7 - row for white to move, rank = row for black)."""
    planes = np.zeros((8, 8, 12), np.float32)
    for side, colour in enumerate((board.turn, not board.turn)):
        for kind, piece_type in enumerate(PIECE_TYPES):
            attacked = chess.SquareSet()
            for square in board.pieces(piece_type, colour):
                attacked |= board.attacks(square)
            for square in attacked:
                rank = chess.square_rank(square)
                row = 7 - rank if board.turn == chess.WHITE else rank
                planes[row, chess.square_file(square), 6 * side + kind] = 1.0
    return planes


def test_attack_planes_match_python_chess_for_both_sides_to_move():
    boards = _random_positions(48)
    assert {board.turn for board in boards} == {chess.WHITE, chess.BLACK}
    observations = jnp.stack([notation.board_to_state(board).observation for board in boards])
    planes = np.asarray(jax.jit(features.attack_planes)(observations))
    assert planes.shape == (48, 8, 8, 12) and planes.any()
    for board, got in zip(boards, planes):
        np.testing.assert_array_equal(got, _expected(board), err_msg=board.fen())


def test_a_hanging_queen_is_attacked_and_undefended():
    """1. e4 d6 2. Qg4??: black to move, its c8 bishop attacks the queen on g4 and no white piece defends it."""
    board = chess.Board("rnbqkbnr/ppp1pppp/3p4/8/4P1Q1/8/PPPP1PPP/RNB1KBNR b KQkq - 1 2")
    planes = np.asarray(features.attack_planes(notation.board_to_state(board).observation[None]))[0]
    row, col = chess.square_rank(chess.G4), chess.square_file(chess.G4)  # black to move: rank = row
    assert planes[row, col, 2] == 1.0  # the mover's (black's) bishop attacks g4
    assert not planes[row, col, 6:].any()  # nothing of white's defends it


def test_the_network_reads_the_attack_planes():
    """The stem takes 12 more planes after pgx's 21 and they reach the output: zeroing their stem weights changes
    the logits and value of a position; the hand-counted FLOPs include them."""
    network = model.ChessNet(channels=8, blocks=1, history_steps=1, attack_planes=True)
    params = model.init_params(network, jax.random.PRNGKey(0))
    assert params["stem"]["kernel"].shape == (3, 3, 14 + 7 + 12, 8)
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
    params = jax.tree.unflatten(treedef, [x + 0.3 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])
    blind = {**params, "stem": {**params["stem"], "kernel": params["stem"]["kernel"].at[:, :, 21:, :].set(0.0)}}
    apply = jax.jit(lambda p, o: network.apply({"params": p}, o))
    board = chess.Board("r1bqkbnr/pppp1ppp/2n5/4p3/4P3/5N2/PPPP1PPP/RNBQKB1R w KQkq - 2 3")
    observation = notation.board_to_state(board).observation[None]
    (logits, value), (blind_logits, blind_value) = apply(params, observation), apply(blind, observation)
    assert not np.allclose(np.asarray(logits), np.asarray(blind_logits))
    assert not np.allclose(np.asarray(value), np.asarray(blind_value))
    plain = model.ChessNet(channels=8, blocks=1, history_steps=1)
    assert model.init_params(plain, jax.random.PRNGKey(0))["stem"]["kernel"].shape[2] == 14 + 7
    assert model.matmul_flops_per_position(32, 4, history_steps=1, attack_planes=True) == \
        model.matmul_flops_per_position(32, 4, history_steps=1) + 2 * 484 * 12 * 32
