"""Matches between two players, with Elo and PGN (the command line is `chessbrain_jax.arena`).

Players (`parse_player`): a checkpoint step folder, `job:<id>` (its latest checkpoint), `untrained`, `random`,
`greedy`, `minimax` or `stockfish`, each with comma-separated options, e.g. `checkpoints/run_step400,sims=64`,
`job:run,raw`, `minimax,depth=2`, `stockfish,skill=0,depth=1`. Games come in pairs from the same opening with
colours swapped: game 2k has A to move first, game 2k+1 has B. Every ply, A's live games and B's live games each
make one batched device call (pgx states and mctx search for both sides at once); host players (greedy, minimax,
Stockfish) answer per board. python-chess replays every move as
it is played, so an illegal move is impossible to record, and every game is written as PGN.
"""

from __future__ import annotations

import functools
import io
import math
import os
import shutil
import time
from typing import Any, Callable, NamedTuple, Sequence

import chess
import chess.engine
import chess.pgn
import numpy as np

RESULTS = {1.0: "1-0", 0.0: "0-1", 0.5: "1/2-1/2"}


class ArenaError(Exception):
    """A bad player spec, openings file or option: one line for the user."""


# ----------------------------------------------------------------------------------------------------------- Elo
def elo_difference(score: float) -> float:
    """Elo difference for an expected score in (0, 1) under the logistic model: `-400 log10(1/score - 1)`."""
    if score <= 0.0:
        return -math.inf
    if score >= 1.0:
        return math.inf
    return -400.0 * math.log10(1.0 / score - 1.0) + 0.0  # no -0


class Score(NamedTuple):
    """A's result over a match: W/D/L, score in [0, 1], Elo difference with a 95% confidence interval."""

    wins: int
    draws: int
    losses: int
    score: float
    elo: float
    elo_low: float
    elo_high: float

    @property
    def games(self) -> int:
        return self.wins + self.draws + self.losses


def score_match(wins: int, draws: int, losses: int, z: float = 1.959964) -> Score:
    """Score and Elo with its interval: the score's standard error is the per-game standard deviation of
    {1, 1/2, 0} outcomes over sqrt(n); the score interval is mapped through the logistic Elo formula (infinite
    where it reaches 0 or 1)."""
    n = wins + draws + losses
    if n == 0:
        return Score(0, 0, 0, math.nan, math.nan, math.nan, math.nan)
    score = (wins + 0.5 * draws) / n
    variance = (wins * (1 - score) ** 2 + draws * (0.5 - score) ** 2 + losses * score ** 2) / n
    margin = z * math.sqrt(variance / n)
    return Score(wins, draws, losses, score, elo_difference(score),
                 elo_difference(max(score - margin, 0.0)), elo_difference(min(score + margin, 1.0)))


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def format_elo(score: Score) -> str:
    def one(value: float) -> str:
        return f"{value:+.0f}" if math.isfinite(value) else ("+inf" if value > 0 else "-inf")
    return f"{one(score.elo)} [{one(score.elo_low)}, {one(score.elo_high)}]"


# ------------------------------------------------------------------------------------------------------- players
class StockfishPlayer:
    """Stockfish through python-chess's UCI client; one engine process, asked board by board."""

    is_host = True

    def __init__(self, path: str = "stockfish", skill: int | None = 0, nodes: int | None = None,
                 depth: int | None = None, movetime_ms: int | None = None, elo: int | None = None,
                 threads: int = 1, hash_mb: int = 16):
        found = shutil.which(path) or shutil.which(path, path="/usr/games:/usr/local/bin")
        if found is None:
            raise ArenaError(f"stockfish binary {path!r} not found (install it, e.g. apt-get install stockfish, "
                             "or give stockfish,path=/path/to/stockfish)")
        if nodes is None and depth is None and movetime_ms is None:
            nodes = 1000
        try:
            self.engine = chess.engine.SimpleEngine.popen_uci(found)
        except (OSError, chess.engine.EngineError) as error:
            raise ArenaError(f"could not start {found}: {error}") from None
        options: dict[str, Any] = {"Threads": threads, "Hash": hash_mb}
        if skill is not None:
            options["Skill Level"] = skill
        if elo is not None:
            options.update({"UCI_LimitStrength": True, "UCI_Elo": elo})
        try:
            self.engine.configure(options)
        except chess.engine.EngineError as error:
            self.engine.quit()
            raise ArenaError(f"stockfish rejected its options: {error}") from None
        self.limit = chess.engine.Limit(nodes=nodes, depth=depth,
                                        time=movetime_ms / 1000 if movetime_ms is not None else None)
        version = self.engine.id.get("name", "Stockfish")
        limits = ", ".join(f"{k}={v}" for k, v in (("skill", skill), ("elo", elo), ("nodes", nodes),
                                                   ("depth", depth), ("movetime_ms", movetime_ms)) if v is not None)
        self.name, self.description = version, f"{version} ({limits})"

    def move(self, board: chess.Board) -> chess.Move:
        return self.engine.play(board, self.limit).move

    def close(self) -> None:
        self.engine.quit()


def _options(text: str) -> tuple[str, dict[str, str]]:
    kind, *rest = text.split(",")
    options = {}
    for item in rest:
        name, _, value = item.partition("=")
        options[name.strip().lower()] = value.strip()
    return kind.strip(), options


def _number(options: dict[str, str], name: str, spec: str, minimum: int = 0, kind: type = int):
    """Pops option `name` as a `kind` (int or float) >= `minimum`; None when absent; one-line ArenaError if bad."""
    if name not in options:
        return None
    try:
        value = kind(options.pop(name))
    except ValueError:
        raise ArenaError(f"player {spec!r}: {name} must be {'an integer' if kind is int else 'a number'}") from None
    if not value >= minimum:
        raise ArenaError(f"player {spec!r}: {name} must be >= {minimum}, got {value}")
    return value


def _flag(options: dict[str, str], name: str, spec: str) -> bool | None:
    """Pops option `name` as a boolean (1/0, true/false); None when absent; one-line ArenaError if bad."""
    if name not in options:
        return None
    value = options.pop(name).lower()
    if value not in ("1", "0", "true", "false"):
        raise ArenaError(f"player {spec!r}: {name} must be 1 or 0, got {value!r}")
    return value in ("1", "true")


def parse_player(spec: str, checkpoint_dir: str = "./checkpoints", simulations: int | None = None,
                 search: str | None = None):
    """A player from a spec string (see the module docstring); `simulations`/`search` are defaults for networks.

    Network options: `sims=N` (0 = raw policy), `raw`, `search=gumbel|puct`, `considered=K` (Gumbel's root moves
    in sequential halving; default: the network's training setting), `cscale=C` (Gumbel's c_scale, how far a
    searched value overrules the prior: `--gumbel-value-scale`; default: the training setting), `mleffect=E`
    (a network with a moves-left head: `--moves-left-effect`, 0 = the search ignores the head), `mates=1|0`
    (`--play-searched-mates`: play a mate in one the search visited; default: the training setting), `trees=T` (T
    independent trees of N each, their search policies summed: the UCI engine's old search); `untrained` also
    takes `channels=`, `blocks=`, `seed=`. `greedy` and `minimax` (`opponents`) take `seed=`, minimax also
    `depth=` (default 2).
    Stockfish options: `skill=` (default 0), `nodes=` (default 1000 unless depth/movetime), `depth=`, `movetime=`
    (ms), `elo=` (its `UCI_LimitStrength` floor is 1350 in Stockfish 15), `threads=`, `path=`.
    """
    from chessbrain_jax.config import ConfigError, load_config
    from chessbrain_jax.play import opponents
    from chessbrain_jax.play import player as players
    from chessbrain_jax.storage.checkpoint import CheckpointError

    kind, options = _options(spec)
    if kind == "random":
        made: Any = players.RandomPlayer()
    elif kind == "greedy":
        made = opponents.GreedyPlayer(seed=_number(options, "seed", spec) or 0)
    elif kind == "minimax":
        depth = _number(options, "depth", spec, 1)
        made = opponents.MinimaxPlayer(depth=2 if depth is None else depth, seed=_number(options, "seed", spec) or 0)
    elif kind == "stockfish":
        made = StockfishPlayer(path=options.pop("path", "stockfish"),
                               skill=_number(options, "skill", spec) if "skill" in options else 0,
                               nodes=_number(options, "nodes", spec, 1), depth=_number(options, "depth", spec, 1),
                               movetime_ms=_number(options, "movetime", spec, 1), elo=_number(options, "elo", spec, 1),
                               threads=_number(options, "threads", spec, 1) or 1)
    else:
        sims = simulations
        if options.pop("raw", None) is not None:
            sims = 0
        sims = _number(options, "sims", spec) if "sims" in options else sims
        algorithm = options.pop("search", search)
        search_options = {"search": algorithm, "considered": _number(options, "considered", spec, 2),
                          "value_scale": _number(options, "cscale", spec, kind=float),
                          "moves_left_effect": _number(options, "mleffect", spec, kind=float),
                          "mates": _flag(options, "mates", spec),
                          "trees": _number(options, "trees", spec, 1) or 1}
        try:
            if kind == "untrained":
                argv = []
                for name in ("channels", "blocks", "seed"):
                    value = _number(options, name, spec, 1 if name != "seed" else 0)
                    if value is not None:
                        argv += [f"--{name}", str(value)]
                made = players.untrained_player(load_config(argv, environ={})[0], sims, **search_options)
            elif kind.startswith("job:"):
                made = players.load_player(kind[4:], checkpoint_dir=checkpoint_dir, simulations=sims,
                                           **search_options)
            else:
                made = players.load_player(kind, simulations=sims, **search_options)
        except (CheckpointError, ConfigError) as error:
            raise ArenaError(f"player {spec!r}: {error}") from None
    if options:
        made_close = getattr(made, "close", None)
        if made_close:
            made_close()
        raise ArenaError(f"player {spec!r}: unknown option(s) {', '.join(sorted(options))}")
    return made


def describe(player) -> str:
    return getattr(player, "description", player.name)


# ------------------------------------------------------------------------------------------------------ openings
def read_openings(path: str) -> list[chess.Board]:
    """Opening positions from a file of FEN or EPD lines (`notation.read_positions`)."""
    from chessbrain_jax.play.notation import read_positions

    try:
        return read_positions(path, "openings file")
    except ValueError as error:
        raise ArenaError(str(error)) from None


# --------------------------------------------------------------------------------------------------------- games
class Game(NamedTuple):
    """One finished game: the python-chess board (root = opening, move stack = the game), result for white
    (1, 0.5, 0), PGN termination ("normal" or "adjudication") and why."""

    board: chess.Board
    white: str
    black: str
    a_is_white: bool
    result: float
    termination: str
    reason: str


def _draw_reason(board: chess.Board) -> str:
    if board.is_stalemate():
        return "stalemate"
    if board.is_insufficient_material():
        return "insufficient material"
    if board.is_repetition(3):
        return "threefold repetition"
    if board.halfmove_clock >= 100:
        return "fifty-move rule"
    return "pgx's 512-ply limit"


def to_pgn(game: Game, event: str, round_number: int) -> str:
    pgn = chess.pgn.Game.from_board(game.board)
    pgn.headers.update({
        "Event": event, "Site": "chessbrain_jax arena", "Date": time.strftime("%Y.%m.%d"),
        "Round": str(round_number), "White": game.white, "Black": game.black, "Result": RESULTS[game.result],
        "Termination": game.termination, "TerminationDetail": game.reason, "PlyCount": str(len(game.board.move_stack)),
    })
    return str(pgn) + "\n\n"


def _random_opening(board: chess.Board, plies: int, rng: np.random.Generator) -> chess.Board:
    board = board.copy()
    for _ in range(plies):
        moves = list(board.legal_moves)
        if board.is_game_over(claim_draw=True) or not moves:
            break
        board.push(moves[rng.integers(len(moves))])
    return board


@functools.cache
def _jitted():
    """The arena's two device functions, compiled once per process (evaluation during training calls play_match
    repeatedly): a batched env step with the mover's reward, and a gather of a subset of games."""
    import jax

    from chessbrain_jax.core import chess_env

    def step(states, actions):
        after = chess_env.step(states, actions)
        return after, chess_env.mover_reward(states, after)

    return jax.jit(step), jax.jit(lambda states, index: jax.tree.map(lambda leaf: leaf[index], states))


def _step(states, actions):
    return _jitted()[0](states, actions)


def _take(states, index):
    return _jitted()[1](states, index)


def play_match(player_a, player_b, games: int, openings: Sequence[chess.Board] | None = None,
               opening_plies: int = 0, max_plies: int = 512, seed: int = 0,
               progress: Callable[[int, int], None] | None = None) -> list[Game]:
    """Plays `games` games between A and B and returns them in order (game 2k: A moves first from opening k).

    Every ply, A's live games and B's live games each get one batched call (a host player, such as Stockfish,
    answers per board); python-chess replays every move, so no illegal move can be recorded."""
    import jax

    from chessbrain_jax.play import notation

    if games < 1:
        raise ArenaError(f"--games must be >= 1, got {games}")
    rng = np.random.default_rng(seed)
    key = jax.random.PRNGKey(seed)
    openings = list(openings) if openings else [chess.Board()]
    starts = [_random_opening(openings[pair % len(openings)], opening_plies, rng) for pair in range((games + 1) // 2)]
    boards = [starts[i // 2].copy() for i in range(games)]
    first_states = [notation.board_to_state(board) for board in starts]
    states = notation.stack_states([first_states[i // 2] for i in range(games)])
    done = np.zeros(games, bool)
    results: list[tuple[float, str, str] | None] = [None] * games
    for ply in range(max_plies):
        if done.all():
            break
        actions, key = _choose_actions((player_a, player_b) if ply % 2 == 0 else (player_b, player_a), states,
                                       boards, done, key)
        states, reward = _step(states, jax.numpy.asarray(actions))
        _record_ply(boards, actions, done, results, *jax.device_get((states.terminated, reward)))
        if progress is not None:
            progress(int(done.sum()), games)
    return [_finished(board, starts[i // 2], i, results[i], player_a, player_b, max_plies)
            for i, board in enumerate(boards)]


def search_batch(live: int, games: int) -> int:
    """How many games a device player's call searches when `live` of its `games` are still running: the smallest
    power of two that holds them, or all `games` where that is fewer. Finished games are not searched (a match's
    longest game would otherwise keep every finished one searched to the end), and the few sizes bound how often
    the search compiles (log2(games) + 1 shapes)."""
    return min(1 << max(live - 1, 0).bit_length(), games)


def _choose_actions(movers, states, boards: list[chess.Board], done: np.ndarray, key):
    """(`i32[games]` this ply's pgx actions, the next RNG key): `movers[0]` moves in the even-numbered games,
    `movers[1]` in the odd ones (whoever moves first in a game moves on even plies); finished games get a 0.
    A device player searches its live games only, padded to `search_batch` with copies of the first."""
    import jax

    from chessbrain_jax.play import notation

    games = len(boards)
    actions = np.zeros(games, np.int32)
    for parity, mover in enumerate(movers):
        index = np.arange(parity, games, 2)
        live = index[~done[index]]
        if not len(live):
            continue
        if getattr(mover, "is_host", False):
            for i in live:
                actions[i] = notation.move_to_action(boards[i], mover.move(boards[i]))
        else:
            key, subkey = jax.random.split(key)
            padded = np.concatenate([live, np.full(search_batch(len(live), len(index)) - len(live), live[0])])
            actions[live] = np.asarray(mover.actions(subkey, _take(states, padded)))[:len(live)]
    return actions, key


def _record_ply(boards: list[chess.Board], actions: np.ndarray, done: np.ndarray, results: list,
                terminated: np.ndarray, reward: np.ndarray) -> None:
    """Pushes each live game's move on its board (checked legal), and scores the games pgx ended."""
    from chessbrain_jax.play import notation

    for i in np.flatnonzero(~done):
        board = boards[i]
        move = notation.action_to_move(board, int(actions[i]))
        if move not in board.legal_moves:
            raise RuntimeError(f"internal error: illegal move {move.uci()} in {board.fen()}")
        mover_white = board.turn == chess.WHITE
        board.push(move)
        if not terminated[i]:
            continue
        done[i] = True
        if reward[i] > 0:
            if not board.is_checkmate():
                raise RuntimeError(f"internal error: pgx scored a win without checkmate in {board.fen()}")
            results[i] = (1.0 if mover_white else 0.0, "normal", "checkmate")
        else:
            reason = _draw_reason(board)
            results[i] = (0.5, "adjudication" if reason.startswith("pgx") else "normal", reason)


def _finished(board: chess.Board, start: chess.Board, index: int, result, player_a, player_b,
              max_plies: int) -> Game:
    """Game `index` as played (a game still running at `max_plies` is a draw by adjudication)."""
    a_white = (index % 2 == 0) == (start.turn == chess.WHITE)
    result = result or (0.5, "adjudication", f"ply limit {max_plies}")
    names = (describe(player_a), describe(player_b))
    return Game(board, *(names if a_white else names[::-1]), a_white, *result)


def summarise(games: Sequence[Game]) -> dict[str, Any]:
    """A's W/D/L, score and Elo overall and by colour, termination counts and mean game length."""
    def tally(subset):
        points = [g.result if g.a_is_white else 1.0 - g.result for g in subset]
        return score_match(points.count(1.0), points.count(0.5), points.count(0.0))

    def as_dict(score: Score) -> dict[str, Any]:
        return {"games": score.games, "wins": score.wins, "draws": score.draws, "losses": score.losses,
                "score": _finite(score.score), "elo": _finite(score.elo), "elo_low": _finite(score.elo_low),
                "elo_high": _finite(score.elo_high), "elo_text": format_elo(score)}

    overall = tally(games)
    reasons: dict[str, int] = {}
    for game in games:
        reasons[game.reason] = reasons.get(game.reason, 0) + 1
    return {**as_dict(overall),
            "as_white": as_dict(tally([g for g in games if g.a_is_white])),
            "as_black": as_dict(tally([g for g in games if not g.a_is_white])),
            "terminations": reasons,
            "mean_plies": float(np.mean([len(g.board.move_stack) for g in games])) if games else None}


def write_pgn(path: str, games: Sequence[Game], event: str) -> None:
    """All games to one PGN file, written to a temporary name and renamed so a crash never leaves half a file."""
    text = io.StringIO()
    for number, game in enumerate(games, 1):
        text.write(to_pgn(game, event, number))
    from chessbrain_jax.storage.metrics import write_text_atomically

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_text_atomically(path, text.getvalue())
