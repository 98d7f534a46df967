"""Learning diagnostics: the probe set is legal and labelled, and the metrics are exact on known answers."""

from __future__ import annotations

import json

import chess
import numpy as np
import pytest

from chessbrain_jax.play import diagnostics


def test_shipped_probe_set_is_game_like_and_labelled():
    with open(diagnostics.PROBES, encoding="utf-8") as stream:
        probes = [json.loads(line) for line in stream]
    assert len(probes) >= 300
    assert len({" ".join(p["fen"].split()[:4]) for p in probes}) == len(probes)  # no position twice
    for probe in probes:
        board = chess.Board(probe["fen"])
        assert board.is_valid() and not board.is_game_over()
        assert chess.Move.from_uci(probe["best"]) in board.legal_moves
        assert sum(probe["wdl"]) == 1000
    assert 0.1 < np.mean([p["ply"] > 60 for p in probes]) < 0.9  # openings and later positions both


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    with open(diagnostics.PROBES, encoding="utf-8") as stream:
        lines = stream.readlines()[:12]
    path = tmp_path_factory.mktemp("probes") / "probes.jsonl"
    path.write_text("".join(lines))
    return diagnostics.load_probes(str(path)), [json.loads(line) for line in lines]


def test_probes_load_as_network_inputs(small_set):
    probes, raw = small_set
    assert probes.observation.shape == (12, 8, 8, 119) and probes.legal.shape == (12, 4672)
    assert probes.legal[np.arange(12), probes.best].all()
    np.testing.assert_allclose(probes.expected, [(p["wdl"][0] - p["wdl"][2]) / 1000 for p in raw], rtol=1e-6)
    captures = [chess.Board(p["fen"]).is_capture(chess.Move.from_uci(p["best"])) for p in raw]
    assert probes.capture.tolist() == captures and 0 < sum(captures) < 12


def test_probes_carry_the_history_planes_of_their_game(small_set):
    """Each probe's observation holds the positions before it, as the self-play network sees them in a game: the
    second history step (planes 14-25) counts the pieces of the position one ply earlier, per type, the mover's
    first. (Built from the FEN alone those planes would be empty.)"""
    probes, raw = small_set
    assert all(len(p["moves"]) == 7 for p in raw if p["ply"] >= 7)
    for observation, probe in zip(probes.observation, raw):
        board = diagnostics.probe_board(probe)
        previous = board.copy()
        previous.pop()
        expected = np.zeros(12)
        for piece in previous.piece_map().values():
            expected[piece.piece_type - 1 + (0 if piece.color == board.turn else 6)] += 1
        np.testing.assert_array_equal(observation[..., 14:26].sum(axis=(0, 1)), expected)


def test_metrics_on_known_answers(small_set):
    probes, _ = small_set
    n = len(probes.best)
    perfect = np.where(probes.legal, 0.0, 5.0)  # illegal moves rate highest: they must be ignored
    perfect[np.arange(n), probes.best] = 1.0
    exact = diagnostics.probe_metrics(perfect, probes.expected.copy(), probes)
    assert exact["top1"] == exact["top3"] == exact["top1_capture"] == 1.0 and exact["value_mse"] == 0.0
    assert exact["value_corr"] == pytest.approx(1.0)
    assert exact["value_sign"] == (1.0 if (np.abs(probes.expected) > 0.5).any() else 0.0)
    several = probes.legal.sum(axis=-1) > 1
    assert several.sum() >= 8
    second = perfect.copy()
    for i in np.flatnonzero(several):  # another legal move first: Stockfish's is the policy's second
        other = np.flatnonzero(probes.legal[i] & (np.arange(4672) != probes.best[i]))[0]
        second[i, other] = 2.0
    ranked = diagnostics.probe_metrics(second, -probes.expected, probes)
    assert ranked["top1"] == pytest.approx(1 - several.mean()) and ranked["top3"] == 1.0
    assert ranked["top1_capture"] == pytest.approx(1 - several[probes.capture].mean())
    assert ranked["value_mse"] == pytest.approx(4 * np.mean(probes.expected ** 2), rel=1e-6)
    assert ranked["value_corr"] == pytest.approx(-1.0)
