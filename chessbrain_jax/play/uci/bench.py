"""`python -m chessbrain_jax.uci --bench`: the engine's speed on a fixed set of positions, as chess engines report
it (`go nodes N` on each, then nodes, time and nodes/s in all). It drives the engine through its own protocol, so
the figure is what a GUI sees: the trees' compiles and pgx's FEN parse excluded (done first), the host loop and its
`info` reporting included."""

from __future__ import annotations

import threading
import time
from typing import NamedTuple

from chessbrain_jax.play.uci.protocol import Output, UciEngine
from chessbrain_jax.play.uci.tree import ladder

# Opening, middlegames with both castlings and an en-passant capture, promotions, endgames, a mate in one.
POSITIONS = (
    "rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP/RNBQKBNR w KQkq - 0 1",
    "r1bqkbnr/pppp1ppp/2n5/4p3/2B1P3/5N2/PPPP1PPP/RNBQK2R b KQkq - 3 3",
    "r3k2r/p1ppqpb1/bn2pnp1/3PN3/1p2P3/2N2Q1p/PPPBBPPP/R3K2R w KQkq - 0 1",
    "rnbqkbnr/ppp1p1pp/8/3pPp2/8/8/PPPP1PPP/RNBQKBNR w KQkq f6 0 3",
    "n1n5/PPPk4/8/8/8/8/4Kppp/5N1N b - - 0 1",
    "8/2p5/3p4/KP5r/1R3p1k/8/4P1P1/8 w - - 0 1",
    "6k1/5ppp/8/8/8/8/5PPP/3R2K1 w - - 0 1",
    "4r1k1/1pq2ppp/p1p5/2P1n3/1P2Q3/P4N2/5PPP/3R2K1 w - - 0 1",
)


class BenchRow(NamedTuple):
    fen: str
    nodes: int
    seconds: float
    bestmove: str

    @property
    def nps(self) -> float:
        return self.nodes / max(self.seconds, 1e-9)


class _Lines:
    """A stream for `Output` that keeps the engine's lines and signals each `bestmove`."""

    def __init__(self):
        self.lines: list[str] = []
        self.answered = threading.Event()

    def write(self, text: str) -> None:
        for line in text.splitlines():
            self.lines.append(line)
            if line.startswith("bestmove"):
                self.answered.set()

    def flush(self) -> None:
        pass


def _nodes(lines: list[str]) -> int:
    """The node count of the last `info ... nodes N` line."""
    for line in reversed(lines):
        tokens = line.split()
        if tokens[:1] == ["info"] and "nodes" in tokens:
            return int(tokens[tokens.index("nodes") + 1])
    return 0


def run_bench(player, nodes: int, hash_mb: int | None = None, positions=POSITIONS) -> list[BenchRow]:
    """`go nodes <nodes>` on each FEN of `positions` with a fresh engine of `player`; the tree is compiled first."""
    stream = _Lines()
    engine = UciEngine(player, Output(stream), hash_mb=hash_mb)
    for tree in ladder(engine.tree_settings(engine.options)):
        engine.trees.compile(tree)
    _search(engine, stream, positions[0], nodes)  # the first calls of the compiled programs are setup too
    rows = [_search(engine, stream, fen, nodes) for fen in positions]
    engine.handle("quit")
    return rows


def _search(engine: UciEngine, stream: _Lines, fen: str, nodes: int) -> BenchRow:
    stream.lines.clear()
    stream.answered.clear()
    engine.handle(f"position fen {fen}")
    engine.positions.state(engine.board)  # pgx's FEN parse is setup, not search
    started = time.monotonic()
    engine.handle(f"go nodes {nodes}")
    stream.answered.wait()
    seconds = time.monotonic() - started
    return BenchRow(fen, _nodes(stream.lines), seconds, stream.lines[-1].split()[1])


def format_bench(rows: list[BenchRow]) -> list[str]:
    """One line per position, then the totals in the layout Stockfish's `bench` prints."""
    lines = [f"position {index}/{len(rows)}: nodes {row.nodes}, {row.seconds:.2f} s, {row.nps:,.0f} nps, "
             f"bestmove {row.bestmove}  ({row.fen})" for index, row in enumerate(rows, 1)]
    nodes, seconds = sum(row.nodes for row in rows), sum(row.seconds for row in rows)
    lines += ["", f"Total time (ms) : {seconds * 1e3:.0f}", f"Nodes searched  : {nodes}",
              f"Nodes/second    : {nodes / max(seconds, 1e-9):.0f}"]
    return lines
