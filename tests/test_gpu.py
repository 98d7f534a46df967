"""The device check for a lent GPU (`-m gpu`; skipped without one): two episodes of the GPU preset at small sizes,
bfloat16 and float32 search agreeing on clear positions (mates in one with a random network, hanging queens with a
trained one), and a self-play chunk with no host round trip inside.
`GPU_TEST_PLATFORM=cpu` runs them on the CPU, to check the tests themselves."""

from __future__ import annotations

import json
import re

import chess
import jax
import numpy as np
import pytest

from chessbrain_jax import train
from chessbrain_jax.config import load_config
from chessbrain_jax.core import model, selfplay
from chessbrain_jax.play import player
from tests.conftest import GPU_TEST_PLATFORM

pytestmark = pytest.mark.gpu
DEVICE = "cpu" if GPU_TEST_PLATFORM == "cpu" else "gpu"
MATES_IN_ONE = ["6k1/5ppp/8/8/8/8/5PPP/R5K1 w - - 0 1", "r5k1/5ppp/8/8/8/8/5PPP/6K1 b - - 0 1",
                "rnbqkbnr/ppppp2p/5p2/6p1/4P3/8/PPPP1PPP/RNBQKBNR w KQkq - 0 3",
                "k7/8/1K6/8/8/8/8/6Q1 w - - 0 1"]
# Games (from the start, so the history planes are the network's usual input) that leave a queen en prise to a
# piece that takes it for free, and the capture.
HANGING_QUEENS = {"e2e4 d7d5 g1f3 d5e4 b1c3 d8d4": "f3d4", "e2e4 g8f6 d1h5": "f6h5",
                  "e2e4 e7e5 g1f3 d8g5": "f3g5", "e2e3 g8f6 d1g4": "f6g4"}
TAKEN = {"f6h5", "f3g5"}  # the captures the trained network below plays (f32, 64 simulations, every move considered)
TRAINED = "tests/data/n32a_params.npz"  # the float32 parameters of the 32x4 CPU preset's run n32a (session 11)
# Host round trips a jitted program can contain: Python callbacks (jax.debug.print, pure_callback, io_callback),
# infeed/outfeed and send/recv.
HOST_OPS = re.compile(r"custom_call @\w*callback|stablehlo\.(infeed|outfeed|send|recv)\b")


def host_round_trips(lowered_text: str) -> list[str]:
    return HOST_OPS.findall(lowered_text)


def test_two_episodes_of_the_gpu_preset_at_small_sizes(tmp_path):
    argv = ["--config", "configs/gpu-1h.yaml", "--episodes", "2", "--selfplay-batch", "64", "--plies-per-episode",
            "8", "--replay-capacity", "4096", "--batch-size", "64", "--eval-interval", "0", "--device", DEVICE,
            "--job-id", "gpu", "--log-dir", str(tmp_path / "runs"), "--checkpoint-dir", str(tmp_path / "ckpt"),
            "--quiet", "--compile-cache", "off"]
    assert train.main(argv) == 0
    records = [json.loads(line) for line in (tmp_path / "runs" / "gpu" / "metrics.jsonl").read_text().splitlines()]
    assert [r["episode"] for r in records] == [1, 2] and records[-1]["positions"] == 2 * 64 * 8
    assert all(np.isfinite(r["loss"]) for r in records)
    run = json.loads((tmp_path / "runs" / "gpu" / "run.json").read_text())
    assert run["precision"]["compute_dtype"] == ("bfloat16" if DEVICE == "gpu" else "float32")


def _players(considered: int = 64):
    """The same random (untrained but not zero-output) network as a float32 and a bfloat16 player."""
    config = load_config(["--channels", "32", "--blocks", "2", "--mcts-simulations", "64",
                          "--gumbel-considered-actions", str(considered)], environ={})[0]
    params = model.init_params(model.make_network(config), jax.random.PRNGKey(3))
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(4), len(leaves))
    params = jax.tree.unflatten(tree, [x + 0.05 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])
    return [player.NetworkPlayer(model.make_apply(model.make_network(config, dtype)), params, config, name=dtype)
            for dtype in ("float32", "bfloat16")]


def _trained_players():
    """The trained 32x4 network of `TRAINED` as a float32 and a bfloat16 player (64 simulations, every move
    considered)."""
    config = load_config(["--channels", "32", "--blocks", "4", "--mcts-simulations", "64",
                          "--gumbel-considered-actions", "64"], environ={})[0]
    shapes = model.init_params(model.make_network(config), jax.random.PRNGKey(0))
    stored = np.load(TRAINED)
    params = jax.tree_util.tree_map_with_path(lambda path, leaf: stored[jax.tree_util.keystr(path)], shapes)
    return [player.NetworkPlayer(model.make_apply(model.make_network(config, dtype)), params, config, name=dtype)
            for dtype in ("float32", "bfloat16")]


def test_bfloat16_and_float32_search_take_a_hanging_queen():
    """A trained network in both precisions takes a hanging queen where it does at all, and their root values agree
    within 0.1 on all four. This 30-minute network takes the queen in two of the four (at 64 simulations it prefers
    a knight retreat in the others: docs/results.md), so the move is asserted on those two."""
    f32, bf16 = _trained_players()
    for moves, capture in HANGING_QUEENS.items():
        board = chess.Board()
        for move in moves.split():
            board.push_uci(move)
        a, b = f32.analyse(board, jax.random.PRNGKey(0)), bf16.analyse(board, jax.random.PRNGKey(0))
        if capture in TAKEN:
            assert a.move.uci() == capture and b.move.uci() == capture, (moves, a.move, b.move)
        assert abs(a.value - b.value) < 0.1, (moves, a.value, b.value)


def test_bfloat16_and_float32_search_agree_on_mates_in_one():
    """Both precisions play the mate (every legal move is considered, so a mate is always visited) and their root
    values agree within 0.1. Hanging-queen positions are left out: an untrained network has no sense of material,
    so which capture it prefers says nothing about precision."""
    f32, bf16 = _players()
    for fen in MATES_IN_ONE:
        board = chess.Board(fen)
        key = jax.random.PRNGKey(0)
        a, b = f32.analyse(board, key), bf16.analyse(board, key)
        for analysis in (a, b):
            after = board.copy()
            after.push(analysis.move)
            assert after.is_checkmate(), (fen, analysis.move)
        assert abs(a.value - b.value) < 0.1, (fen, a.value, b.value)


def test_a_selfplay_chunk_has_no_host_round_trip_inside():
    config = load_config(["--selfplay-batch", "8", "--plies-per-episode", "4", "--mcts-simulations", "8",
                          "--channels", "8", "--blocks", "1", "--device", DEVICE], environ={})[0]
    dtype = "bfloat16" if DEVICE == "gpu" else "float32"
    network = model.make_network(config, dtype)
    play = selfplay.make_play_episode(config, model.make_apply(network))
    params = model.init_params(network, jax.random.PRNGKey(0))
    lowered = jax.jit(play).lower(params, selfplay.init_selfplay(config), jax.random.PRNGKey(1))
    assert host_round_trips(lowered.as_text()) == []
    assert host_round_trips("stablehlo.custom_call @xla_ffi_python_cpu_callback(%arg0)")  # the pattern matches

