"""The UCI protocol: command lines in, `id`/`option`/`info`/`bestmove` lines out, over a `NetworkPlayer`.

Search goes to `search.GoSearch` in a worker thread and the limits of a `go` to `clock`; this module owns the
session (options, position, the search in flight) and every line the engine writes.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, TextIO

import chess

from chessbrain_jax.play.uci.clock import SearchControl, parse_go
from chessbrain_jax.play.uci.positions import PositionStates
from chessbrain_jax.play.uci.search import GoSearch, SearchReport
from chessbrain_jax.play.uci.tree import MAX_MULTIPV, TreeSearch, TreeSettings, capacity_for, node_bytes

if TYPE_CHECKING:
    from chessbrain_jax.play.player import NetworkPlayer

AUTHOR = "chessbrain_jax developers"
SEARCHES = ("gumbel", "puct")
MAX_SIMULATIONS = 100_000
DEFAULT_HASH_MB = 128
MAX_HASH_MB = 65_536


class UciError(ValueError):
    """A malformed or impossible command: answered with `info string error: <message>`; nothing changes."""


def one_line(text: object) -> str:
    """`text` with its line breaks and runs of spaces collapsed: a protocol or stderr message is one line."""
    return " ".join(str(text).split())


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


class SearchInfo:
    """The info lines of a search in flight (a `search.SearchListener`)."""

    def __init__(self, out: Output, multipv: int = 1, show_wdl: bool = False):
        self.out, self.multipv, self.show_wdl = out, multipv, show_wdl

    def report(self, report: SearchReport) -> None:
        """One `info depth seldepth multipv score nodes nps hashfull time pv` line per shown root move."""
        nodes, milliseconds = report.simulations, max(int(report.elapsed * 1000), 1)
        common = (f"nodes {nodes} nps {nodes * 1000 // milliseconds} hashfull "
                  f"{min(1000, nodes * 1000 // max(report.capacity - 1, 1))} time {milliseconds}")
        for rank, move in enumerate(report.moves[:self.multipv], 1):
            value = report.value if rank == 1 and move.mate is None else move.value
            self.out.send(f"info depth {len(move.line)} seldepth {max(report.seldepth, len(move.line))} "
                          f"multipv {rank} {score_text(value, move.mate, self.show_wdl)} {common} pv "
                          + " ".join(pv_move.uci() for pv_move in move.line))

    def game_over(self, outcome: chess.Outcome) -> None:
        self.out.info(f"game over ({outcome.termination.name.lower()}, {outcome.result()}): no move to play")

    def drawn_by_pgx(self) -> None:
        self.out.info("pgx scores this position as drawn (repetition, 50-move rule or 512 plies): playing the "
                      "network's most likely legal move")

    def tree_full(self, capacity: int) -> None:
        self.out.info(f"the search tree is full ({capacity} nodes): a larger Hash lets it grow further")


def score_text(value: float, mate: int | None, show_wdl: bool) -> str:
    """`score cp C` (Leela Chess Zero's mapping of the expected score) or `score mate N`, then `wdl W D L` in
    permille when asked: the value v in [-1, 1] read as W = max(v, 0), L = max(-v, 0), D = 1 - |v| (the same split
    the WDL head is trained on)."""
    from chessbrain_jax.play.player import value_to_centipawns

    text = f"score mate {mate}" if mate is not None else f"score cp {value_to_centipawns(value)}"
    if show_wdl:
        win, loss = round(1000 * max(value, 0.0)), round(1000 * max(-value, 0.0))
        text += f" wdl {win} {1000 - win - loss} {loss}"
    return text


class Options(NamedTuple):
    """The engine's UCI options."""

    simulations: int  # the tree size of a `go` without limits
    hash_mb: int  # MiB of tree: its capacity in nodes
    search: str
    multipv: int
    show_wdl: bool


class UciEngine:
    """The session: options, the current position, the search in flight. `handle(line)` runs one command in the
    main thread; `go` searches in a worker thread, so `isready`, `stop` and `ponderhit` are answered meanwhile."""

    def __init__(self, player: NetworkPlayer, out: Output, debug: bool = False, hash_mb: int | None = None):
        self.player, self.out, self.debug = player, out, debug
        self.trees = TreeSearch(player.apply_fn, player.params, player.config)
        self.node_bytes = node_bytes(player.apply_fn, player.params, player.config)
        self.positions = PositionStates()
        self.searcher = GoSearch(self.trees, self.positions)
        self.defaults = Options(player.simulations, hash_mb or DEFAULT_HASH_MB, player.config.search, 1, False)
        self.options = self.defaults
        self.board = chess.Board()
        self._control: SearchControl | None = None
        self._worker: threading.Thread | None = None
        self._handlers: dict[str, Callable[[list[str]], None]] = {
            "uci": self._uci, "isready": self._isready, "ucinewgame": self._ucinewgame, "position": self._position,
            "go": self._go, "stop": self._stop, "ponderhit": self._ponderhit, "setoption": self._setoption,
            "debug": lambda _: None, "register": lambda _: None,
        }

    def warm_up(self) -> None:
        """Starts compiling, in background threads, the default tree (then the smaller trees below it) and the step
        that builds positions."""
        opening = chess.Board()
        opening.push_uci("e2e4")
        settings = self.tree_settings(self.options)
        self._background(lambda: (self.trees.compile(settings), self.trees.prepare(settings, self._background)))
        self._background(lambda: self.positions.state(opening))

    def _background(self, work: Callable[[], Any]) -> None:
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

    def tree_settings(self, options: Options) -> TreeSettings:
        """The compiled tree `options` search with (Hash gives its capacity)."""
        return TreeSettings(capacity_for(options.hash_mb, self.node_bytes), options.search)

    def _searching(self) -> bool:
        return self._control is not None and not self._control.answered.is_set()

    # -- commands

    def _uci(self, _: list[str]) -> None:
        self.out.send(f"id name chessbrain_jax {self.player.name}")
        self.out.send(f"id author {AUTHOR}")
        defaults = self.defaults
        self.out.send(f"option name Simulations type spin default {defaults.simulations} min 1 max {MAX_SIMULATIONS}")
        self.out.send(f"option name Hash type spin default {defaults.hash_mb} min 1 max {MAX_HASH_MB}")
        self.out.send(f"option name MultiPV type spin default {defaults.multipv} min 1 max {MAX_MULTIPV}")
        self.out.send(f"option name UCI_ShowWDL type check default {str(defaults.show_wdl).lower()}")
        self.out.send(f"option name Search type combo default {defaults.search} "
                      + " ".join(f"var {name}" for name in SEARCHES))
        self.out.send("uciok")

    def _isready(self, _: list[str]) -> None:
        try:
            if not self._searching():  # get the current position and tree ready, so that `go` pays no compile
                self.positions.state(self.board)
                settings = self.tree_settings(self.options)
                self.trees.compile(settings)
                self.trees.prepare(settings, self._background)  # the smaller trees follow in the background
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
        key = name.lower()
        if key == "simulations":
            self.options = self.options._replace(simulations=_spin(name, value, 1, MAX_SIMULATIONS))
        elif key == "hash":
            self.options = self.options._replace(hash_mb=_spin(name, value, 1, MAX_HASH_MB))
        elif key == "multipv":
            self.options = self.options._replace(multipv=_spin(name, value, 1, MAX_MULTIPV))
        elif key == "uci_showwdl":
            if value.lower() not in ("true", "false"):
                raise UciError(f"setoption {name}: value must be true or false, got {value!r}")
            self.options = self.options._replace(show_wdl=value.lower() == "true")
        elif key == "search":
            if value.lower() not in SEARCHES:
                raise UciError(f"setoption {name}: value must be one of {', '.join(SEARCHES)}, got {value!r}")
            self.options = self.options._replace(search=value.lower())
        else:
            raise UciError(f"setoption: unknown option {name!r} (options: Simulations, Hash, MultiPV, UCI_ShowWDL, "
                           "Search)")

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
                                        args=(self.board.copy(), self.options, self._control))
        self._worker.start()

    def _stop(self, _: list[str]) -> None:
        if self._control is not None:
            self._control.stop()

    def _ponderhit(self, _: list[str]) -> None:
        if self._control is not None:
            self._control.ponderhit()

    # -- the search worker

    def _think(self, board: chess.Board, options: Options, control: SearchControl) -> None:
        """Searches `board` within `control`'s limits and answers bestmove, whatever happens."""
        try:
            pv = self.searcher.run(board, self.tree_settings(options), options.simulations, control,
                                   SearchInfo(self.out, options.multipv, options.show_wdl))
        except Exception as error:
            self._internal_error(error)
            pv = list(board.legal_moves)[:1]  # still a legal answer
        answer = f"bestmove {pv[0].uci() if pv else '0000'}"
        control.answered.set()
        self.out.send(answer + (f" ponder {pv[1].uci()}" if len(pv) > 1 else ""))


def _spin(name: str, value: str, minimum: int, maximum: int) -> int:
    """The integer value of a spin option, checked against [`minimum`, `maximum`]."""
    try:
        number = int(value)
    except ValueError:
        number = minimum - 1
    if not minimum <= number <= maximum:
        raise UciError(f"setoption {name}: value must be an integer in [{minimum}, {maximum}], got {value!r}")
    return number
