"""The UCI engine through real clients: python-chess's engine module, and raw pipes for malformed input.

Each engine process compiles its search tree and pgx step (seconds); both processes share a persistent XLA cache,
so the second one starts in a few seconds. The engines run with Hash 2 (a 292-node tree).
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
import pytest

from chessbrain_jax.play.uci.clock import GoCommand, SearchControl, parse_go
from chessbrain_jax.play.uci.search import _node_limit, _root_move
from tests.conftest import make_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENGINE = [sys.executable, "-m", "chessbrain_jax.uci", "--channels", "8", "--blocks", "1", "--simulations", "8",
          "--hash", "2"]
INFO_LINE = re.compile(r"^info depth (\d+) seldepth \d+ multipv (\d+) score (?:cp|mate) -?\d+(?: wdl \d+ \d+ \d+)? "
                       r"nodes (\d+) nps \d+ hashfull \d+ time \d+ pv ((?:\S+ ?)+)$")
CAPACITY = 292  # nodes of a 2 MiB tree (7,182 bytes a node)
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
    options = engine.options
    assert set(options) >= {"Simulations", "Hash", "MultiPV", "UCI_ShowWDL", "Search"} and "Threads" not in options
    simulations, hash_mb, multipv = options["Simulations"], options["Hash"], options["MultiPV"]
    assert (simulations.type, simulations.default, simulations.min, simulations.max) == ("spin", 8, 1, 100000)
    assert (hash_mb.type, hash_mb.default, hash_mb.min) == ("spin", 2, 1)
    assert (multipv.type, multipv.default, multipv.min, multipv.max) == ("spin", 1, 1, 16)
    assert (options["UCI_ShowWDL"].type, options["UCI_ShowWDL"].default) == ("check", False)
    assert (options["Search"].type, options["Search"].default, options["Search"].var) == (
        "combo", "gumbel", ["gumbel", "puct"])


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


def test_nodes_grow_one_tree_and_analyse_reports_score_and_pv(engine):
    board = _board(moves=tuple(CASTLED))
    for nodes in (8, 20, 100):
        info = engine.analyse(board, chess.engine.Limit(nodes=nodes))
        assert info["nodes"] == nodes  # one tree of exactly the budget
        assert info["score"].relative == chess.engine.Cp(0)  # the untrained value head is zero everywhere
        pv, replay = info["pv"], board.copy()
        assert pv and info["depth"] == len(pv) and info["seldepth"] >= info["depth"]
        for move in pv:
            assert move in replay.legal_moves
            replay.push(move)
    assert info["depth"] >= 2 and info["hashfull"] == 100 * 1000 // (CAPACITY - 1)


def test_a_full_tree_answers_and_says_so(engine):
    result = engine.play(_board(), chess.engine.Limit(nodes=5000), info=chess.engine.INFO_ALL)
    assert result.info["nodes"] == CAPACITY - 1 and result.info["hashfull"] == 1000
    assert result.info["string"].startswith(f"the search tree is full ({CAPACITY} nodes)")


def test_movetime_grows_the_tree_until_the_time_is_spent(engine):
    board = _board()
    started = time.monotonic()
    result = engine.play(board, chess.engine.Limit(time=0.3), info=chess.engine.INFO_ALL)
    elapsed = time.monotonic() - started
    assert result.move in board.legal_moves
    assert result.info["nodes"] > 16  # more than the first step
    assert result.info["time"] <= 0.35 and elapsed < 2.0


def test_clock_budget_is_a_share_of_the_remaining_time(engine):
    board = _board()
    started = time.monotonic()
    limit = chess.engine.Limit(white_clock=6.0, black_clock=6.0, white_inc=0.0, black_inc=0.0)
    assert engine.play(board, limit).move in board.legal_moves
    assert time.monotonic() - started < 6.0 / 30 + 1.0  # remaining / 30 with no movestogo


def test_a_blitz_game_of_clock_searches_answers_legally_within_each_budget(engine):
    """24 plies at 3 s + 50 ms a side, the clocks running down as a GUI would send them: every answer is legal and
    the engine's own `time` stays within the budget docs/uci.md gives (remaining / 30 + increment / 2 - 30 ms)
    plus one step's slack; the wall clock, client round trip included, stays near it."""
    board, clocks = _board(), {chess.WHITE: 3.0, chess.BLACK: 3.0}
    for _ in range(24):
        limit = chess.engine.Limit(white_clock=clocks[chess.WHITE], black_clock=clocks[chess.BLACK],
                                   white_inc=0.05, black_inc=0.05)
        budget = min(clocks[board.turn] / 30 + 0.025, clocks[board.turn] / 2) - 0.03
        started = time.monotonic()
        result = engine.play(board, limit, info=chess.engine.INFO_ALL)
        elapsed = time.monotonic() - started
        assert result.move in board.legal_moves
        assert result.info["time"] <= budget + 0.1 and elapsed < budget + 1.0, (result.info, elapsed, budget)
        clocks[board.turn] += 0.05 - elapsed
        board.push(result.move)
        if board.is_game_over():
            break


def test_multipv_wdl_and_mate_scores(engine):
    board = chess.Board("6k1/5ppp/8/8/8/8/5PPP/R5K1 w - - 0 1")  # a1a8 mates
    engine.configure({"UCI_ShowWDL": True})
    try:
        infos = engine.analyse(board, chess.engine.Limit(mate=1), multipv=3)  # python-chess sets MultiPV itself
    finally:
        engine.configure({"UCI_ShowWDL": False})
    assert [info["multipv"] for info in infos] == [1, 2, 3]
    assert len({info["pv"][0] for info in infos}) == 3 and infos[0]["pv"] == [chess.Move.from_uci("a1a8")]
    assert infos[0]["score"].relative == chess.engine.Mate(1)
    assert infos[0]["wdl"].relative == chess.engine.Wdl(1000, 0, 0)
    assert all(info["score"].relative.mate() is None for info in infos[1:])  # a1a8 is the only mate in one


def test_go_depth_stops_at_a_line_that_long(engine):
    info = engine.analyse(_board(moves=tuple(CASTLED)), chess.engine.Limit(depth=2))
    assert info["depth"] >= 2 and info["nodes"] < CAPACITY - 1


@pytest.mark.parametrize("fen, termination", [
    ("7k/5QQ1/8/8/8/8/8/K7 b - - 0 1", "checkmate"),
    ("7k/5Q2/6K1/8/8/8/8/8 b - - 0 1", "stalemate"),
])
def test_game_over_answers_the_null_move(engine, fen, termination):
    board = chess.Board(fen)
    result = engine.play(board, chess.engine.Limit(nodes=8), info=chess.engine.INFO_ALL)
    assert result.move == chess.Move.null()  # bestmove 0000
    assert result.info["string"].startswith(f"game over ({termination}")


def test_mate_scores_only_where_the_line_ends_in_mate_and_the_value_confirms():
    board = chess.Board("6k1/5ppp/8/8/8/8/5PPP/R5K1 w - - 0 1")
    mate, quiet = [chess.Move.from_uci("a1a8")], [chess.Move.from_uci("a1a2")]
    assert _root_move(board, mate, 10, 1.0).mate == 1
    assert _root_move(board, mate, 10, 0.9).mate is None  # a mate the values do not confirm yet
    assert _root_move(board, quiet, 10, 1.0).mate is None
    mated = chess.Board("6k1/5ppp/8/8/8/8/5PPP/R5K1 b - - 0 1")
    line = [chess.Move.from_uci("g8h8"), chess.Move.from_uci("a1a8")]
    assert _root_move(mated, line, 10, -1.0).mate == -1


@pytest.mark.parametrize("tokens, nps, expected", [
    ("nodes 500", None, 500),
    ("nodes 5000", None, 999),  # no more than the tree holds
    ("movetime 1030", 200.0, 200),  # the time budget at the measured speed
    ("movetime 1030", None, 999),  # speed unknown: plan for the whole tree, the clock still stops it
    ("nodes 50 movetime 1030", 200.0, 50),
    ("depth 3", None, 999),
    ("", None, 8),  # a plain go searches the Simulations option's tree
    ("infinite nodes 50", None, 999),
])
def test_node_limit_plans_the_tree(tokens, nps, expected):
    go, _, _ = parse_go(tokens.split(), chess.Board())
    assert _node_limit(SearchControl(go, time.monotonic()), True, 8, nps, 1000) == expected


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


def test_parse_go_drops_bad_arguments_and_notes_approximate_ones():
    go, errors, notes = parse_go("nodes -5 movetime depth 3 searchmoves e2e4 e2e5 0000 wtime x ponder blah".split(),
                                 chess.Board())
    assert go == GoCommand(ponder=True, depth=3, searchmoves=[chess.Move.from_uci("e2e4")])
    assert errors == ["go nodes: expected a value >= 0, got -5", "go movetime: missing value",
                      "go searchmoves: 'e2e5' is not a legal move here", "go wtime: expected an integer, got 'x'",
                      "go: unknown argument 'blah'"]
    assert notes == ["go depth/mate: the search stops once its principal variation is that long or ends in that "
                     "mate, or at the other limits, or when the tree is full"]


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
                 "setoption name Simulations value -3", "setoption name Threads value 2", "foo", "", "   ", "isready")
        lines = raw.read_until("readyok", "bestmove")
        assert [line for line in lines if line.startswith("info string")] == [
            "info string error: position: invalid FEN 'garbage': expected 8 rows in position part of fen: 'garbage'",
            "info string error: position: move 1 'e2e5' is not legal in "
            "rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP/RNBQKBNR w KQkq - 0 1",
            "info string error: go nodes: expected an integer, got 'abc'",
            "info string error: setoption Simulations: value must be an integer in [1, 100000], got '-3'",
            "info string error: setoption: unknown option 'Threads' (options: Simulations, Hash, MultiPV, "
            "UCI_ShowWDL, Search)",
            "info string error: unknown command 'foo'",
        ]
        _bestmove(lines, chess.Board())  # the rejected positions left the start position in place
        assert [INFO_LINE.match(line).group(3) for line in lines if line.startswith("info depth")][-1] == "8"

        raw.send("position startpos moves e2e4", "go nodes 8")
        lines = raw.read_until("bestmove")
        after_e4 = _board(moves=("e2e4",))
        best = _bestmove(lines, after_e4)
        infos = [INFO_LINE.match(line) for line in lines if line.startswith("info")]
        assert infos[-1].group(3) == "8"  # Simulations is still 8: -3 was rejected
        assert infos[-1].group(4).split()[0] == best.uci()

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


def test_bench_searches_every_position_with_the_nodes_asked(engine, engine_env):
    from chessbrain_jax.play.uci.bench import POSITIONS

    done = subprocess.run(ENGINE + ["--bench", "32"], env=engine_env, cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("position ")]
    assert len(rows) == len(POSITIONS)
    for line, fen in zip(rows, POSITIONS):
        move = chess.Move.from_uci(line.split("bestmove ")[1].split()[0])
        assert ": nodes 32, " in line and move in chess.Board(fen).legal_moves
    assert f"Nodes searched  : {32 * len(POSITIONS)}" in done.stdout
    assert int(done.stdout.split("Nodes/second    : ")[1].split()[0]) > 0


def test_a_search_starts_in_the_smallest_tree_that_fits_and_moves_up_when_it_fills(monkeypatch):
    """With the ladder (64 nodes, then the 292 of Hash 2): `go nodes 40` runs in the 64-node tree; `go infinite`
    starts there too, and when it fills moves into the 292-node tree and grows on (in process, no GUI)."""
    from chessbrain_jax.play import player
    from chessbrain_jax.play.uci import bench, protocol, tree

    monkeypatch.setattr(tree, "LADDER", (64,))
    config = make_config(channels=8, blocks=1, mcts_simulations=8)
    stream = bench._Lines()
    engine = protocol.UciEngine(player.untrained_player(config), protocol.Output(stream), hash_mb=2)
    small, full = tree.ladder(engine.tree_settings(engine.options))
    assert (small.capacity, full.capacity) == (64, CAPACITY)
    for settings in (small, full):
        engine.trees.compile(settings)
    engine.handle("position startpos moves e2e4")
    engine.handle("go nodes 40")
    stream.answered.wait(60)
    assert set(engine.trees.nps) == {small} and " nodes 40 " in stream.lines[-2]
    assert f"hashfull {40 * 1000 // (CAPACITY - 1)} " in stream.lines[-2]  # of the Hash's tree, whatever runs

    stream.lines.clear()
    stream.answered.clear()
    engine.handle("go infinite")
    deadline = time.monotonic() + 60
    while not any(int(line.split(" nodes ")[1].split()[0]) > 100 for line in list(stream.lines)
                  if " nodes " in line) and time.monotonic() < deadline:
        time.sleep(0.05)
    engine.handle("stop")
    stream.answered.wait(60)
    board = chess.Board()
    board.push_uci("e2e4")
    assert chess.Move.from_uci(stream.lines[-1].split()[1]) in board.legal_moves
    nodes = [int(line.split(" nodes ")[1].split()[0]) for line in stream.lines if " nodes " in line]
    assert nodes == sorted(nodes) and 63 in nodes and nodes[-1] > 100  # filled the small tree, grew on in the big
    assert set(engine.trees.nps) == {small, full}
    engine.handle("quit")
