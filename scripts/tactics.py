"""One-move tactics of each player in an arena match: pieces left en prise, and free material taken.

    python -m chessbrain_jax.arena CHECKPOINT minimax,depth=2 --games 100 --out arena_mm2
    python scripts/tactics.py arena_mm2 [--plies 120] [--json out.json]

Reads the match's `games.pgn` and, for each player's moves in the first `--plies` plies of every game, counts
- **en prise**: after the move the opponent can capture a knight or more (3+ pawns) that is undefended or worth more
  than the capturing piece, for more than the move itself just captured (a fair trade is not counted);
- **offered / taken**: before the move such a capture was available to the player, and whether it took one.
Static one-capture tests (pins, checks and exchanges deeper than one recapture are ignored): a cheap proxy for the
two-ply tactics a material search exploits. Session 19 measured it against `minimax,depth=2`: a 30-minute network
leaves a piece en prise after 6.6-8.3% of its moves and takes 74-85% of the free pieces it is offered.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import chess
import chess.pgn

from chessbrain_jax.play.opponents import PIECE_VALUES

MIN_GAIN = 3  # a knight or bishop: a pawn left hanging is often a gambit or not worth the tempo


def best_free_capture(board: chess.Board) -> int:
    """The most material the side to move wins with one capture of a piece worth MIN_GAIN+ that is undefended or
    worth more than its capturer (0 if none)."""
    best = 0
    for move in board.generate_legal_captures():
        victim = board.piece_at(move.to_square)
        if victim is None:  # en passant: a pawn, below MIN_GAIN
            continue
        gain = PIECE_VALUES[victim.piece_type]
        attacker = PIECE_VALUES[board.piece_at(move.from_square).piece_type] or 100  # a king "captures" last
        defended = board.is_attacked_by(not board.turn, move.to_square)
        if gain >= MIN_GAIN and (not defended or gain > attacker):
            best = max(best, gain)
    return best


def captured_value(board: chess.Board, move: chess.Move) -> int:
    """The material `move` captures on `board` (before it is played)."""
    victim = board.piece_at(move.to_square)
    return PIECE_VALUES[victim.piece_type] if victim is not None else int(board.is_en_passant(move))


def tactics(pgn_path: str, plies: int = 120) -> dict[str, dict]:
    """{player: {"moves", "en_prise", "offered", "taken"}} over each player's moves in the first `plies` plies."""
    table: dict[str, dict] = {}
    with open(pgn_path, encoding="utf-8") as stream:
        while (game := chess.pgn.read_game(stream)) is not None:
            board = game.board()
            for move in list(game.mainline_moves())[:plies]:
                row = table.setdefault(game.headers["White" if board.turn == chess.WHITE else "Black"],
                                       {"moves": 0, "en_prise": 0, "offered": 0, "taken": 0})
                offered, took = best_free_capture(board), captured_value(board, move)
                row["moves"] += 1
                row["offered"] += offered > 0
                row["taken"] += offered > 0 and took >= offered
                board.push(move)
                if not board.is_game_over() and best_free_capture(board) > took:
                    row["en_prise"] += 1
    return table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("match", help="The arena's --out folder (holding games.pgn) or a PGN file.")
    parser.add_argument("--plies", type=int, default=120, help="Count moves in each game's first N plies.")
    parser.add_argument("--json", help="Also write the table here.")
    args = parser.parse_args(argv)
    path = os.path.join(args.match, "games.pgn") if os.path.isdir(args.match) else args.match
    try:
        table = tactics(path, args.plies)
        if args.json:
            with open(args.json, "w", encoding="utf-8") as handle:
                json.dump(table, handle, indent=2)
    except (OSError, ValueError, KeyError) as error:
        print(f"tactics: error: cannot read {path}: {error}", file=sys.stderr)
        return 2
    for player, row in table.items():
        moves, offered = row["moves"], row["offered"]
        print(f"{player}: {moves} moves; left a piece en prise after {row['en_prise']} "
              f"({row['en_prise'] / max(moves, 1):.1%}); took {row['taken']} of {offered} free pieces offered "
              f"({row['taken'] / max(offered, 1):.0%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
