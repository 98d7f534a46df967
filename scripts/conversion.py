"""Endgame conversion from an arena match played from won endgames: each player's results as the stronger side.

    python scripts/endgame_starts.py --out endgames_test.fen --positions 50 --seed 1
    python -m chessbrain_jax.arena CHECKPOINT greedy --openings endgames_test.fen --opening-plies 0 --games 100 \\
        --out arena_eg
    python scripts/conversion.py arena_eg [--json out.json]

Reads the match's `games.pgn`; the stronger side of a game is the one ahead in material (pawn 1, knight and bishop
3, rook 5, queen 9) in its start position. Paired openings with colours swapped make each player the stronger side
in half the games. Prints, per player, the games won, drawn and lost as the stronger side and the rules that ended
the draws (fifty-move, insufficient material after a blunder, repetition, stalemate).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys

import chess
import chess.pgn

from chessbrain_jax.play.opponents import material


def white_material(board: chess.Board) -> int:
    """White's material minus black's, in pawns."""
    return material(board) if board.turn == chess.WHITE else -material(board)


def conversion(pgn_path: str) -> dict[str, dict]:
    """{player: {"games", "won", "drawn", "lost", "draws_by": {rule: n}}} over the games where that player was the
    stronger side (games starting level are skipped)."""
    table: dict[str, dict] = {}
    with open(pgn_path, encoding="utf-8") as stream:
        while (game := chess.pgn.read_game(stream)) is not None:
            lead = white_material(game.board())
            if lead == 0:
                continue
            strong_white = lead > 0
            player = game.headers["White" if strong_white else "Black"]
            row = table.setdefault(player, {"games": 0, "won": 0, "drawn": 0, "lost": 0,
                                            "draws_by": collections.Counter()})
            result = game.headers["Result"]
            outcome = ("won" if result == ("1-0" if strong_white else "0-1") else
                       "lost" if result == ("0-1" if strong_white else "1-0") else "drawn")
            row["games"] += 1
            row[outcome] += 1
            if outcome == "drawn":
                row["draws_by"][game.headers.get("TerminationDetail", "unknown")] += 1
    for row in table.values():
        row["draws_by"] = dict(row["draws_by"].most_common())
    return table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("match", help="The arena's --out folder (holding games.pgn) or a PGN file.")
    parser.add_argument("--json", help="Also write the table here.")
    args = parser.parse_args(argv)
    path = os.path.join(args.match, "games.pgn") if os.path.isdir(args.match) else args.match
    try:
        table = conversion(path)
        if args.json:
            with open(args.json, "w", encoding="utf-8") as handle:
                json.dump(table, handle, indent=2)
    except (OSError, ValueError, KeyError) as error:
        print(f"conversion: error: cannot read {path}: {error}", file=sys.stderr)
        return 2
    for player, row in table.items():
        draws = ", ".join(f"{rule} {count}" for rule, count in row["draws_by"].items())
        print(f"{player}: as the stronger side {row['won']}/{row['drawn']}/{row['lost']} of {row['games']} "
              f"(won/drawn/lost){'; draws: ' + draws if draws else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
