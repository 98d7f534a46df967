"""Nodes/s of one tree against the engine's old independent trees, at the same node budget, one position at a time.

    python scripts/tree_speed.py CHECKPOINT [--nodes 256 1024] [--chunk 16] [--repeats 2] [--json OUT]

For each budget N, on the UCI bench's eight positions (`play/uci/bench.py`), a network player searches one tree of
N simulations (what the engine does now) and N / chunk independent trees of `chunk` simulations whose search
policies are summed (what it did before, `trees=` in the arena). Both are the arena's batched, jitted player with a
batch of one position, compiled before the clock starts, so the figures compare the searches, not the engine's
host loop (`python -m chessbrain_jax.uci --bench N` measures that). The trees are one batched call: their leaves
are evaluated together, which is what made the old engine's nodes/s higher.
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
from report import report


def _seconds(player, states, repeats: int) -> float:
    """Best of `repeats` total seconds to choose a move in every one of `states` (each a batch of one)."""
    key = jax.random.PRNGKey(0)
    for state in states:  # compile, and the first call's allocations
        jax.block_until_ready(player.actions(key, state))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for state in states:
            jax.block_until_ready(player.actions(key, state))
        best = min(best, time.perf_counter() - start)
    return best


def measure(checkpoint_path: str, budgets: list[int], chunk: int, repeats: int) -> dict:
    import chess

    from chessbrain_jax.play import notation, player
    from chessbrain_jax.play.uci.bench import POSITIONS

    states = [notation.stack_states([notation.board_to_state(chess.Board(fen))]) for fen in POSITIONS]
    rows = []
    for nodes in budgets:
        one = player.load_player(checkpoint_path, simulations=nodes)
        many = player.load_player(checkpoint_path, simulations=chunk, trees=max(1, nodes // chunk))
        total = nodes * len(states)
        one_s, many_s = _seconds(one, states, repeats), _seconds(many, states, repeats)
        rows.append({"nodes": nodes, "one_tree_nps": total / one_s, "trees": many.trees, "chunk": chunk,
                     "trees_nps": many.trees * chunk * len(states) / many_s})
        print(f"{nodes:6d} nodes: one tree {rows[-1]['one_tree_nps']:8.0f} nodes/s, {many.trees} trees of {chunk}: "
              f"{rows[-1]['trees_nps']:8.0f} nodes/s", flush=True)
    return {"checkpoint": checkpoint_path, "positions": len(states), "rows": rows,
            "backend": jax.devices()[0].platform, "devices": jax.device_count()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--nodes", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--chunk", type=int, default=16, help="simulations of each old-style tree [16]")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", help="also write the result to this JSON file")
    args = parser.parse_args(argv)
    if min(args.nodes) < args.chunk or args.chunk < 1:
        print("tree_speed: --nodes must each be at least --chunk, and --chunk at least 1", file=sys.stderr)
        return 2
    return report("tree_speed", lambda: measure(args.checkpoint, args.nodes, args.chunk, args.repeats), args.json)


if __name__ == "__main__":
    sys.exit(main())
