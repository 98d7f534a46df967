"""Learning diagnostics on a fixed probe set: how far the raw network agrees with Stockfish, in one batched call.

The probe set (`probes.jsonl` beside this file, made by `scripts/make_probes.py`) holds a few hundred game-like
positions with Stockfish's best move and win/draw/loss estimate. Against it, a network's raw policy (no search) and
value head give:
- `top1`, `top3`: the share of positions where Stockfish's move is the policy's first, or among its first three;
- `top1_capture`: `top1` on the positions (about a quarter) where Stockfish's move is a capture: whether the
  policy takes material it is offered, which self-play networks learn late (docs/results.md, "What a free queen
  shows");
- `value_mse`: mean squared error of the value head against Stockfish's expected result (W - L) / 1000, both from
  the side to move, in [-1, 1]; `value_corr`: their correlation; `value_sign`: the share of clearly decided
  positions (|W - L| > 0.5) where the value head has the right sign.
Being a fixed set, the numbers move only with the network: a change that helps shows within minutes, before a match.
"""

from __future__ import annotations

import json
import os
from typing import NamedTuple

import numpy as np

PROBES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "probes.jsonl")


class ProbeSet(NamedTuple):
    """N probe positions: observation `f32[N, 8, 8, 119]`, legal `bool[N, 4672]`, best `i32[N]` Stockfish's move
    (pgx action), expected `f32[N]` Stockfish's W - L for the side to move, capture `bool[N]` whether that move is a
    capture."""

    observation: np.ndarray
    legal: np.ndarray
    best: np.ndarray
    expected: np.ndarray
    capture: np.ndarray


def probe_board(probe: dict):
    """The python-chess board of one probe, with the moves that led to it where the probe has them."""
    import chess

    board = chess.Board(probe.get("history_fen", probe["fen"]))
    for move in probe.get("moves", []):
        board.push_uci(move)
    if board.fen() != probe["fen"]:
        raise ValueError(f"probe {probe['fen']!r}: its moves lead to {board.fen()!r}")
    return board


def load_probes(path: str = PROBES) -> ProbeSet:
    """The probe set at `path` as arrays. A probe with "history_fen" and "moves" is built by playing the moves from
    that position, so its observation carries the history planes of the game it came from; one with only "fen" has
    empty history planes (as a game started from that FEN), which a self-play network reads very differently."""
    import chess
    import jax

    from chessbrain_jax.play import notation

    with open(path, encoding="utf-8") as stream:
        probes = [json.loads(line) for line in stream if line.strip()]
    boards = [probe_board(probe) for probe in probes]
    states = jax.device_get(notation.stack_states([notation.board_to_state(board) for board in boards]))
    moves = [chess.Move.from_uci(probe["best"]) for probe in probes]
    best = [notation.move_to_action(board, move) for board, move in zip(boards, moves)]
    expected = [(probe["wdl"][0] - probe["wdl"][2]) / 1000 for probe in probes]
    capture = [board.is_capture(move) for board, move in zip(boards, moves)]
    return ProbeSet(np.asarray(states.observation, np.float32), np.asarray(states.legal_action_mask),
                    np.asarray(best, np.int32), np.asarray(expected, np.float32), np.asarray(capture, bool))


def probe_metrics(logits: np.ndarray, value: np.ndarray, probes: ProbeSet) -> dict[str, float]:
    """The diagnostics from the network's `f32[N, 4672]` logits and `f32[N]` values on `probes`."""
    masked = np.where(probes.legal, logits, -np.inf)
    order = np.argsort(-masked, axis=-1, kind="stable")[:, :3]
    hits = order == probes.best[:, None]
    decided = np.abs(probes.expected) > 0.5
    spread = value.std() * probes.expected.std()
    return {
        "top1": float(hits[:, 0].mean()),
        "top3": float(hits.any(axis=-1).mean()),
        "top1_capture": float(hits[probes.capture, 0].mean()) if probes.capture.any() else 0.0,
        "value_mse": float(np.mean(np.square(value - probes.expected))),
        "value_corr": float(np.mean((value - value.mean()) * (probes.expected - probes.expected.mean())) / spread)
        if spread > 0 else 0.0,
        "value_sign": float(np.mean(np.sign(value[decided]) == np.sign(probes.expected[decided])))
        if decided.any() else 0.0,
    }


class Diagnostics:
    """`diagnostics(params) -> dict`: the probe metrics of `apply_fn` with `params`, compiled once for the set."""

    def __init__(self, apply_fn, path: str = PROBES):
        import jax

        self.probes = load_probes(path)
        self._apply = jax.jit(apply_fn)

    def __call__(self, params) -> dict[str, float]:
        import jax

        logits, value = jax.device_get(self._apply(params, self.probes.observation))
        return probe_metrics(np.asarray(logits, np.float32), np.asarray(value, np.float32), self.probes)
