"""How much of the engine's tree would survive to its next move: the upper bound on what tree reuse can buy.

    python scripts/tree_reuse.py CHECKPOINT [--nodes 256] [--positions 40] [--json OUT]

For each probe position (game-like, with history; `play/diagnostics.py`) the engine's growing search runs `--nodes`
simulations and picks its move a; the opponent, the same network with the same search from the position after a,
answers b. If the engine kept its tree, the node under a-then-b would be its next root: its visit count over
`--nodes` is the share of the next search that reuse saves. Also reported: the share under a alone (what pondering
on the opponent's time could keep before the reply is known) and how often b was the engine's own expected reply.
"""

from __future__ import annotations

import argparse
import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
from report import report


def _child(tree, node: int, action: int) -> int:
    """The node under `node` reached by pgx `action` (-1 if the tree never expanded it)."""
    match = np.flatnonzero(np.asarray(tree.embeddings.actions[0, node]) == action)
    return int(tree.children_index[0, node, match[0]]) if match.size else -1


def reuse_shares(checkpoint_path: str, nodes: int, positions: int) -> dict:
    """Means over `positions` probe positions of the reusable shares (see the module docstring)."""
    import chess

    from chessbrain_jax.core import growing, model
    from chessbrain_jax.play import diagnostics, notation
    from chessbrain_jax.storage import checkpoint

    loaded = checkpoint.load_network(checkpoint_path)
    search = growing.make_growing_search(loaded.config, model.make_apply(loaded.network), nodes + 1)
    start, grow, summary = jax.jit(search.start), jax.jit(search.grow), jax.jit(search.summary)

    def think(board: chess.Board, key):
        state = jax.tree.map(lambda leaf: leaf[0], notation.stack_states([notation.board_to_state(board)]))
        grown = grow(loaded.params, start(loaded.params, key, state, nodes), nodes)
        return grown.tree, int(summary(grown).best_action)

    with open(diagnostics.PROBES, encoding="utf-8") as stream:
        probes = [json.loads(line) for line in stream][:positions]
    after_move, after_reply, expected = [], [], []
    for index, probe in enumerate(probes):
        board = diagnostics.probe_board(probe)
        tree, action = think(board, jax.random.PRNGKey(index))
        child = _child(tree, 0, action)
        board.push(notation.action_to_move(board, action))
        if board.is_game_over():
            continue
        _, reply = think(board, jax.random.PRNGKey(10_000 + index))
        grandchild = _child(tree, child, reply) if child >= 0 else -1
        visits = np.asarray(tree.node_visits[0])
        after_move.append(visits[child] / nodes if child >= 0 else 0.0)
        after_reply.append(visits[grandchild] / nodes if grandchild >= 0 else 0.0)
        children = np.asarray(tree.children_visits[0, child]) if child >= 0 else np.zeros(1)
        expected.append(grandchild >= 0 and children.max() > 0
                        and int(tree.children_index[0, child, int(np.argmax(children))]) == grandchild)
    return {"checkpoint": checkpoint_path, "nodes": nodes, "positions": len(after_reply),
            "share_under_move": float(np.mean(after_move)), "share_under_move_and_reply": float(np.mean(after_reply)),
            "share_under_move_and_reply_p90": float(np.quantile(after_reply, 0.9)),
            "reply_was_most_visited": float(np.mean(expected)), "backend": jnp.zeros(()).device.platform}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--nodes", type=int, default=256)
    parser.add_argument("--positions", type=int, default=40)
    parser.add_argument("--json", help="also write the result to this JSON file")
    args = parser.parse_args(argv)
    return report("tree_reuse", lambda: reuse_shares(args.checkpoint, args.nodes, args.positions), args.json)


if __name__ == "__main__":
    sys.exit(main())
