"""The benchmark's arithmetic: FLOPs counted by hand agree with XLA, and its figures are consistent."""

from __future__ import annotations

import json

import jax
import pytest

from chessbrain_jax import bench
from chessbrain_jax.core import chess_env, model


@pytest.mark.parametrize("channels, blocks, history", [(8, 1, 8), (32, 2, 8), (32, 2, 1)])
def test_hand_counted_flops_agree_with_xla_cost_analysis(channels, blocks, history):
    network = model.ChessNet(channels, blocks, history_steps=history)
    params = model.init_params(network, jax.random.PRNGKey(0))
    measured = bench.network_flops(lambda p, o: network.apply({"params": p}, o), params, 4, "float32")
    counted = model.matmul_flops_per_position(channels, blocks, history_steps=history)
    assert counted <= measured <= 1.05 * counted  # XLA also counts norms and activations


@pytest.mark.slow
def test_bench_reports_consistent_figures(capsys):
    assert bench.main(["--channels", "8", "--blocks", "1", "--simulations", "4", "--selfplay-batch", "4",
                       "--plies", "2", "--batch-size", "8", "--duration", "0.3", "--breakdown", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    positions = result["selfplay_positions_per_s"]
    assert positions > 0 and result["train_samples_per_s"] > 0
    assert result["simulations_per_s"] == pytest.approx(4 * positions)
    assert result["network_evaluations_per_s"] == pytest.approx(5 * positions)
    assert result["network_flops_per_position"] >= model.matmul_flops_per_position(8, 1)
    assert result["selfplay_mfu"] == pytest.approx(
        result["network_evaluations_per_s"] * result["network_flops_per_position"] / result["peak_flops_per_s"])
    state = chess_env.compact(chess_env.initial_states(1))
    state_bytes = sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(state))
    assert result["embedding_bytes_per_node"] == pytest.approx(state_bytes + 218 * 2)  # state + legal-move slots
    assert result["embedding_bytes_per_node"] < 2048
    # mctx keeps, per node, children index/prior/visits/values/rewards/discounts over the 218 slots (4 bytes each)
    assert 6 * 218 * 4 <= result["statistics_bytes_per_node"] < 6 * 218 * 4 + 8 * 218
    assert result["peak_source"].startswith("measured float32")
    part = result["breakdown"]
    assert part["selfplay_ms_per_position"] > 0 and part["free_network_ms_per_position"] > 0
    assert part["env_step_ms_per_position"] > 0 and part["network_ms_per_position"] > 0
    assert part["network_share_of_selfplay"] == pytest.approx(
        1 - part["free_network_ms_per_position"] / part["selfplay_ms_per_position"])


def test_bench_bad_flag_is_one_line(capsys):
    assert bench.main(["--simulations", "0"]) == 2
    assert capsys.readouterr().err.strip() == "python -m chessbrain_jax.bench: error: --simulations must be >= 1, got 0"
