"""Makes the probe set the learning diagnostics read: game-like positions labelled by Stockfish.

    python scripts/make_probes.py [--positions 400] [--depth 12] [--out chessbrain_jax/play/probes.jsonl]

Positions come from games between Stockfish at random skill levels (0-8) after 2-8 random opening plies, one
position sampled every few plies, so they look like the games a learning network plays and meets: openings,
middlegames with material imbalances, endgames. Each is labelled by Stockfish at `--depth` with its best move and its
win/draw/loss estimate for the side to move (`UCI_ShowWDL`); positions with one legal move, or already decided
(mate found), are kept only as a small share so the set is not dominated by forced moves. One JSON object a line:
{"fen", "best", "wdl": [w, d, l] per mille, "cp" (null for mates), "mate" (null or plies), "ply", "history_fen",
"moves"}: the last two are the position `HISTORY_PLIES` plies earlier (or the game's start) and the UCI moves from it
to "fen", so the network sees the probe with the history planes it sees in a game (with empty history planes, a
network trained by self-play values positions very differently: docs/results.md).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys

import chess
import chess.engine

HISTORY_PLIES = 7  # the network's observation holds the position and the 7 before it


def play_game(engine: chess.engine.SimpleEngine, rng: random.Random, every: int) -> list[chess.Board]:
    """One game between two random Stockfish skill levels; returns a sample of its positions."""
    board = chess.Board()
    for _ in range(rng.randint(2, 8)):
        if board.is_game_over():
            return []
        board.push(rng.choice(list(board.legal_moves)))
    skills = (rng.randint(0, 8), rng.randint(0, 8))
    sampled, offset = [], rng.randrange(every)
    while not board.is_game_over(claim_draw=True) and board.ply() < 300:
        if (board.ply() + offset) % every == 0:
            sampled.append(board.copy(stack=HISTORY_PLIES))
        engine.configure({"Skill Level": skills[board.ply() % 2]})
        board.push(engine.play(board, chess.engine.Limit(depth=6)).move)
    return sampled


def label(engine: chess.engine.SimpleEngine, board: chess.Board, depth: int) -> dict:
    """Stockfish's best move and its WDL / score for the side to move at `depth` (full strength)."""
    engine.configure({"Skill Level": 20})
    info = engine.analyse(board, chess.engine.Limit(depth=depth))
    score = info["score"].relative
    wdl = info["wdl"].relative
    return {"fen": board.fen(), "best": info["pv"][0].uci(), "wdl": [wdl.wins, wdl.draws, wdl.losses],
            "cp": score.score(), "mate": score.mate(), "ply": board.ply(),
            "history_fen": board.root().fen(), "moves": [move.uci() for move in board.move_stack]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--positions", type=int, default=400)
    parser.add_argument("--depth", type=int, default=12)
    parser.add_argument("--every", type=int, default=9, help="sample one position every N plies of a game")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stockfish", default=shutil.which("stockfish") or "/usr/games/stockfish")
    parser.add_argument("--out", default=os.path.join("chessbrain_jax", "play", "probes.jsonl"))
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    engine = chess.engine.SimpleEngine.popen_uci(args.stockfish)
    engine.configure({"Threads": 1, "Hash": 32, "UCI_ShowWDL": True})
    seen, probes, forced = set(), [], 0
    try:
        while len(probes) < args.positions:
            for board in play_game(engine, rng, args.every):
                key = " ".join(board.fen().split()[:4])
                if key in seen or len(probes) >= args.positions:
                    continue
                seen.add(key)
                probe = label(engine, board, args.depth)
                trivial = board.legal_moves.count() == 1 or probe["mate"] is not None
                if trivial and forced >= args.positions // 10:
                    continue
                forced += trivial
                probes.append(probe)
            print(f"{len(probes)} positions", file=sys.stderr, flush=True)
    finally:
        engine.quit()
    with open(args.out, "w", encoding="utf-8") as stream:
        stream.writelines(json.dumps(probe) + "\n" for probe in probes)
    print(f"wrote {len(probes)} positions to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
