"""`python -m chessbrain_jax.arena PLAYER_A PLAYER_B --games N`: a match with Elo, games.pgn and result.json.

Player specs and match rules are `chessbrain_jax.play.arena`'s; this module only reads flags and writes the result.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from typing import Any, Sequence

from chessbrain_jax.config import ConfigError, OneLineParser
from chessbrain_jax.play.arena import (
    ArenaError,
    describe,
    parse_player,
    play_match,
    read_openings,
    summarise,
    write_pgn,
)
from chessbrain_jax.storage import compile_cache
from chessbrain_jax.storage.metrics import write_json_atomically

PROG = "python -m chessbrain_jax.arena"


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog=PROG, description="Play a match between two players and measure Elo.")
    parser.add_argument("player_a", help="checkpoint folder, job:<id>, untrained, random or stockfish[,options]")
    parser.add_argument("player_b", help="the opponent, same forms")
    parser.add_argument("--games", type=int, default=20, help="games to play, colours alternating (default 20)")
    parser.add_argument("--simulations", type=int, default=None,
                        help="search simulations for network players (default: each checkpoint's own)")
    parser.add_argument("--search", choices=("gumbel", "puct"), default=None, help="search for network players")
    parser.add_argument("--openings", default=None, help="FEN or EPD file of opening positions, used in order")
    parser.add_argument("--opening-plies", type=int, default=2,
                        help="random plies played from each opening before the players take over (default 2; both "
                             "games of a pair share them)")
    parser.add_argument("--max-plies", type=int, default=512, help="adjudicate a draw after this many plies")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint-dir", default="./checkpoints", help="where job:<id> players are looked up")
    parser.add_argument("--out", default=None, help="folder for games.pgn and result.json "
                                                    "(default ./arena/<timestamp>)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    compile_cache.add_argument(parser)
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def run(args: argparse.Namespace) -> dict[str, Any]:
    for name, minimum in (("games", 1), ("opening_plies", 0), ("max_plies", 1)):
        if getattr(args, name) < minimum:
            raise ArenaError(f"--{name.replace('_', '-')} must be >= {minimum}, got {getattr(args, name)}")
    if args.simulations is not None and args.simulations < 0:
        raise ArenaError(f"--simulations must be >= 0, got {args.simulations}")
    openings = read_openings(args.openings) if args.openings else None
    out = args.out or os.path.join("arena", time.strftime("%Y%m%d-%H%M%S"))
    compile_cache.enable(getattr(args, "compile_cache", "off"), note=lambda text: print(f"{PROG}: {text}",
                                                                                      file=sys.stderr))
    players = []
    try:
        for spec in (args.player_a, args.player_b):
            players.append(parse_player(spec, args.checkpoint_dir, args.simulations, args.search))
        a, b = players
        started = time.monotonic()
        games = play_match(a, b, args.games, openings, args.opening_plies, args.max_plies, args.seed)
        seconds = time.monotonic() - started
    finally:
        for made in players:
            if hasattr(made, "close"):
                made.close()
    summary = summarise(games)
    pgn_path = os.path.join(out, "games.pgn")
    write_pgn(pgn_path, games, f"{describe(a)} vs {describe(b)}")
    result = {"player_a": describe(a), "player_b": describe(b), "spec_a": args.player_a, "spec_b": args.player_b,
              **summary, "seconds": seconds, "pgn": pgn_path, "seed": args.seed,
              "openings": args.openings, "opening_plies": args.opening_plies}
    write_json_atomically(os.path.join(out, "result.json"), result)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        result = run(args)
    except (ArenaError, ConfigError) as error:
        if debug:
            traceback.print_exc()
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        if debug:
            traceback.print_exc()
        print(f"{PROG}: error: {error.strerror or error}{f': {error.filename}' if error.filename else ''}",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['player_a']} vs {result['player_b']}: +{result['wins']} ={result['draws']} "
              f"-{result['losses']} over {result['games']} games, score {result['score']:.3f}, "
              f"Elo {result['elo_text']} (95% CI); as white {result['as_white']['wins']}/"
              f"{result['as_white']['draws']}/{result['as_white']['losses']}, as black "
              f"{result['as_black']['wins']}/{result['as_black']['draws']}/{result['as_black']['losses']}; "
              f"{result['mean_plies']:.0f} plies per game; {result['seconds']:.0f}s")
        print(f"games: {result['pgn']}; result: {os.path.join(os.path.dirname(result['pgn']), 'result.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
