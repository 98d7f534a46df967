"""Won endgames as self-play start positions (`--selfplay-starts`): one side 5 or more pawns ahead.

    python scripts/endgame_starts.py --out configs/starts/endgames.fen [--positions 4000] [--seed 0]
        [--material "KQ/K,KR/K,..."]

A network trained only from the initial position rarely reaches such endings and draws them by the fifty-move rule
when it does (docs/results.md). Each position takes a material signature (stronger side / weaker side, e.g. KRPP/KP)
drawn uniformly from `--material`, a random stronger colour and side to move, and random squares: pawns on their own
ranks 2-6, no en passant, no castling. Positions python-chess finds illegal (the side not to move in check,
adjacent kings), already over (mate, stalemate), or where the side to move can capture the stronger side's biggest
piece at once are drawn again. One FEN per line, after a `#` header naming the command.
"""

from __future__ import annotations

import argparse
import random
import sys

import chess

from chessbrain_jax.play.opponents import PIECE_VALUES

DEFAULT_MATERIAL = ("KQ/K", "KR/K", "KQP/K", "KRP/K", "KRR/K", "KQR/K", "KQ/KN", "KQ/KB", "KRB/K", "KRN/K",
                    "KQPP/KPP", "KRPP/KP", "KRPPP/KPP", "KQPPP/KPPP", "KRBP/KBP")
VALUES = {symbol: PIECE_VALUES[chess.Piece.from_symbol(symbol).piece_type] for symbol in "PNBRQK"}
MIN_LEAD = 5


def parse_signature(text: str) -> tuple[str, str]:
    """("KRPP", "KP") from "KRPP/KP"; ValueError unless each side has one king, known pieces and the stronger
    side leads by `MIN_LEAD` pawns or more."""
    parts = text.strip().upper().split("/")
    if len(parts) != 2 or not all(parts) or any(set(side) - set(VALUES) or side.count("K") != 1 for side in parts):
        raise ValueError(f"material {text!r} must be two sides like KRP/KP, each with one king (K Q R B N P)")
    lead = sum(VALUES[p] for p in parts[0]) - sum(VALUES[p] for p in parts[1])
    if lead < MIN_LEAD:
        raise ValueError(f"material {text!r} leads by {lead} pawns; a start position needs {MIN_LEAD} or more")
    return parts[0], parts[1]


def _relative_rank(square: chess.Square, colour: chess.Color) -> int:
    """1-8 from `colour`'s side."""
    rank = chess.square_rank(square)
    return rank + 1 if colour == chess.WHITE else 8 - rank


def place(rng: random.Random, strong: str, weak: str, strong_colour: chess.Color) -> chess.Board:
    """Both sides' pieces on random distinct squares (pawns on their ranks 2-6: two moves or more from promoting);
    the side to move is random."""
    board = chess.Board(None)
    free = list(chess.SQUARES)
    rng.shuffle(free)
    for pieces, colour in ((strong, strong_colour), (weak, not strong_colour)):
        for symbol in pieces:
            piece = chess.Piece.from_symbol(symbol if colour == chess.WHITE else symbol.lower())
            square = next(s for s in free if symbol != "P" or 2 <= _relative_rank(s, colour) <= 6)
            free.remove(square)
            board.set_piece_at(square, piece)
    board.turn = rng.random() < 0.5
    return board


def acceptable(board: chess.Board, strong_colour: chess.Color) -> bool:
    """Legal, not over, and the stronger side's biggest piece not capturable at once by the side to move."""
    if not board.is_valid() or board.is_game_over():
        return False
    if board.turn == strong_colour:
        return True
    pieces = board.piece_map(mask=board.occupied_co[strong_colour] & ~board.kings).items()
    biggest = max(pieces, key=lambda item: VALUES[item[1].symbol().upper()])[0]
    return not any(move.to_square == biggest for move in board.legal_moves)


def positions(count: int, seed: int, material=DEFAULT_MATERIAL) -> list[str]:
    """`count` FENs, signatures drawn uniformly from `material`; the same for the same seed."""
    rng = random.Random(seed)
    signatures = [parse_signature(text) for text in material]
    if not signatures:
        raise ValueError("--material names no signature")
    fens = []
    while len(fens) < count:
        strong, weak = rng.choice(signatures)
        colour = rng.random() < 0.5
        board = place(rng, strong, weak, colour)
        if acceptable(board, colour):
            fens.append(board.fen())
    return fens


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="FEN file to write (one position per line).")
    parser.add_argument("--positions", type=int, default=4000, help="How many positions (default 4000).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--material", default=",".join(DEFAULT_MATERIAL),
                        help="Comma-separated signatures, stronger/weaker side (default: %(default)s).")
    args = parser.parse_args(argv)
    try:
        if args.positions < 1:
            raise ValueError(f"--positions must be a positive integer, got {args.positions}")
        fens = positions(args.positions, args.seed, [text for text in args.material.split(",") if text.strip()])
        with open(args.out, "w", encoding="utf-8") as handle:
            handle.write(f"# python scripts/endgame_starts.py --positions {args.positions} --seed {args.seed} "
                         f"--material {args.material}\n" + "".join(fen + "\n" for fen in fens))
    except (ValueError, OSError) as error:
        print(f"endgame_starts: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {len(fens)} positions to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
