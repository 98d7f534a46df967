"""Host-side opponents between the random mover and Stockfish: the rungs of the arena's ladder.

`greedy` looks one ply ahead: it mates if it can, else makes the capture or promotion that wins the most material,
else a random move. `minimax,depth=N` searches N plies with alpha-beta on material, mate-aware (a quicker mate is
worth more), and picks at random among the moves of equal value. Neither has a published rating: each is defined
by its algorithm, so a score against it means the same thing in every run (docs/evaluation.md places them between
the random mover and Stockfish at skill 0). Both are deterministic given their `seed`.
"""

from __future__ import annotations

import random

import chess

PIECE_VALUES = {chess.PAWN: 1, chess.KNIGHT: 3, chess.BISHOP: 3, chess.ROOK: 5, chess.QUEEN: 9, chess.KING: 0}
MATE = 10_000  # a mate in k plies scores MATE - k: above any material balance


def material(board: chess.Board) -> int:
    """The side to move's material minus the opponent's, in pawns (1, 3, 3, 5, 9)."""
    mover = board.turn
    return sum(value * (chess.popcount(board.pieces_mask(piece, mover))
                        - chess.popcount(board.pieces_mask(piece, not mover)))
               for piece, value in PIECE_VALUES.items() if value)


def material_gain(board: chess.Board, move: chess.Move) -> int:
    """Material the mover wins by `move` itself: the captured piece (a pawn for en passant) plus a promotion's gain."""
    gain = 0
    if board.is_en_passant(move):
        gain = PIECE_VALUES[chess.PAWN]
    elif (captured := board.piece_type_at(move.to_square)) is not None:
        gain = PIECE_VALUES[captured]
    if move.promotion:
        gain += PIECE_VALUES[move.promotion] - PIECE_VALUES[chess.PAWN]
    return gain


class GreedyPlayer:
    """One ply: a mate, else the move winning the most material (capture or promotion), else random."""

    is_host = True

    def __init__(self, seed: int = 0):
        self.rng = random.Random(seed)
        self.name = self.description = "greedy"

    def move(self, board: chess.Board) -> chess.Move:
        moves = list(board.legal_moves)
        mates = [move for move in moves if _mates(board, move)]
        if mates:
            return self.rng.choice(mates)
        gains = [material_gain(board, move) for move in moves]
        best = max(gains)
        return self.rng.choice([move for move, gain in zip(moves, gains) if gain == best])


def _mates(board: chess.Board, move: chess.Move) -> bool:
    board.push(move)
    try:
        return board.is_checkmate()
    finally:
        board.pop()


class MinimaxPlayer:
    """`depth`-ply alpha-beta on material from the mover's view; checkmate scores `-(MATE - ply)`, stalemate and
    insufficient material 0; random among the root moves of equal value."""

    is_host = True

    def __init__(self, depth: int = 2, seed: int = 0):
        self.depth, self.rng = depth, random.Random(seed)
        self.name = self.description = f"minimax(depth={depth})"

    def move(self, board: chess.Board) -> chess.Move:
        board = board.copy(stack=False)
        best, tied = -2 * MATE, []
        for move in _ordered(board):
            board.push(move)
            value = -self._search(board, self.depth - 1, 1, -2 * MATE, -(best - 1))
            board.pop()
            if value > best:
                best, tied = value, [move]
            elif value == best:
                tied.append(move)
        return self.rng.choice(tied)

    def _search(self, board: chess.Board, depth: int, ply: int, alpha: int, beta: int) -> int:
        """Negamax value of `board` for its mover, exact inside (alpha, beta), fail-hard outside."""
        if board.is_checkmate():
            return -(MATE - ply)
        if board.is_stalemate() or board.is_insufficient_material():
            return 0
        if depth == 0:
            return material(board)
        for move in _ordered(board):
            board.push(move)
            value = -self._search(board, depth - 1, ply + 1, -beta, -alpha)
            board.pop()
            if value >= beta:
                return beta
            alpha = max(alpha, value)
        return alpha


def _ordered(board: chess.Board) -> list[chess.Move]:
    """Legal moves, the biggest material wins first (so alpha-beta cuts early); the order does not change values."""
    return sorted(board.legal_moves, key=lambda move: -material_gain(board, move))
