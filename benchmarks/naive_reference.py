"""The old pipeline's self-play design, re-implemented as the baseline the batched design is measured against.

    python -m benchmarks.naive_reference --channels 64 --blocks 6 --simulations 32 --moves 20 [--json]

As the old `AlphaZeroMCTS` did: python-chess boards are the game state, a Python PUCT search runs on the host, and
every leaf it expands costs one network call on a batch of one board. The network is the package's own
(`model.make_network(config, "float32")`) behind one `jax.jit`-compiled apply, so the two designs differ only in how
they call it. Games are played one after another; after each search the most visited move is played (sampled by
visit count for the first `temperature_plies` plies).

The network input is pgx's observation, `f32[8, 8, 119]`, built on the host in numpy from the python-chess boards of
the game and of the search path: the same array `notation.board_to_state(board).observation` gives (tested), at a
few tens of microseconds instead of one jitted pgx step per expansion (about half a network call on the CPU).
Games end by pgx's rules (checkmate, stalemate, insufficient material, fifty
moves, threefold repetition by pgx's position keys, `config.max_plies`).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import functools
import json
import math
import time
from typing import Callable, Hashable, NamedTuple, Sequence

import chess
import jax
import numpy as np

from chessbrain_jax.config import Config, load_config
from chessbrain_jax.core import model
from chessbrain_jax.play import notation

HISTORY_STEPS = 8
PLANES_PER_STEP = 14  # 6 own pieces, 6 opponent pieces, 2 repetition planes
MAX_TERMINATION_STEPS = 512  # pgx's ply-count scale for the move-count plane


class Position(NamedTuple):
    """One position of a game's history.

    pieces: `u8[8, 8, 12]` pieces in pgx's observation layout from white's side (row 0 = rank 8, column = file),
        planes: white pawn, knight, bishop, rook, queen, king, then black's.
    key: what pgx's Zobrist hash tells apart (pieces, side to move, castling rights, en passant square as set after
        every double pawn push), for the repetition planes.
    """

    pieces: np.ndarray
    key: Hashable


def position(board: chess.Board, root: bool = False) -> Position:
    """The `Position` of `board`. A game's `root` keeps its en passant square only when a capture is legal, as
    pgx's FEN parser receives it; later positions keep it after every double pawn push, as pgx's step sets it."""
    masks = np.array([board.pieces_mask(piece, colour) for colour in chess.COLORS for piece in chess.PIECE_TYPES],
                     dtype="<u8")
    squares = np.unpackbits(masks.view(np.uint8).reshape(12, 8), axis=1, bitorder="little")  # [12, 64] a1..h8
    pieces = squares.reshape(12, 8, 8)[:, ::-1, :].transpose(1, 2, 0)
    en_passant = None if root and not board.has_legal_en_passant() else board.ep_square
    key = (board.occupied_co[chess.WHITE], board.occupied_co[chess.BLACK], board.pawns, board.knights, board.bishops,
           board.rooks, board.queens, board.kings, board.turn, board.clean_castling_rights(), en_passant)
    return Position(np.ascontiguousarray(pieces), key)


def game_history(board: chess.Board) -> list[Position]:
    """Positions of `board`'s game, oldest first, as `notation.board_to_state` builds them: the FEN root (with a
    legal en passant square only; nothing before it), then one per move."""
    replay = board.root()
    history = [position(replay, root=True)]
    for move in board.move_stack:
        replay.push(move)
        history.append(position(replay))
    return history


def observation(recent: Sequence[Position], occurrences: Callable[[Hashable], int], board: chess.Board) -> np.ndarray:
    """pgx's observation `f32[8, 8, 119]` of `board`.

    recent: the last (up to 8) positions of the game, oldest first, ending with `board`'s;
    occurrences: how often a position key occurs in the whole game so far (pgx counts the later ones too).
    Planes per history step (newest first): own pieces, opponent pieces, repeated never/at least once; then colour,
    plies since the root / 512, castling rights (own queen/king side, opponent's), halfmove clock / 100.
    """
    white = board.turn == chess.WHITE
    planes = np.zeros((8, 8, HISTORY_STEPS * PLANES_PER_STEP + 7), np.float32)
    for step in range(HISTORY_STEPS):
        offset = step * PLANES_PER_STEP
        if step >= len(recent):
            planes[:, :, offset + 12] = 1.0  # an empty history step reads as "not repeated"
            continue
        past = recent[-1 - step]
        if white:
            planes[:, :, offset:offset + 12] = past.pieces
        else:  # pgx shows black's own pieces first, with the board mirrored top to bottom
            planes[:, :, offset:offset + 6] = past.pieces[::-1, :, 6:]
            planes[:, :, offset + 6:offset + 12] = past.pieces[::-1, :, :6]
        repeated = occurrences(past.key) > 1
        planes[:, :, offset + 12 + repeated] = 1.0
    own, other = (chess.WHITE, chess.BLACK) if white else (chess.BLACK, chess.WHITE)
    scalars = [0.0 if white else 1.0, np.float32(len(board.move_stack)) / np.float32(MAX_TERMINATION_STEPS),
               board.has_queenside_castling_rights(own), board.has_kingside_castling_rights(own),
               board.has_queenside_castling_rights(other), board.has_kingside_castling_rights(other),
               np.float32(board.halfmove_clock) * np.float32(1 / 100)]  # XLA's rounding of pgx's `/ 100.0`
    planes[:, :, HISTORY_STEPS * PLANES_PER_STEP:] = np.asarray(scalars, np.float32)
    return planes


def terminal_value(board: chess.Board, legal_moves: list[chess.Move], repetitions: int) -> float | None:
    """The game result for the side to move (-1 mated, 0 drawn) by pgx's rules, or None while the game goes on.
    `repetitions`: earlier occurrences of the position."""
    if not legal_moves:
        return -1.0 if board.is_check() else 0.0
    if board.halfmove_clock >= 100 or repetitions >= 2 or board.is_insufficient_material():
        return 0.0
    return None


@dataclasses.dataclass
class Timings:
    """Host time spent by category: the network (call and read-back) and building its input."""

    network_s: float = 0.0
    encoding_s: float = 0.0
    network_calls: int = 0


@functools.lru_cache(maxsize=None)
def _compiled_apply(network: model.ChessNet):
    """One jitted apply per network architecture, shared by every `Evaluator` (compiled once per process)."""
    return jax.jit(model.make_apply(network))


class Evaluator:
    """The network on one board: `f32[8, 8, 119]` -> (logits `f32[4672]`, value for the side to move), one jitted
    call on an `f32[1, 8, 8, 119]` batch each."""

    def __init__(self, config: Config, params, timings: Timings | None = None):
        self.apply = _compiled_apply(model.make_network(config, "float32"))
        self.params = params
        self.timings = timings if timings is not None else Timings()

    def __call__(self, planes: np.ndarray) -> tuple[np.ndarray, float]:
        start = time.perf_counter()
        logits, value = self.apply(self.params, planes[None])
        logits, value = np.asarray(logits)[0], float(np.asarray(value)[0])
        self.timings.network_s += time.perf_counter() - start
        self.timings.network_calls += 1
        return logits, value


class Node:
    """A search-tree node: the move into it, its prior, visit count and value sum (for the player who made that
    move), its children once expanded and its position (for its descendants' history planes)."""

    __slots__ = ("move", "prior", "visits", "value_sum", "children", "position", "terminal")

    def __init__(self, move: chess.Move | None, prior: float):
        self.move, self.prior = move, prior
        self.visits, self.value_sum = 0, 0.0
        self.children: list[Node] | None = None
        self.position: Position | None = None
        self.terminal: float | None = None


def _expand(node: Node, board: chess.Board, recent: list[Position], occurrences, evaluator: Evaluator) -> float:
    """Values `node` for the side to move and, unless the game is over, adds its children with softmax priors over
    the legal moves (one network call)."""
    legal_moves = list(board.legal_moves)
    node.terminal = terminal_value(board, legal_moves, occurrences(node.position.key) - 1)
    if node.terminal is not None:
        return node.terminal
    start = time.perf_counter()
    planes = observation(recent, occurrences, board)
    evaluator.timings.encoding_s += time.perf_counter() - start
    logits, value = evaluator(planes)
    legal_logits = logits[[notation.move_to_action(board, move) for move in legal_moves]]
    priors = np.exp(legal_logits - legal_logits.max())
    priors /= priors.sum()
    node.children = [Node(move, float(prior)) for move, prior in zip(legal_moves, priors)]
    return value


def _select(node: Node, c_puct: float) -> Node:
    """The child maximising Q + c_puct * P * sqrt(N_parent) / (1 + N), Q = 0 for unvisited children."""
    scale = c_puct * math.sqrt(node.visits)
    best, best_score = None, -math.inf
    for child in node.children:
        q = child.value_sum / child.visits if child.visits else 0.0
        score = q + scale * child.prior / (1 + child.visits)
        if score > best_score:
            best, best_score = child, score
    return best


def search(board: chess.Board, evaluator: Evaluator, simulations: int, *, c_puct: float = 1.5,
           history: list[Position] | None = None, dirichlet: tuple[float, float] | None = None,
           rng: np.random.Generator | None = None) -> dict[chess.Move, int]:
    """AlphaZero PUCT search from `board` (game not over): visit counts of the root's legal moves, summing to
    `simulations`. The root is expanded first (one network call), then each simulation descends to a leaf, expands
    it with one network call (a finished game is valued by its result instead) and backs the value up, flipping its
    sign at every ply.

    history: `game_history(board)` (computed when absent; the game loop keeps it up to date).
    dirichlet: (alpha, fraction) of root noise over the legal moves, off by default.
    """
    history = game_history(board) if history is None else history
    counts = collections.Counter(past.key for past in history)
    scratch = board.copy()
    root = Node(None, 1.0)
    root.position = history[-1]
    _expand(root, scratch, history[-HISTORY_STEPS:], counts.__getitem__, evaluator)
    if root.children is None:
        raise ValueError(f"search from a finished game: {board.fen()}")
    root.visits = 1
    if dirichlet is not None:
        alpha, fraction = dirichlet
        noise = (rng or np.random.default_rng()).dirichlet([alpha] * len(root.children))
        for child, eta in zip(root.children, noise):
            child.prior = (1 - fraction) * child.prior + fraction * float(eta)

    for _ in range(simulations):
        node, path = root, [root]
        while node.children is not None:
            node = _select(node, c_puct)
            scratch.push(node.move)
            path.append(node)
        if node.terminal is not None:
            value = node.terminal
        else:
            start = time.perf_counter()
            node.position = position(scratch)
            evaluator.timings.encoding_s += time.perf_counter() - start
            path_counts = collections.Counter(step.position.key for step in path[1:])
            recent = (history[-HISTORY_STEPS:] + [step.position for step in path[1:]])[-HISTORY_STEPS:]
            value = _expand(node, scratch, recent, lambda key: counts[key] + path_counts[key], evaluator)
        for step in reversed(path):
            value = -value
            step.value_sum += value
            step.visits += 1
        for _ in path[1:]:
            scratch.pop()
    return {child.move: child.visits for child in root.children}


def play(config: Config, params, moves: int, simulations: int, seed: int, *, c_puct: float | None = None,
         dirichlet: bool = False, return_games: bool = False) -> dict:
    """Plays `moves` moves of self-play, games one after another from the starting position, each move searched
    with `simulations` simulations; the network is compiled before the clock starts.

    Returns the figures: moves, games, seconds, moves_per_s, simulations_per_s, network_calls,
    network_calls_per_s, and where the time went (network_s, encoding_s, tree_s = the rest: search, move generation,
    priors, game loop). `return_games` adds `games_uci`, the moves of each game in UCI. c_puct defaults to
    `config.mcts_cpuct`; `dirichlet` adds root noise with `config.dirichlet_alpha`/`dirichlet_fraction`.
    """
    c_puct = config.mcts_cpuct if c_puct is None else c_puct
    noise = (config.dirichlet_alpha, config.dirichlet_fraction) if dirichlet else None
    rng = np.random.default_rng(seed)
    timings = Timings()
    evaluator = Evaluator(config, params, timings)
    evaluator(_start_planes())  # compile
    timings.network_s, timings.network_calls = 0.0, 0

    games: list[list[str]] = []
    board, history = None, []
    start = time.perf_counter()
    for _ in range(moves):
        if board is None or _game_over(board, history, config):
            board, games = chess.Board(), games + [[]]
            history = game_history(board)
        visits = search(board, evaluator, simulations, c_puct=c_puct, history=history, dirichlet=noise, rng=rng)
        candidates, weights = list(visits), np.array(list(visits.values()), np.float64)
        if board.ply() < config.temperature_plies:
            move = candidates[rng.choice(len(candidates), p=weights / weights.sum())]
        else:
            move = candidates[int(weights.argmax())]
        board.push(move)
        games[-1].append(move.uci())
        history.append(position(board))
    seconds = time.perf_counter() - start

    result = {
        "moves": moves, "games": len(games), "simulations": simulations, "c_puct": c_puct,
        "channels": config.channels, "blocks": config.blocks, "device": str(jax.devices()[0].device_kind),
        "seconds": seconds, "moves_per_s": moves / seconds, "simulations_per_s": moves * simulations / seconds,
        "network_calls": timings.network_calls, "network_calls_per_s": timings.network_calls / seconds,
        "network_s": timings.network_s, "encoding_s": timings.encoding_s,
        "tree_s": seconds - timings.network_s - timings.encoding_s,
        "ms_per_network_call": 1e3 * timings.network_s / max(timings.network_calls, 1),
    }
    if return_games:
        result["games_uci"] = games
    return result


def _game_over(board: chess.Board, history: list[Position], config: Config) -> bool:
    repetitions = sum(past.key == history[-1].key for past in history) - 1
    return board.ply() >= config.max_plies or terminal_value(board, list(board.legal_moves), repetitions) is not None


def _start_planes() -> np.ndarray:
    board = chess.Board()
    return observation(game_history(board)[-HISTORY_STEPS:], lambda key: 1, board)


def time_network_call(config: Config, params, repeats: int) -> float:
    """Seconds per batch-1 network call (jitted apply and read-back) on the starting position, after compiling."""
    evaluator = Evaluator(config, params)
    planes = _start_planes()
    evaluator(planes)
    start = time.perf_counter()
    for _ in range(repeats):
        evaluator(planes)
    return (time.perf_counter() - start) / repeats


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--blocks", type=int, default=6)
    parser.add_argument("--simulations", type=int, default=32)
    parser.add_argument("--moves", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a line")
    args = parser.parse_args(argv)

    config, _ = load_config(["--channels", str(args.channels), "--blocks", str(args.blocks)], environ={})
    params = model.init_params(model.make_network(config, "float32"), jax.random.PRNGKey(args.seed))
    result = play(config, params, args.moves, args.simulations, args.seed)
    result["isolated_ms_per_network_call"] = 1e3 * time_network_call(config, params, repeats=50)
    if args.json:
        print(json.dumps(result))
    else:
        shares = {name: result[f"{name}_s"] / result["seconds"] for name in ("network", "encoding", "tree")}
        print(f"naive reference {args.channels}ch x {args.blocks} blocks, {args.simulations} sims: "
              f"{result['moves']} moves in {result['seconds']:.2f} s = {result['moves_per_s']:.2f} moves/s, "
              f"{result['simulations_per_s']:.1f} sims/s, {result['network_calls_per_s']:.1f} network calls/s "
              f"({result['ms_per_network_call']:.2f} ms each, {result['isolated_ms_per_network_call']:.2f} ms "
              f"isolated); time: network {shares['network']:.0%}, encoding {shares['encoding']:.0%}, "
              f"tree/python {shares['tree']:.0%}")


if __name__ == "__main__":
    main()
