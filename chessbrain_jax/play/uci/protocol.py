"""The UCI protocol: command lines in, `id`/`option`/`info`/`bestmove` lines out, over a `NetworkPlayer`.

Search goes to `search.GoSearch` in a worker thread and the limits of a `go` to `clock`; this module owns the
session (options, position, the search in flight) and every line the engine writes.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from typing import TYPE_CHECKING, Any, Callable, TextIO

import chess

from chessbrain_jax.play.uci.chunks import ChunkSearch, PositionStates, SearchSettings
from chessbrain_jax.play.uci.clock import SearchControl, parse_go
from chessbrain_jax.play.uci.search import GoSearch, SearchTotals

if TYPE_CHECKING:
    from chessbrain_jax.play.player import NetworkPlayer

AUTHOR = "chessbrain_jax developers"
SEARCHES = ("gumbel", "puct")
MAX_SIMULATIONS = 100_000
MAX_THREADS = 256


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

    def __init__(self, out: Output):
        self.out = out

    def chunk(self, totals: SearchTotals, pv: list[chess.Move], elapsed: float) -> None:
        """`info depth nodes nps score cp time pv`; depth is the pv's length."""
        from chessbrain_jax.play.player import value_to_centipawns

        nodes, milliseconds = totals.simulations, max(int(elapsed * 1000), 1)
        self.out.send(f"info depth {len(pv)} nodes {nodes} nps {nodes * 1000 // milliseconds} score cp "
                      f"{value_to_centipawns(totals.value)} time {milliseconds} pv "
                      + " ".join(move.uci() for move in pv))

    def game_over(self, outcome: chess.Outcome) -> None:
        self.out.info(f"game over ({outcome.termination.name.lower()}, {outcome.result()}): no move to play")

    def drawn_by_pgx(self) -> None:
        self.out.info("pgx scores this position as drawn (repetition, 50-move rule or 512 plies): playing the "
                      "network's most likely legal move")


class UciEngine:
    """The session: options, the current position, the search in flight. `handle(line)` runs one command in the
    main thread; `go` searches in a worker thread, so `isready`, `stop` and `ponderhit` are answered meanwhile."""

    def __init__(self, player: NetworkPlayer, out: Output, debug: bool = False):
        self.player, self.out, self.debug = player, out, debug
        self.chunks = ChunkSearch(player.apply_fn, player.params, player.config)
        self.positions = PositionStates()
        self.searcher = GoSearch(self.chunks, self.positions)
        self.defaults = SearchSettings(player.simulations, 1, player.config.search)
        self.settings = self.defaults
        self.board = chess.Board()
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
        for work in (lambda: self.chunks.compile(self.settings), lambda: self.positions.state(opening)):
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
                self.chunks.compile(self.settings)
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
            pv = self.searcher.run(board, settings, control, SearchInfo(self.out))
        except Exception as error:
            self._internal_error(error)
            pv = list(board.legal_moves)[:1]  # still a legal answer
        answer = f"bestmove {pv[0].uci() if pv else '0000'}"
        control.answered.set()
        self.out.send(answer + (f" ponder {pv[1].uci()}" if len(pv) > 1 else ""))


def _spin(name: str, value: str, maximum: int) -> int:
    """The integer value of a spin option, checked against [1, `maximum`]."""
    try:
        number = int(value)
    except ValueError:
        number = 0
    if not 1 <= number <= maximum:
        raise UciError(f"setoption {name}: value must be an integer in [1, {maximum}], got {value!r}")
    return number
