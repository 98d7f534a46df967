"""Search control for one `go`: how many chunks to run within its limits, and which move their trees agree on.

Chunks share no tree: the statistics of all trees are summed over the moves the search may play and the argmax
is played. Progress goes to a `SearchListener`; this module writes no protocol text.
"""

from __future__ import annotations

import itertools
import time
from typing import TYPE_CHECKING, Protocol

import chess
import numpy as np

from chessbrain_jax.play.uci.chunks import PV_LENGTH, ChunkResult, ChunkSearch, PositionStates, SearchSettings
from chessbrain_jax.play.uci.clock import SearchControl

if TYPE_CHECKING:
    from chessbrain_jax.core.chess_env import State


class SearchTotals:
    """The statistics of every tree of one `go`, summed over its chunks, restricted to the moves it may play."""

    def __init__(self, board: chess.Board, moves: list[chess.Move], search: str):
        from chessbrain_jax.play import notation

        self.board, self.moves, self.search = board, moves, search
        self.actions = np.array([notation.move_to_action(board, move) for move in moves])  # i32[M]
        self.weights = np.zeros(len(moves))  # f64[M] summed over trees
        self.value_sum, self.trees, self.simulations = 0.0, 0, 0
        self.first_choice = -1
        self.lines: dict[int, list[int]] = {}  # first pgx action -> the longest line seen from it

    def add(self, result: ChunkResult, simulations: int) -> None:
        if not self.trees:
            self.first_choice = int(result.action[0])
        self.weights += result.weights[:, self.actions].sum(axis=0)
        self.value_sum += float(result.root_value.sum())
        self.trees += len(result.action)
        self.simulations += simulations * len(result.action)
        for line in result.pv.reshape(-1, PV_LENGTH):
            actions = [int(action) for action in line if action >= 0]
            if actions and len(actions) > len(self.lines.get(actions[0], ())):
                self.lines[actions[0]] = actions

    @property
    def value(self) -> float:
        """The mean root value over all trees, for the side to move."""
        return self.value_sum / max(self.trees, 1)

    def best_action(self) -> int:
        """The pgx action to play: the allowed move with the most summed weight, or a lone Gumbel tree's choice."""
        if self.trees == 1 and self.search == "gumbel" and self.first_choice in self.actions:
            return self.first_choice
        return int(self.actions[np.argmax(self.weights)])

    def principal_variation(self) -> list[chess.Move]:
        """The best move, then the longest line any tree found below it, cut at the first illegal move."""
        from chessbrain_jax.play import notation

        best = self.best_action()
        return notation.line_to_moves(self.board, self.lines.get(best, [best]))

    def prior_move(self, prior_logits: np.ndarray) -> chess.Move:
        """The allowed move the network's prior (f32[4672] logits) rates highest: the answer where pgx already
        ends the game, so that its search has nothing to weigh."""
        return self.moves[int(np.argmax(prior_logits[self.actions]))]


class SearchListener(Protocol):
    """What a search reports while it runs (the protocol turns it into info lines)."""

    def chunk(self, totals: SearchTotals, pv: list[chess.Move], elapsed: float) -> None:
        """After every chunk: the totals so far, their principal variation, seconds since the limits started."""

    def game_over(self, outcome: chess.Outcome) -> None:
        """The game is over by python-chess's rules: there is no move to play."""

    def drawn_by_pgx(self) -> None:
        """pgx already scores the position as drawn: the network's prior picks the move."""


class GoSearch:
    """Runs the chunks of each `go` from the board's pgx state; one chunk seed sequence per engine."""

    def __init__(self, chunks: ChunkSearch, positions: PositionStates):
        self.chunks, self.positions = chunks, positions
        self._seeds = itertools.count()

    def run(self, board: chess.Board, settings: SearchSettings, control: SearchControl,
            listener: SearchListener) -> list[chess.Move]:
        """The principal variation to answer with (empty when the game is over); every `go` runs one chunk at least,
        and `go infinite`/`go ponder` answer only after stop (or ponderhit)."""
        outcome = board.outcome(claim_draw=False)
        if outcome is not None:
            listener.game_over(outcome)
            control.wait_while_unlimited()
            return []
        state, totals = self._root(board, control.go.searchmoves, settings.search)
        drawn_by_pgx = bool(state.terminated)
        while True:
            result = self.chunks.run(settings, next(self._seeds), state)
            totals.add(result, settings.simulations)
            if drawn_by_pgx:
                listener.drawn_by_pgx()
                control.wait_while_unlimited()
                return [totals.prior_move(result.prior_logits)]
            elapsed = time.monotonic() - control.started
            pv = totals.principal_variation()
            listener.chunk(totals, pv, elapsed)
            chunk_seconds = self.chunks.seconds[settings]
            if not _another_chunk(control, board.turn == chess.WHITE, totals.simulations, chunk_seconds):
                return pv

    def _root(self, board: chess.Board, searchmoves: list[chess.Move], search: str) -> tuple[State, SearchTotals]:
        """The pgx state to search (its legal moves cut to `searchmoves`, if any) and the totals to fill."""
        state = self.positions.state(board)
        totals = SearchTotals(board, searchmoves or list(board.legal_moves), search)
        if searchmoves:
            mask = np.zeros(state.legal_action_mask.shape, bool)
            mask[totals.actions] = True
            state = state.replace(legal_action_mask=mask)
        return state, totals


def _another_chunk(control: SearchControl, white_to_move: bool, simulations: int, chunk_seconds: float) -> bool:
    """Whether the limits leave room for one more chunk, expected to take `chunk_seconds` like the latest one."""
    if control.stopped.is_set():
        return False
    if control.unlimited:
        return True
    go = control.go
    if go.nodes is not None and simulations >= go.nodes:
        return False
    budget = go.budget_seconds(white_to_move)
    if budget is not None and time.monotonic() - control.started + chunk_seconds > budget:
        return False
    return go.nodes is not None or budget is not None  # a plain `go` runs one chunk
