"""The limits of one `go`: its arguments parsed, the time budget it may spend, and stop/ponderhit while it runs."""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Sequence

import chess

MOVE_OVERHEAD_MS = 30  # kept back from every time budget for the GUI's and the pipe's latency
DEFAULT_MOVES_TO_GO = 30  # moves the remaining clock is shared over when the GUI does not say (sudden death)


@dataclasses.dataclass
class GoCommand:
    """A parsed `go`: the limits of one search, times in milliseconds (None: not given)."""

    nodes: int | None = None
    movetime: int | None = None
    wtime: int | None = None
    btime: int | None = None
    winc: int | None = None
    binc: int | None = None
    movestogo: int | None = None
    depth: int | None = None  # plies of principal variation to reach (approximate: see docs/uci.md)
    mate: int | None = None  # moves within which to find a mate
    infinite: bool = False
    ponder: bool = False
    searchmoves: list[chess.Move] = dataclasses.field(default_factory=list)

    def budget_seconds(self, white_to_move: bool) -> float | None:
        """Seconds the move may take (`movetime`, else a share of the clock), or None when there is no time limit."""
        if self.movetime is not None:
            milliseconds = self.movetime - MOVE_OVERHEAD_MS
        else:
            remaining = self.wtime if white_to_move else self.btime
            if remaining is None:
                return None
            remaining = max(remaining, 0)
            increment = (self.winc if white_to_move else self.binc) or 0
            share = remaining / (self.movestogo or DEFAULT_MOVES_TO_GO) + increment / 2
            milliseconds = min(share, remaining / 2) - MOVE_OVERHEAD_MS
        return max(milliseconds, 0) / 1000


_GO_COUNTS = ("nodes", "movetime", "wtime", "btime", "winc", "binc", "movestogo", "depth", "mate")
_GO_KEYWORDS = (*_GO_COUNTS, "infinite", "ponder", "searchmoves")


def parse_go(tokens: Sequence[str], board: chess.Board) -> tuple[GoCommand, list[str], list[str]]:
    """(command, errors, notes): a bad argument is an error and is dropped; notes say what a limit means here."""
    go, errors, notes = GoCommand(), [], []
    index = 0
    while index < len(tokens):
        word = tokens[index]
        index += 1
        if word in ("infinite", "ponder"):
            setattr(go, word, True)
        elif word == "searchmoves":
            while index < len(tokens) and tokens[index] not in _GO_KEYWORDS:
                try:
                    go.searchmoves.append(board.parse_uci(tokens[index]))
                except ValueError:
                    errors.append(f"go searchmoves: {tokens[index]!r} is not a legal move here")
                index += 1
        elif word in _GO_COUNTS:
            if index >= len(tokens) or tokens[index] in _GO_KEYWORDS:
                errors.append(f"go {word}: missing value")
                continue
            raw = tokens[index]
            index += 1
            try:
                value = int(raw)
            except ValueError:
                errors.append(f"go {word}: expected an integer, got {raw!r}")
                continue
            if value < 0 and word not in ("wtime", "btime"):  # a clock may run negative after an overrun
                errors.append(f"go {word}: expected a value >= 0, got {value}")
            else:
                setattr(go, word, value)
        else:
            errors.append(f"go: unknown argument {word!r}")
    go.searchmoves = [move for move in go.searchmoves if move]  # 0000 is no move to search
    if go.depth is not None or go.mate is not None:
        notes.append("go depth/mate: the search stops once its principal variation is that long or ends in that "
                     "mate, or at the other limits, or when the tree is full")
    return go, errors, notes


class SearchControl:
    """What the main thread tells a search in flight: stop, or ponderhit (the pondered move was played, so the time
    limits start counting now). `started` is the `time.monotonic()` the limits count from."""

    def __init__(self, go: GoCommand, started: float):
        self.go, self.started = go, started
        self.pondering = go.ponder
        self.stopped = threading.Event()
        self.answered = threading.Event()  # set just before bestmove goes out

    @property
    def unlimited(self) -> bool:
        """True while no limit applies: `go infinite` or `go ponder`, until stop (or ponderhit, for ponder)."""
        return (self.go.infinite or self.pondering) and not self.stopped.is_set()

    def wait_while_unlimited(self) -> None:
        """Returns once the search may answer: at once, or for `go infinite`/`go ponder` after stop/ponderhit."""
        while self.unlimited:
            self.stopped.wait(0.05)

    def ponderhit(self) -> None:
        self.started, self.pondering = time.monotonic(), False

    def stop(self) -> None:
        self.stopped.set()
