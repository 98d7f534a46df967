"""The UCI engine through real clients: python-chess's engine module, and raw pipes for malformed input.

Each engine process compiles its search chunk and pgx step (seconds); both processes share a persistent XLA cache,
so the second one starts in a few seconds.
"""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
import time

import chess
import chess.engine
import numpy as np
import pytest

from chessbrain_jax.core.types import NUM_ACTIONS
from chessbrain_jax.play import notation
from chessbrain_jax.play.uci.chunks import PV_LENGTH, ChunkResult
from chessbrain_jax.play.uci.clock import GoCommand, parse_go
from chessbrain_jax.play.uci.search import SearchTotals

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENGINE = [sys.executable, "-m", "chessbrain_jax.uci", "--channels", "8", "--blocks", "1", "--simulations", "8"]
INFO_LINE = re.compile(r"^info depth (\d+) nodes (\d+) nps \d+ score cp (-?\d+) time \d+ pv ((?:\S+ ?)+)$")
CASTLED = "e2e4 e7e5 g1f3 b8c6 f1c4 g8f6 e1g1".split()


@pytest.fixture(scope="module")
def engine_env(tmp_path_factory) -> dict[str, str]:
    cache = tmp_path_factory.mktemp("xla-cache")
    return dict(os.environ, JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=str(cache),
                JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")


@pytest.fixture(scope="module")
def engine(engine_env):
    engine = chess.engine.SimpleEngine.popen_uci(ENGINE, timeout=300, env=engine_env, cwd=REPO)
    engine.ping()  # isready: waits for the start-up compiles
    yield engine
    engine.quit()


def test_identifies_itself_and_its_options(engine):
    assert engine.id == {"name": "chessbrain_jax untrained", "author": "chessbrain_jax developers"}
    simulations, threads, search = engine.options["Simulations"], engine.options["Threads"], engine.options["Search"]
    assert (simulations.type, simulations.default, simulations.min, simulations.max) == ("spin", 8, 1, 100000)
    assert (threads.type, threads.default, threads.min) == ("spin", 1, 1)
    assert (search.type, search.default, search.var) == ("combo", "gumbel", ["gumbel", "puct"])


def _board(fen: str = chess.STARTING_FEN, moves: tuple[str, ...] = ()) -> chess.Board:
    board = chess.Board(fen)
    for move in moves:
        board.push_uci(move)
    return board


@pytest.mark.parametrize("board, expected", [
    (_board(), None),
    (_board("r1bqkb1r/pppp1ppp/2n2n2/4p3/2B1P3/5N2/PPPP1PPP/RNBQK2R w KQkq - 4 4"), None),
    (_board(moves=tuple(CASTLED)), None),  # black to move after white castled
    # After h7h8q black is in check along the eighth rank: only the king's two flights are legal. A knight or a
    # missed promotion would leave a8b8 legal too.
    (_board("k7/7P/8/8/8/8/8/K7 w - - 0 1", ("h7h8q",)), {"a8a7", "a8b7"}),
    (_board("4k3/8/8/3pP3/8/8/8/4K3 w - d6 0 2"), None),  # en passant e5d6 is legal
], ids=["startpos", "fen", "castled", "promoted", "en-passant"])
def test_plays_a_legal_move(engine, board, expected):
    result = engine.play(board, chess.engine.Limit(nodes=16))
    assert result.move in board.legal_moves
    if expected is not None:
        assert {move.uci() for move in board.legal_moves} == expected and result.move.uci() in expected


def test_searchmoves_restricts_the_root(engine):
    board = _board()
    allowed = [chess.Move.from_uci("a2a3"), chess.Move.from_uci("h2h4")]
    for _ in range(3):
        assert engine.play(board, chess.engine.Limit(nodes=8), root_moves=allowed).move in allowed


def test_nodes_run_whole_chunks_and_analyse_reports_score_and_pv(engine):
    board = _board(moves=tuple(CASTLED))
    for nodes, expected in ((8, 8), (16, 16), (20, 24)):  # ceil(nodes / 8) chunks of 8 simulations
        info = engine.analyse(board, chess.engine.Limit(nodes=nodes))
        assert info["nodes"] == expected
        assert info["score"].relative == chess.engine.Cp(0)  # the untrained value head is zero everywhere
        pv, replay = info["pv"], board.copy()
        assert pv and info["depth"] == len(pv)
        for move in pv:
            assert move in replay.legal_moves
            replay.push(move)


def test_movetime_runs_chunks_until_the_time_is_spent(engine):
    board = _board()
    started = time.monotonic()
    result = engine.play(board, chess.engine.Limit(time=0.5), info=chess.engine.INFO_ALL)
    elapsed = time.monotonic() - started
    assert result.move in board.legal_moves
    assert result.info["nodes"] > 8 and result.info["nodes"] % 8 == 0  # more than the one chunk every go runs
    assert result.info["time"] <= 0.5 and elapsed < 2.0


def test_clock_budget_is_a_share_of_the_remaining_time(engine):
    board = _board()
    started = time.monotonic()
    limit = chess.engine.Limit(white_clock=6.0, black_clock=6.0, white_inc=0.0, black_inc=0.0)
    assert engine.play(board, limit).move in board.legal_moves
    assert time.monotonic() - started < 6.0 / 30 + 1.0  # remaining / 30 with no movestogo


@pytest.mark.parametrize("fen, termination", [
    ("7k/5QQ1/8/8/8/8/8/K7 b - - 0 1", "checkmate"),
    ("7k/5Q2/6K1/8/8/8/8/8 b - - 0 1", "stalemate"),
])
def test_game_over_answers_the_null_move(engine, fen, termination):
    board = chess.Board(fen)
    result = engine.play(board, chess.engine.Limit(nodes=8), info=chess.engine.INFO_ALL)
    assert result.move == chess.Move.null()  # bestmove 0000
    assert result.info["string"].startswith(f"game over ({termination}")


def test_threads_search_independent_trees_in_one_chunk(engine):
    board = _board(moves=tuple(CASTLED))
    engine.configure({"Threads": 2})
    try:
        for nodes, expected in ((8, 16), (24, 32)):  # chunks of 2 trees x 8 simulations
            info = engine.analyse(board, chess.engine.Limit(nodes=nodes))
            assert info["nodes"] == expected and info["pv"][0] in board.legal_moves
    finally:
        engine.configure({"Threads": 1})


def _actions(board: chess.Board, *moves: str) -> list[int]:
    actions = []
    for move in moves:
        actions.append(notation.move_to_action(board, chess.Move.from_uci(move)))
        board = _board(board.fen(), (move,))
    return actions


def _chunk(choices: list[int], weights: dict[int, list[float]], values: list[float],
           lines: list[list[int]]) -> ChunkResult:
    """A `ChunkResult` of len(choices) trees; `weights` maps actions to per-tree weights, `lines[t]` is tree t's PV."""
    trees = len(choices)
    dense = np.zeros((trees, NUM_ACTIONS), np.float32)
    for action, per_tree in weights.items():
        dense[:, action] = per_tree
    pv = np.full((trees, 2, PV_LENGTH), -1, np.int32)
    for tree, line in enumerate(lines):
        pv[tree, 0, :len(line)] = line
    return ChunkResult(np.array(choices, np.int32), dense, np.array(values, np.float32), pv,
                       np.zeros(NUM_ACTIONS, np.float32))


def test_trees_and_chunks_are_combined_by_summing_over_legal_moves():
    board = chess.Board()
    e4, e5, nf3 = _actions(board, "e2e4", "e7e5", "g1f3")
    d4, d5 = _actions(board, "d2d4", "d7d5")
    illegal = notation.move_to_action(board, chess.Move.from_uci("e2e5"))
    # Tree 0 prefers e4 and tree 1 d4; summed, d4 wins (1.2 against 0.7). The illegal weight never counts.
    chunk = _chunk([e4, d4], {e4: [0.6, 0.1], d4: [0.4, 0.8], illegal: [9.0, 9.0]}, [0.2, 0.4],
                   [[e4, e5, nf3], [d4, d5]])
    totals = SearchTotals(board, list(board.legal_moves), "gumbel")
    totals.add(chunk, simulations=8)
    assert (totals.trees, totals.simulations) == (2, 16) and totals.value == pytest.approx(0.3)
    assert totals.best_action() == d4
    assert [move.uci() for move in totals.principal_variation()] == ["d2d4", "d7d5"]
    totals.add(_chunk([e4], {e4: [1.0]}, [0.0], [[e4, e5, nf3]]), simulations=8)  # a second chunk: e4 1.7 > 1.2
    assert totals.best_action() == e4 and totals.simulations == 24 and totals.value == pytest.approx(0.2)
    assert [move.uci() for move in totals.principal_variation()] == ["e2e4", "e7e5", "g1f3"]

    # One Gumbel tree plays the move its sequential halving chose; PUCT the most visited one.
    single = _chunk([e4], {e4: [0.3], d4: [0.7]}, [0.0], [[e4]])
    gumbel, puct = (SearchTotals(board, list(board.legal_moves), search) for search in ("gumbel", "puct"))
    gumbel.add(single, 8)
    puct.add(single._replace(action=np.array([d4], np.int32)), 8)
    assert gumbel.best_action() == e4 and puct.best_action() == d4
    # With searchmoves only the allowed moves compete.
    restricted = SearchTotals(board, [chess.Move.from_uci("a2a3"), chess.Move.from_uci("e2e4")], "puct")
    restricted.add(_chunk([d4], {e4: [0.2], d4: [0.8]}, [0.0], [[d4]]), 8)
    assert restricted.best_action() == e4


@pytest.mark.parametrize("tokens, white, seconds", [
    ("movetime 1000", True, 0.97),
    ("wtime 60000 btime 1000 winc 1000 binc 0", True, 2.47),  # 60000 / 30 + 1000 / 2, less 30 ms overhead
    ("wtime 60000 btime 1000 winc 1000 binc 0", False, (1000 / 30 - 30) / 1000),
    ("wtime 1000 btime 1000 movestogo 1", True, 0.47),  # at most half the clock
    ("wtime -50 btime 1000", True, 0.0),  # a clock overrun
    ("nodes 100", True, None),
    ("infinite", True, None),
])
def test_time_budget(tokens, white, seconds):
    go, errors, notes = parse_go(tokens.split(), chess.Board())
    assert errors == [] and notes == []
    budget = go.budget_seconds(white)
    assert budget == pytest.approx(seconds) if seconds is not None else budget is None


def test_parse_go_drops_bad_arguments_and_notes_unsupported_ones():
    go, errors, notes = parse_go("nodes -5 movetime depth 3 searchmoves e2e4 e2e5 0000 wtime x ponder blah".split(),
                                 chess.Board())
    assert go == GoCommand(ponder=True, searchmoves=[chess.Move.from_uci("e2e4")])
    assert errors == ["go nodes: expected a value >= 0, got -5", "go movetime: missing value",
                      "go searchmoves: 'e2e5' is not a legal move here", "go wtime: expected an integer, got 'x'",
                      "go: unknown argument 'blah'"]
    assert notes == ["go depth is not supported and is ignored; the other limits apply"]


class RawEngine:
    """An engine process on raw pipes; a reader thread queues its stdout lines."""

    def __init__(self, env: dict[str, str], stderr_path):
        self.stderr = open(stderr_path, "w")
        self.process = subprocess.Popen(ENGINE, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr,
                                        text=True, bufsize=1, env=env, cwd=REPO)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def send(self, *lines: str) -> None:
        self.process.stdin.write("".join(line + "\n" for line in lines))
        self.process.stdin.flush()

    def read_until(self, *wanted: str, timeout: float = 120) -> list[str]:
        """Lines up to and including the last of the `wanted` prefixes (each seen at least once)."""
        seen, missing, deadline = [], list(wanted), time.monotonic() + timeout
        while missing:
            line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            seen.append(line)
            missing = [prefix for prefix in missing if not any(s.startswith(prefix) for s in seen)]
        return seen


def _bestmove(lines: list[str], board: chess.Board) -> chess.Move:
    answers = [line for line in lines if line.startswith("bestmove ")]
    assert len(answers) == 1, lines
    move = chess.Move.from_uci(answers[0].split()[1])
    assert move in board.legal_moves
    return move


def test_raw_session_survives_malformed_input(engine_env, tmp_path):
    raw = RawEngine(engine_env, tmp_path / "stderr.txt")
    try:
        raw.send("uci", "isready")
        raw.read_until("uciok", "readyok")
        raw.send("position fen garbage", "position startpos moves e2e5", "go nodes abc",
                 "setoption name Simulations value -3", "setoption name Hash value 16", "foo", "", "   ", "isready")
        lines = raw.read_until("readyok", "bestmove")
        assert [line for line in lines if line.startswith("info string")] == [
            "info string error: position: invalid FEN 'garbage': expected 8 rows in position part of fen: 'garbage'",
            "info string error: position: move 1 'e2e5' is not legal in "
            "rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP/RNBQKBNR w KQkq - 0 1",
            "info string error: go nodes: expected an integer, got 'abc'",
            "info string error: setoption Simulations: value must be an integer in [1, 100000], got '-3'",
            "info string error: setoption: unknown option 'Hash' (options: Simulations, Threads, Search)",
            "info string error: unknown command 'foo'",
        ]
        _bestmove(lines, chess.Board())  # the rejected positions left the start position in place
        assert [INFO_LINE.match(line).group(2) for line in lines if line.startswith("info depth")] == ["8"]

        raw.send("position startpos moves e2e4", "go nodes 8")
        lines = raw.read_until("bestmove")
        after_e4 = _board(moves=("e2e4",))
        best = _bestmove(lines, after_e4)
        infos = [INFO_LINE.match(line) for line in lines if line.startswith("info")]
        assert len(infos) == 1 and infos[0].group(2) == "8"  # Simulations is still 8: -3 was rejected
        assert infos[0].group(4).split()[0] == best.uci()

        raw.send("go infinite")
        time.sleep(1.0)
        raw.send("isready")
        lines = raw.read_until("readyok")
        assert not any(line.startswith("bestmove") for line in lines)  # infinite waits for stop
        assert sum(line.startswith("info depth") for line in lines) >= 1
        raw.send("stop")
        _bestmove(raw.read_until("bestmove", timeout=10), after_e4)

        raw.send("quit")
        assert raw.process.wait(timeout=30) == 0
    finally:
        if raw.process.poll() is None:
            raw.process.kill()
        raw.stderr.close()
    assert "Traceback" not in (tmp_path / "stderr.txt").read_text()


@pytest.mark.parametrize("arguments, message", [
    (["--checkpoint", "{tmp}/nothing_step3"], "checkpoint {tmp}/nothing_step3 does not exist"),
    (["--checkpoint", "{tmp}"], "{tmp} is not a checkpoint folder (expected <checkpoint-dir>/<job-id>_step<N>)"),
    (["--checkpoint-dir", "{tmp}"], "--checkpoint-dir and --job go together"),
], ids=["missing", "not-a-checkpoint", "dir-without-job"])
def test_bad_checkpoint_is_one_line_and_exit_status_2(tmp_path, arguments, message):
    arguments = [argument.format(tmp=tmp_path) for argument in arguments]
    done = subprocess.run([sys.executable, "-m", "chessbrain_jax.uci", *arguments], capture_output=True, text=True,
                          env=dict(os.environ, JAX_PLATFORMS="cpu"), cwd=REPO, timeout=120, input="uci\n")
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [f"chessbrain_jax.uci: error: {message.format(tmp=tmp_path)}"]
