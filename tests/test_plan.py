"""The run planner: byte counts of a config whose sizes are known by hand, checkpoint counts, XLA's memory analysis
of the real programs, and the one-line refusal of a run that cannot fit (by `plan` and by `train` at start-up)."""

from __future__ import annotations

import json

import pytest

from chessbrain_jax import plan, train
from chessbrain_jax.run import budget
from tests.conftest import make_config

# One stored position: packed planes (896 u8) and scalars (7 f32), legal moves (218 i16), policy (218 f32),
# white_to_move (bool), slot and generation (2 i32), material (i8), root value (f32).
POSITION_BYTES = 896 + 7 * 4 + 218 * 2 + 218 * 4 + 1 + 2 * 4 + 1 + 4
SMALL = ["--selfplay-batch", "4", "--plies-per-episode", "4", "--mcts-simulations", "4", "--channels", "8",
         "--blocks", "1", "--batch-size", "8", "--replay-capacity", "64", "--quiet"]


def test_buffer_and_checkpoint_bytes_follow_the_layout():
    config = make_config(replay_capacity=64, selfplay_batch=4, episodes=10, checkpoint_interval=3,
                         keep_checkpoints=2, keep_replay=1)
    trees = budget.shapes(config)
    assert budget.tree_bytes(trees["buffer"].positions) == 16 * 4 * POSITION_BYTES  # 16 rows x 4 columns
    disk = budget.disk_plan(config, trees)
    assert disk.written == 4  # episodes 3, 6, 9 and the last
    assert (disk.kept, disk.with_buffer) == (3, 2)  # one more of each while a save is in flight
    assert disk.run_bytes == budget.tree_bytes(trees["games"]) + budget.tree_bytes(trees["buffer"])
    assert disk.total_bytes == 3 * (disk.state_bytes + budget.META_BYTES) + 2 * disk.run_bytes
    every = budget.disk_plan(make_config(episodes=10, checkpoint_interval=3, keep_checkpoints=0, keep_replay=0))
    assert (every.kept, every.with_buffer) == (4, 4)


def test_plan_prints_program_memory_disk_and_work(tmp_path, capsys):
    argv = [*SMALL, "--episodes", "6", "--checkpoint-dir", str(tmp_path / "ckpt"), "--json",
            "--positions-per-s", "16", "--train-steps-per-s", "2"]
    assert plan.main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["work"] == {"positions_per_episode": 16, "positions": 96, "optimizer_steps_per_episode": 2,
                              "optimizer_steps": 12, "samples": 96}
    for name in ("selfplay_chunk", "replay_add", "train_micro_step"):
        row = result["programs"][name]
        assert row["peak_bytes"] > 0 and row["argument_bytes"] > 0
    assert result["programs"]["replay_add"]["argument_bytes"] >= result["device"]["replay_buffer_bytes"]
    assert result["time"]["episode_s"] == pytest.approx(16 / 16 + 2 / 2)
    assert result["disk"]["written"] == 3 and result["problems"] == []
    assert not (tmp_path / "ckpt").exists()  # planning writes nothing


def test_a_run_that_cannot_fit_is_refused_in_one_line_before_anything_starts(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(budget, "free_disk_bytes", lambda folder: 1000)
    argv = [*SMALL, "--episodes", "2", "--job-id", "big", "--checkpoint-dir", str(tmp_path / "ckpt"),
            "--log-dir", str(tmp_path / "runs")]
    assert train.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "the run does not fit: the run's checkpoints need up to" in err
    assert not (tmp_path / "ckpt").exists() and not (tmp_path / "runs").exists()
    assert plan.main([*argv, "--device-memory-gb", "0.000001"]) == 2
    lines = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("problem: ") for line in lines) == 2  # the disk and the device memory


def test_bad_planner_flags_are_one_line(capsys):
    assert plan.main([*SMALL, "--device-memory-gb", "lots"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--device-memory-gb: invalid float value: 'lots'" in err


def test_help_lists_the_planner_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        plan.main(["--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    assert out.startswith("usage: python -m chessbrain_jax.plan")
    assert "--measure" in out and "--device-memory-gb" in out
