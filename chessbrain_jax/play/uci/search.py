"""Search control for one `go`: one tree, grown in steps while the limits allow, and what each step found.

Every `go` searches one tree (`tree.TreeSearch`) planned for the simulations its limits allow: `nodes`, or the time
budget times the speed last measured, or the whole tree for `go infinite`/`ponder`. Steps at most double the tree,
report at most `REPORT_SECONDS` apart and end within the time budget. Progress goes to a `SearchListener`; this module writes no
protocol text.
"""

from __future__ import annotations

import itertools
import time
from typing import TYPE_CHECKING, NamedTuple, Protocol

import chess
import numpy as np

from chessbrain_jax.play.uci.clock import SearchControl
from chessbrain_jax.play.uci.positions import PositionStates
from chessbrain_jax.play.uci.tree import Snapshot, TreeSearch, TreeSettings, ladder

if TYPE_CHECKING:
    from chessbrain_jax.core.chess_env import State

REPORT_SECONDS = 0.25  # wall time between info lines while a search runs
FIRST_STEP = 16  # simulations of the first step when the speed is not known yet
MATE_VALUE = 0.999  # a root move this close to +-1 whose line ends in mate is reported as a mate score


class RootMove(NamedTuple):
    """One of the best root moves of a search (for MultiPV): its line from the root, visits and value."""

    line: list[chess.Move]
    visits: int
    value: float
    mate: int | None  # moves to mate (negative: being mated), when the line ends in a mate the value confirms


class SearchReport(NamedTuple):
    """A search's state after a step: what an `info` line says."""

    moves: list[RootMove]  # best first
    value: float  # the root's search value for the side to move
    simulations: int
    seldepth: int
    capacity: int
    elapsed: float  # seconds since the limits started counting


class SearchListener(Protocol):
    """What a search reports while it runs (the protocol turns it into info lines)."""

    def report(self, report: SearchReport) -> None:
        """After every step."""

    def game_over(self, outcome: chess.Outcome) -> None:
        """The game is over by python-chess's rules: there is no move to play."""

    def drawn_by_pgx(self) -> None:
        """pgx already scores the position as drawn: the network's prior picks the move."""

    def tree_full(self, capacity: int) -> None:
        """The tree holds `capacity` nodes: more Hash would let it grow."""


def root_moves(board: chess.Board, snapshot: Snapshot) -> list[RootMove]:
    """The snapshot's ranked root moves with their lines as python-chess moves (cut at the first illegal one)."""
    from chessbrain_jax.play import notation

    moves = []
    for action, visits, q, line in zip(snapshot.actions, snapshot.visits, snapshot.q, snapshot.lines):
        if action < 0:
            break
        moves.append(_root_move(board, notation.line_to_moves(board, line), int(visits), float(q)))
    return moves


def _root_move(board: chess.Board, line: list[chess.Move], visits: int, value: float) -> RootMove:
    mate = None
    if abs(value) >= MATE_VALUE and line:
        end = board.copy(stack=False)
        for move in line:
            end.push(move)
        if end.is_checkmate():
            plies = len(line)
            mate = (plies + 1) // 2 if plies % 2 else -(plies // 2)
    return RootMove(line, visits, value, mate)


class GoSearch:
    """Runs each `go` on one growing tree from the board's pgx state; one seed sequence per engine."""

    def __init__(self, trees: TreeSearch, positions: PositionStates):
        self.trees, self.positions = trees, positions
        self._seeds = itertools.count()

    def run(self, board: chess.Board, settings: TreeSettings, default_nodes: int, control: SearchControl,
            listener: SearchListener) -> list[chess.Move]:
        """The principal variation to answer with (empty when the game is over). A `go` without limits searches
        `default_nodes`; `go infinite`/`go ponder` answer only after stop (or ponderhit)."""
        outcome = board.outcome(claim_draw=False)
        if outcome is not None:
            listener.game_over(outcome)
            control.wait_while_unlimited()
            return []
        state = self._root(board, control.go.searchmoves)
        white = board.turn == chess.WHITE
        limit = _node_limit(control, white, default_nodes, self.trees.speed(settings), settings.capacity)
        tree = self._tree(settings, limit if limit < settings.capacity - 1 else 0)  # open-ended: start small
        grown = self.trees.start(tree, next(self._seeds), state, limit)
        if bool(state.terminated):
            listener.drawn_by_pgx()
            control.wait_while_unlimited()
            snapshot = self.trees.summary(tree, grown)
            return [_prior_move(board, snapshot.prior_logits)]
        while True:
            upper = self._next_upper(tree, control, white, int(grown.simulations), limit)
            grown = self.trees.grow(tree, grown, upper)
            snapshot = self.trees.summary(tree, grown)
            moves = root_moves(board, snapshot)
            listener.report(SearchReport(moves, snapshot.value, snapshot.simulations, snapshot.seldepth,
                                         settings.capacity, time.monotonic() - control.started))
            if _done(control, white, snapshot.simulations, limit, moves[0]):
                return moves[0].line
            if snapshot.simulations >= tree.capacity - 1:
                larger = self._tree(settings, tree.capacity)
                if larger == tree:
                    listener.tree_full(settings.capacity)
                    control.wait_while_unlimited()
                    return moves[0].line
                grown, tree = self.trees.enlarge(grown, larger), larger

    def _tree(self, settings: TreeSettings, simulations: int) -> TreeSettings:
        """The smallest compiled tree of `settings`' ladder with room for `simulations` (the Hash's own when none
        is smaller: it is compiled before any search)."""
        return next(tree for tree in ladder(settings)
                    if tree == settings or tree.capacity - 1 >= simulations and self.trees.compiled(tree))

    def _root(self, board: chess.Board, searchmoves: list[chess.Move]) -> State:
        """The pgx state to search, its legal moves cut to `searchmoves` if any."""
        from chessbrain_jax.play import notation

        state = self.positions.state(board)
        if searchmoves:
            mask = np.zeros(state.legal_action_mask.shape, bool)
            mask[[notation.move_to_action(board, move) for move in searchmoves]] = True
            state = state.replace(legal_action_mask=mask)
        return state

    def _next_upper(self, settings: TreeSettings, control: SearchControl, white: bool, simulations: int,
                    limit: int) -> int:
        """Simulations in all after the next step: at most the tree's size again and `REPORT_SECONDS` of work, no
        more than the node limit or the time left allow."""
        nps = self.trees.speed(settings)
        step = max(FIRST_STEP, simulations)  # at most doubling, so a depth or mate found is answered soon
        if nps is not None:
            step = min(step, max(1, int(nps * REPORT_SECONDS)))
        if control.unlimited:
            return simulations + step
        go = control.go
        budget = go.budget_seconds(white)
        if budget is not None and nps is not None:
            step = min(step, max(1, int(nps * (budget - (time.monotonic() - control.started)))))
        cap = go.nodes if go.nodes is not None else (limit if budget is None else None)
        upper = simulations + step
        return upper if cap is None else min(upper, max(cap, simulations + 1))

def _node_limit(control: SearchControl, white: bool, default_nodes: int, nps: float | None, capacity: int) -> int:
    """The simulations a `go` plans for: its nodes, its time budget at the measured speed, or the whole tree when it
    is open-ended (infinite, ponder, depth or mate alone); a plain `go` searches `default_nodes`."""
    go = control.go
    if control.unlimited:
        return capacity - 1
    limits = []
    if go.nodes is not None:
        limits.append(max(go.nodes, 1))
    budget = go.budget_seconds(white)
    if budget is not None:
        limits.append(max(int((nps or 0.0) * budget), 1) if nps else capacity - 1)
    if not limits:
        limits.append(capacity - 1 if go.depth is not None or go.mate is not None else default_nodes)
    return min(min(limits), capacity - 1)


def _done(control: SearchControl, white: bool, simulations: int, limit: int, best: RootMove) -> bool:
    """Whether the search should answer now."""
    if control.stopped.is_set():
        return True
    if control.unlimited:
        return False
    go = control.go
    if go.depth is not None and len(best.line) >= go.depth:
        return True
    if go.mate is not None and best.mate is not None and 0 < best.mate <= go.mate:
        return True
    budget = go.budget_seconds(white)
    if budget is not None and time.monotonic() - control.started >= budget:
        return True
    if go.nodes is not None and simulations >= go.nodes:
        return True
    return budget is None and go.nodes is None and simulations >= limit


def _prior_move(board: chess.Board, prior_logits: np.ndarray) -> chess.Move:
    """The legal move the network's prior (f32[4672] logits) rates highest: the answer where pgx already ends the
    game, so that its search has nothing to weigh."""
    from chessbrain_jax.play import notation

    moves = list(board.legal_moves)
    return moves[int(np.argmax([prior_logits[notation.move_to_action(board, move)] for move in moves]))]
