"""The UCI engine: protocol handling, search control and time management over a `NetworkPlayer`.

The user manual is docs/uci.md; the command line is `chessbrain_jax.uci`.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import sys
import threading
import time
import traceback
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Sequence, TextIO

import chess
import numpy as np

from chessbrain_jax.config import Config

if TYPE_CHECKING:
    from chessbrain_jax.core.chess_env import State
    from chessbrain_jax.play.player import NetworkPlayer

PROG = "chessbrain_jax.uci"
AUTHOR = "chessbrain_jax developers"
SEARCHES = ("gumbel", "puct")
MAX_SIMULATIONS = 100_000
MAX_THREADS = 256
PV_LENGTH = 16  # plies of principal variation read from each tree
MOVE_OVERHEAD_MS = 30  # kept back from every time budget for the GUI's and the pipe's latency
DEFAULT_MOVES_TO_GO = 30  # moves the remaining clock is shared over when the GUI does not say (sudden death)
ROOTS_KEPT = 8  # root positions (FENs) whose pgx states are cached


class UsageError(Exception):
    """A bad flag or checkpoint: one line on stderr, exit status 2."""


class UciError(ValueError):
    """A malformed or impossible command: answered with `info string error: <message>`; nothing changes."""


def one_line(text: object) -> str:
    """`text` with its line breaks and runs of spaces collapsed: a protocol or stderr message is one line."""
    return " ".join(str(text).split())


# ---------------------------------------------------------------------------------------------- search chunks


class SearchSettings(NamedTuple):
    """The UCI options that shape a compiled chunk (each combination is one XLA compile)."""

    simulations: int
    threads: int
    search: str


class ChunkResult(NamedTuple):
    """One chunk's statistics on the host; `T` = threads (trees), `A` = 4672 pgx actions, `L` = `PV_LENGTH`.

    action: i32[T] each tree's choice (Gumbel: sequential halving's; PUCT: most visited).
    weights: f32[T, A] Gumbel's improved policy or PUCT's visit fractions (0 off the root's legal moves).
    root_value: f32[T] each tree's root value, for the side to move, in [-1, 1].
    pv: i32[T, 2, L] pgx actions from `action` and from argmax(`weights`), then the most visited child; -1 padded.
    prior_logits: f32[A] the network's root prior logits (tree 0; illegal moves at the dtype's minimum).
    """

    action: np.ndarray
    weights: np.ndarray
    root_value: np.ndarray
    pv: np.ndarray
    prior_logits: np.ndarray


class ChunkSearch:
    """Root-parallel search chunks: one jitted call runs `threads` independent mctx trees of `simulations` each from
    one root. Compiled ahead of time once per `SearchSettings`, by whichever thread asks first, and kept."""

    def __init__(self, apply_fn: Callable, params: Any, config: Config):
        self._apply_fn, self._params, self._config = apply_fn, params, config
        self._compiled: dict[SearchSettings, Callable] = {}
        self._lock = threading.Lock()
        self.seconds: dict[SearchSettings, float] = {}  # wall time of the latest chunk, for time management

    def compile(self, settings: SearchSettings) -> Callable:
        with self._lock:
            if settings not in self._compiled:
                self._compiled[settings] = self._build(settings)
            return self._compiled[settings]

    def _build(self, settings: SearchSettings) -> Callable:
        import jax
        import jax.numpy as jnp

        from chessbrain_jax.core import chess_env
        from chessbrain_jax.core.search import make_search_fn, principal_variation

        config = dataclasses.replace(self._config, mcts_simulations=settings.simulations, search=settings.search)
        search = make_search_fn(config, self._apply_fn)

        def chunk(params, seed, state):
            roots = jax.tree.map(lambda leaf: jnp.broadcast_to(leaf, (settings.threads, *leaf.shape)), state)
            output = search(params, jax.random.PRNGKey(seed), roots)
            most = jnp.argmax(output.action_weights, axis=-1).astype(jnp.int32)
            chosen = output.best_action.astype(jnp.int32)
            line = functools.partial(principal_variation, length=PV_LENGTH)
            lines = jax.vmap(jax.vmap(line, (None, 0)))(output.search_tree, jnp.stack([chosen, most], axis=1))
            return chosen, output.action_weights, output.root_value, lines, output.root_prior_logits[0]

        state_shape = jax.eval_shape(chess_env.ENV.init, jax.random.PRNGKey(0))
        return jax.jit(chunk).lower(self._params, np.uint32(0), state_shape).compile()

    def run(self, settings: SearchSettings, seed: int, state: State) -> ChunkResult:
        """Searches the unbatched pgx `state`; `seed` picks the chunk's random numbers."""
        import jax

        compiled = self.compile(settings)
        started = time.monotonic()
        outputs = jax.device_get(compiled(self._params, np.uint32(seed), state))
        self.seconds[settings] = time.monotonic() - started
        return ChunkResult(*(np.asarray(output) for output in outputs))


class PositionStates:
    """pgx states (history included) of python-chess games, as `notation.board_to_state` builds them, but cached:
    pgx parses a FEN eagerly (about a second) while a jitted step takes a millisecond, so root states are kept by
    FEN and a game that extends the previous position is stepped on from it. Thread-safe."""

    def __init__(self):
        import jax

        from chessbrain_jax.core import chess_env

        self._step = jax.jit(chess_env.ENV.step)
        self._roots: OrderedDict[str, State] = OrderedDict()
        self._last: tuple[str, list[chess.Move], State] | None = None
        self._lock = threading.Lock()

    def root(self, fen: str) -> State:
        """The state of `fen`, checked like `chess_env.from_fen` (ValueError with a one-line reason)."""
        with self._lock:
            return self._root(fen)

    def _root(self, fen: str) -> State:
        from chessbrain_jax.core import chess_env

        try:
            key = chess.Board(fen).fen()
        except ValueError:
            key = fen  # not a FEN: from_fen below says why
        if key not in self._roots:
            self._roots[key] = chess_env.from_fen(fen)
            if len(self._roots) > ROOTS_KEPT:
                self._roots.popitem(last=False)
        self._roots.move_to_end(key)
        return self._roots[key]

    def state(self, board: chess.Board) -> State:
        """The unbatched pgx state of `board`, its root position stepped through its move stack."""
        import jax.numpy as jnp

        from chessbrain_jax.play import notation

        with self._lock:
            fen, moves = board.root().fen(), list(board.move_stack)
            if self._last is not None and self._last[0] == fen and moves[:len(self._last[1])] == self._last[1]:
                state, done = self._last[2], len(self._last[1])
            else:
                state, done = self._root(fen), 0
            replay = board.root()
            for index, move in enumerate(moves):
                if index >= done:
                    state = self._step(state, jnp.int32(notation.move_to_action(replay, move)))
                replay.push(move)
            self._last = (fen, moves, state)
            return state


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


# ---------------------------------------------------------------------------------------------- go


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
    """(command, errors, notes): a bad argument is an error and is dropped, an unsupported one a note."""
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
            if word in ("depth", "mate"):
                notes.append(f"go {word} is not supported and is ignored; the other limits apply")
            elif value < 0 and word not in ("wtime", "btime"):  # a clock may run negative after an overrun
                errors.append(f"go {word}: expected a value >= 0, got {value}")
            else:
                setattr(go, word, value)
        else:
            errors.append(f"go: unknown argument {word!r}")
    go.searchmoves = [move for move in go.searchmoves if move]  # 0000 is no move to search
    return go, errors, notes


class SearchControl:
    """What the main thread tells a search in flight: stop, or ponderhit (the pondered move was played, so the time
    limits start counting now)."""

    def __init__(self, go: GoCommand, started: float):
        self.go, self.started = go, started
        self.pondering = go.ponder
        self.stopped = threading.Event()
        self.answered = threading.Event()  # set just before bestmove goes out

    @property
    def unlimited(self) -> bool:
        return (self.go.infinite or self.pondering) and not self.stopped.is_set()

    def ponderhit(self) -> None:
        self.started, self.pondering = time.monotonic(), False

    def stop(self) -> None:
        self.stopped.set()


# ---------------------------------------------------------------------------------------------- protocol


class Output:
    """The protocol's stdout: whole lines, flushed at once, one writer at a time (main thread and search worker)."""

    def __init__(self, stream: TextIO):
        self._stream, self._lock = stream, threading.Lock()

    def send(self, line: str) -> None:
        with self._lock:
            try:
                self._stream.write(line + "\n")
                self._stream.flush()
            except (BrokenPipeError, ValueError):  # the GUI is gone; the end of stdin stops the engine
                pass

    def info(self, text: str) -> None:
        self.send(f"info string {one_line(text)}")

    def error(self, text: str) -> None:
        self.info(f"error: {text}")


class UciEngine:
    """The session: options, the current position, the search in flight. `handle(line)` runs one command in the
    main thread; `go` searches in a worker thread, so `isready`, `stop` and `ponderhit` are answered meanwhile."""

    def __init__(self, player: NetworkPlayer, out: Output, debug: bool = False):
        self.player, self.out, self.debug = player, out, debug
        self.searcher = ChunkSearch(player.apply_fn, player.params, player.config)
        self.positions = PositionStates()
        self.defaults = SearchSettings(player.simulations, 1, player.config.search)
        self.settings = self.defaults
        self.board = chess.Board()
        self._seeds = itertools.count()
        self._control: SearchControl | None = None
        self._worker: threading.Thread | None = None
        self._handlers: dict[str, Callable[[list[str]], None]] = {
            "uci": self._uci, "isready": self._isready, "ucinewgame": self._ucinewgame, "position": self._position,
            "go": self._go, "stop": self._stop, "ponderhit": self._ponderhit, "setoption": self._setoption,
            "debug": lambda _: None, "register": lambda _: None,
        }

    def warm_up(self) -> None:
        """Starts compiling, in two background threads, the default chunk and the step that builds positions."""
        opening = chess.Board()
        opening.push_uci("e2e4")
        for work in (lambda: self.searcher.compile(self.settings), lambda: self.positions.state(opening)):
            threading.Thread(target=self._quietly, args=(work,), daemon=True).start()

    def handle(self, line: str) -> bool:
        """Runs one command line; False after `quit`."""
        tokens = line.split()
        if not tokens:
            return True
        command, arguments = tokens[0], tokens[1:]
        if command == "quit":
            self.finish_search()
            return False
        handler = self._handlers.get(command)
        if handler is None:
            self.out.error(f"unknown command {command!r}")
            return True
        try:
            handler(arguments)
        except UciError as error:
            self.out.error(str(error))
        except Exception as error:  # a bug must not end the session: report it and keep serving
            self._internal_error(error)
        return True

    def finish_search(self) -> None:
        """Stops the search in flight, if any, and waits for its bestmove."""
        if self._control is not None:
            self._control.stop()
        if self._worker is not None:
            self._worker.join()
        self._worker = self._control = None

    def _internal_error(self, error: Exception) -> None:
        if self.debug:
            traceback.print_exc(file=sys.stderr)
        self.out.error(f"internal error: {type(error).__name__}: {error}")

    def _quietly(self, work: Callable[[], Any]) -> None:
        try:
            work()
        except Exception as error:
            self._internal_error(error)

    def _searching(self) -> bool:
        return self._control is not None and not self._control.answered.is_set()

    # -- commands

    def _uci(self, _: list[str]) -> None:
        self.out.send(f"id name chessbrain_jax {self.player.name}")
        self.out.send(f"id author {AUTHOR}")
        self.out.send(f"option name Simulations type spin default {self.defaults.simulations} min 1 "
                      f"max {MAX_SIMULATIONS}")
        self.out.send(f"option name Threads type spin default {self.defaults.threads} min 1 max {MAX_THREADS}")
        self.out.send(f"option name Search type combo default {self.defaults.search} "
                      + " ".join(f"var {name}" for name in SEARCHES))
        self.out.send("uciok")

    def _isready(self, _: list[str]) -> None:
        try:
            if not self._searching():  # get the current position and chunk ready, so that `go` pays no compile
                self.positions.state(self.board)
                self.searcher.compile(self.settings)
        finally:
            self.out.send("readyok")

    def _ucinewgame(self, _: list[str]) -> None:
        self.finish_search()
        self.board = chess.Board()

    def _position(self, tokens: list[str]) -> None:
        usage = "position: expected 'position startpos|fen <FEN> [moves <move> ...]'"
        if not tokens or tokens[0] not in ("startpos", "fen"):
            raise UciError(usage)
        end = tokens.index("moves") if "moves" in tokens else len(tokens)
        if tokens[0] == "startpos":
            if end != 1:
                raise UciError(usage)
            fen = chess.STARTING_FEN
        else:
            fen = " ".join(tokens[1:end])
            try:
                self.positions.root(fen)
            except ValueError as error:
                raise UciError(f"position: {error}") from None
        board = chess.Board(fen)
        for number, text in enumerate(tokens[end + 1:], 1):
            try:
                move = board.parse_uci(text)
            except ValueError:
                raise UciError(f"position: move {number} {text!r} is not legal in {board.fen()}") from None
            if not move:
                raise UciError(f"position: move {number} is the null move 0000, which pgx cannot play")
            board.push(move)
        self.board = board

    def _setoption(self, tokens: list[str]) -> None:
        if not tokens or tokens[0] != "name" or len(tokens) < 2:
            raise UciError("setoption: expected 'setoption name <name> [value <value>]'")
        end = tokens.index("value") if "value" in tokens else len(tokens)
        name, value = " ".join(tokens[1:end]), " ".join(tokens[end + 1:])
        if name.lower() == "simulations":
            self.settings = self.settings._replace(simulations=_spin(name, value, MAX_SIMULATIONS))
        elif name.lower() == "threads":
            self.settings = self.settings._replace(threads=_spin(name, value, MAX_THREADS))
        elif name.lower() == "search":
            if value.lower() not in SEARCHES:
                raise UciError(f"setoption {name}: value must be one of {', '.join(SEARCHES)}, got {value!r}")
            self.settings = self.settings._replace(search=value.lower())
        else:
            raise UciError(f"setoption: unknown option {name!r} (options: Simulations, Threads, Search)")

    def _go(self, tokens: list[str]) -> None:
        started = time.monotonic()
        go, errors, notes = parse_go(tokens, self.board)
        for error in errors:
            self.out.error(error)
        for note in notes:
            self.out.info(note)
        self.finish_search()  # a new `go` ends the search in flight, which answers its own bestmove first
        self._control = SearchControl(go, started)
        self._worker = threading.Thread(target=self._think, name="search", daemon=True,
                                        args=(self.board.copy(), self.settings, self._control))
        self._worker.start()

    def _stop(self, _: list[str]) -> None:
        if self._control is not None:
            self._control.stop()

    def _ponderhit(self, _: list[str]) -> None:
        if self._control is not None:
            self._control.ponderhit()

    # -- the search worker

    def _think(self, board: chess.Board, settings: SearchSettings, control: SearchControl) -> None:
        """Searches `board` within `control`'s limits and answers bestmove, whatever happens."""
        try:
            pv = self._search(board, settings, control)
        except Exception as error:
            self._internal_error(error)
            pv = list(board.legal_moves)[:1]  # still a legal answer
        answer = f"bestmove {pv[0].uci() if pv else '0000'}"
        control.answered.set()
        self.out.send(answer + (f" ponder {pv[1].uci()}" if len(pv) > 1 else ""))

    def _search(self, board: chess.Board, settings: SearchSettings, control: SearchControl) -> list[chess.Move]:
        """The principal variation to answer with (empty when the game is over)."""
        outcome = board.outcome(claim_draw=False)
        if outcome is not None:
            self.out.info(f"game over ({outcome.termination.name.lower()}, {outcome.result()}): no move to play")
            while control.unlimited:  # `go infinite` answers only after `stop`
                control.stopped.wait(0.05)
            return []
        from chessbrain_jax.play.player import value_to_centipawns

        state = self.positions.state(board)
        moves = control.go.searchmoves or list(board.legal_moves)
        totals = SearchTotals(board, moves, settings.search)
        if control.go.searchmoves:
            mask = np.zeros(state.legal_action_mask.shape, bool)
            mask[totals.actions] = True
            state = state.replace(legal_action_mask=mask)
        drawn_by_pgx = bool(state.terminated)
        while True:
            result = self.searcher.run(settings, next(self._seeds), state)
            totals.add(result, settings.simulations)
            if drawn_by_pgx:
                return [self._prior_move(totals, result.prior_logits, control)]
            elapsed = time.monotonic() - control.started
            pv = totals.principal_variation()
            nodes, milliseconds = totals.simulations, max(int(elapsed * 1000), 1)
            self.out.send(f"info depth {len(pv)} nodes {nodes} nps {nodes * 1000 // milliseconds} score cp "
                          f"{value_to_centipawns(totals.value)} time {milliseconds} pv "
                          + " ".join(move.uci() for move in pv))
            if not self._another_chunk(board, settings, control, totals):
                return pv

    def _another_chunk(self, board: chess.Board, settings: SearchSettings, control: SearchControl,
                       totals: SearchTotals) -> bool:
        if control.stopped.is_set():
            return False
        if control.unlimited:
            return True
        go = control.go
        if go.nodes is not None and totals.simulations >= go.nodes:
            return False
        budget = go.budget_seconds(board.turn == chess.WHITE)
        if budget is not None and time.monotonic() - control.started + self.searcher.seconds[settings] > budget:
            return False
        return go.nodes is not None or budget is not None  # a plain `go` runs one chunk

    def _prior_move(self, totals: SearchTotals, prior_logits: np.ndarray, control: SearchControl) -> chess.Move:
        """The network's most likely legal move, for a position pgx already ends (its search has nothing to weigh)."""
        self.out.info("pgx scores this position as drawn (repetition, 50-move rule or 512 plies): playing the "
                      "network's most likely legal move")
        while control.unlimited:
            control.stopped.wait(0.05)
        return totals.moves[int(np.argmax(prior_logits[totals.actions]))]


def _spin(name: str, value: str, maximum: int) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if not 1 <= number <= maximum:
        raise UciError(f"setoption {name}: value must be an integer in [1, {maximum}], got {value!r}")
    return number
