"""End to end: a short training job writes metrics, TensorBoard events, run.json and checkpoints that load back."""

from __future__ import annotations

import glob
import json
import os
import struct

import jax
import numpy as np
import pytest

from chessbrain_jax import train
from chessbrain_jax.config import load_config
from chessbrain_jax.core import chess_env
from chessbrain_jax.run.job import with_lr_horizon
from chessbrain_jax.storage import checkpoint
from chessbrain_jax.storage.metrics import flatten

REQUIRED_METRICS = ("step", "episode", "games_finished", "loss", "policy_loss", "value_loss", "l2", "learning_rate",
                    "selfplay_positions_per_s", "train_steps_per_s", "wall_time_s")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("job")
    argv = ["--episodes", "3", "--checkpoint-interval", "1", "--keep-checkpoints", "2", "--selfplay-batch", "4",
            "--plies-per-episode", "4",
            "--mcts-simulations", "4", "--channels", "8", "--blocks", "1", "--batch-size", "8",
            "--replay-capacity", "64", "--max-plies", "64", "--job-id", "cli", "--quiet",
            "--eval-interval", "2", "--eval-games", "2", "--eval-simulations", "0", "--profile", "--probe-interval", "3",
            "--log-dir", str(root / "runs"), "--checkpoint-dir", str(root / "ckpt")]
    config, _ = load_config(argv, environ={})
    return root, argv, config, train.run(config)


def _tensorboard_scalars(path: str) -> dict[str, list[float]]:
    """Reads a TensorBoard event file (TFRecord framing: length, crc, payload, crc) with tensorboardX's protos."""
    from tensorboardX.proto import event_pb2

    scalars: dict[str, list[float]] = {}
    with open(path, "rb") as handle:
        data = handle.read()
    offset = 0
    while offset < len(data):
        (length,) = struct.unpack("<Q", data[offset:offset + 8])
        event = event_pb2.Event.FromString(data[offset + 12:offset + 12 + length])
        offset += 12 + length + 4
        for value in event.summary.value:
            scalars.setdefault(value.tag, []).append(value.simple_value)
    return scalars


def test_metrics_jsonl_has_one_valid_record_per_episode(finished_run):
    root, _, config, result = finished_run
    lines = (root / "runs" / "cli" / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["episode"] for r in records] == [1, 2, 3]
    for record in records:
        assert all(name in record for name in REQUIRED_METRICS), record.keys()
        assert np.isfinite(record["loss"]) and record["selfplay_positions_per_s"] > 0
    # Episode 1 stores 16 positions, then trains ceil(16 / 8) = 2 micro-batches = 2 optimizer steps per episode.
    assert [r["step"] for r in records] == [2, 4, 6]
    assert [r["positions"] for r in records] == [16, 32, 48]
    assert flatten(result.record) == records[-1]
    # Diagnostics: probe-set agreement at episode 3, replay age from the fill (48 of 64 positions, 16 per episode).
    assert "probe/top1" not in records[1] and 0.0 <= records[2]["probe/top1"] <= records[2]["probe/top3"] <= 1.0
    assert records[2]["probe/value_mse"] >= 0.0 and -1.0 <= records[2]["probe/value_corr"] <= 1.0
    assert [r["replay_age_episodes"] for r in records] == [0.0, 0.5, 1.0]
    for record in records:
        assert record["policy_kl"] >= -1e-5 and record["policy_target_entropy"] > 0.0


def test_tensorboard_events_hold_the_same_scalars(finished_run):
    root, *_ = finished_run
    files = glob.glob(str(root / "runs" / "cli" / "events.out.tfevents.*"))
    assert len(files) == 1
    scalars = _tensorboard_scalars(files[0])
    records = [json.loads(line) for line in (root / "runs" / "cli" / "metrics.jsonl").read_text().splitlines()]
    np.testing.assert_allclose(scalars["loss"], [r["loss"] for r in records], rtol=1e-6)
    assert len(scalars["selfplay_positions_per_s"]) == 3 and "games/white_wins" in scalars


def test_run_json_records_config_versions_and_devices(finished_run):
    root, _, config, _ = finished_run
    run = json.loads((root / "runs" / "cli" / "run.json").read_text())
    assert run["config"] == with_lr_horizon(config).to_dict()  # the horizon is fixed at the start
    for library in ("jax", "flax", "optax", "mctx", "pgx", "orbax-checkpoint"):
        assert run["versions"][library][0].isdigit()
    assert run["devices"] and run["backend"] == "cpu"
    assert run["precision"]["compute_dtype"] == "float32"


def test_checkpoints_are_step_versioned_and_load_back(finished_run):
    root, _, config, result = finished_run
    saved = checkpoint.list_checkpoints(str(root / "ckpt"), "cli")
    assert [c.step for c in saved] == [4, 6]  # saved after every episode (steps 2, 4, 6); the newest 2 are kept
    assert [os.path.basename(c.path) for c in saved] == ["cli_step4", "cli_step6"]
    assert result.checkpoint_path == saved[-1].path

    loaded = checkpoint.load_network(result.checkpoint_path)
    assert loaded.step == 6 and loaded.config == with_lr_horizon(config)
    assert loaded.meta["episode"] == 3 and loaded.meta["pgx_version"] == chess_env.PGX_VERSION
    observation = chess_env.initial_states(2).observation
    expected = loaded.network.apply({"params": result.params}, observation)
    for got, want in zip(loaded.apply(observation), expected):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    jax.tree.map(np.testing.assert_array_equal, loaded.params, result.params)

    latest = checkpoint.load_network("cli", checkpoint_dir=str(root / "ckpt"))
    assert latest.step == 6
    older = checkpoint.load_network(saved[0].path)
    assert older.step == 4 and older.meta["episode"] == 2
    assert not np.array_equal(older.params["stem"]["kernel"], loaded.params["stem"]["kernel"])  # trained between


def test_bad_checkpoint_paths_are_clear_errors(finished_run, tmp_path):
    root, *_ = finished_run
    with pytest.raises(checkpoint.CheckpointError, match="is not a checkpoint folder"):
        checkpoint.load_network(str(tmp_path))
    with pytest.raises(checkpoint.CheckpointError, match="does not exist"):
        checkpoint.load_network(str(root / "ckpt" / "cli_step99"))
    with pytest.raises(checkpoint.CheckpointError, match="no checkpoints of job 'other'"):
        checkpoint.load_network("other", checkpoint_dir=str(root / "ckpt"))


def test_incompatible_or_broken_checkpoints_are_clear_errors(finished_run, tmp_path):
    import shutil

    root, *_ = finished_run
    for name, damage in (("shape", "channels"), ("nometa", "meta")):
        copy = tmp_path / name / "cli_step6"
        shutil.copytree(root / "ckpt" / "cli_step6", copy)
        if damage == "channels":
            meta_file = copy / "meta" / "metadata"
            meta = json.loads(meta_file.read_text())
            meta["config"]["channels"] = 16
            meta_file.write_text(json.dumps(meta))
            with pytest.raises(checkpoint.CheckpointError, match="does not match the network"):
                checkpoint.load_network(str(copy))
        else:
            shutil.rmtree(copy / "meta")
            with pytest.raises(checkpoint.CheckpointError, match="no readable metadata"):
                checkpoint.load_network(str(copy))


def test_rerunning_a_job_is_refused_without_touching_it(finished_run, capsys):
    root, argv, *_ = finished_run
    before = (root / "runs" / "cli" / "metrics.jsonl").read_bytes()
    assert train.main(argv) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert error[-1].startswith("chessbrain_jax.train: error: job 'cli' already exists")
    assert (root / "runs" / "cli" / "metrics.jsonl").read_bytes() == before


def test_unavailable_device_is_a_clear_error():
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "chessbrain_jax.train", "--device", "tpu", "--episodes", "1"],
                            capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == "chessbrain_jax.train: error: --device tpu: no TPU is available to JAX"
    assert "Traceback" not in result.stderr


def test_evaluation_during_training_is_logged_and_its_games_saved(finished_run):
    import chess.pgn

    root, *_ = finished_run
    records = [json.loads(line) for line in (root / "runs" / "cli" / "metrics.jsonl").read_text().splitlines()]
    evaluated = [r for r in records if "eval/score" in r]
    assert [r["episode"] for r in evaluated] == [2]
    record = evaluated[0]
    assert record["eval/wins"] + record["eval/draws"] + record["eval/losses"] == 2
    assert record["eval/score"] == (record["eval/wins"] + record["eval/draws"] / 2) / 2
    assert record["eval/opponent"] == "random"
    files = glob.glob(str(root / "runs" / "cli" / "events.out.tfevents.*"))
    assert _tensorboard_scalars(files[0])["eval/score"] == [record["eval/score"]]
    with open(root / "runs" / "cli" / "eval" / f"step{record['step']}.pgn") as stream:
        games = [chess.pgn.read_game(stream) for _ in range(2)]
    assert {games[0].headers["White"], games[1].headers["Black"]} == {"cli (raw policy)"}
    for game in games:
        board = game.board()
        for move in game.mainline_moves():
            assert move in board.legal_moves
            board.push(move)


def test_registry_lists_the_jobs_checkpoints_with_metrics(finished_run, capsys):
    from chessbrain_jax import registry

    root, *_ = finished_run
    records = {r["step"]: r for r in map(json.loads, (root / "runs" / "cli" / "metrics.jsonl").read_text().splitlines())}
    assert registry.list_jobs(str(root / "ckpt")) == {"cli": 6}
    rows = registry.describe_job(str(root / "ckpt"), "cli")
    assert [row["step"] for row in rows] == [4, 6]  # --keep-checkpoints 2
    assert [row["episode"] for row in rows] == [2, 3]
    assert rows[0]["loss"] == pytest.approx(records[4]["loss"]) and rows[0]["eval_score"] == records[4]["eval/score"]
    assert rows[1]["eval_score"] is None
    assert registry.main(["cli", "--checkpoint-dir", str(root / "ckpt")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["step", "saved"] and lines[1].split()[0] == "4" and len(lines) == 3
    assert registry.main(["other", "--checkpoint-dir", str(root / "ckpt")]) == 2
    assert "no checkpoints of job 'other'" in capsys.readouterr().err


def test_load_player_from_a_checkpoint_searches_and_plays_legal_moves(finished_run):
    import chess

    from chessbrain_jax.play import player

    root, _, _, result = finished_run
    searcher = player.load_player(result.checkpoint_path, simulations=4)
    assert searcher.name == "cli_step6" and searcher.description == "cli_step6 (gumbel, 4 simulations)"
    fen = "r1bqkbnr/pppp1ppp/2n5/4p3/4P3/5N2/PPPP1PPP/RNBQKB1R w KQkq - 2 3"
    board = chess.Board(fen)
    analysis = searcher.analyse(fen)
    assert analysis.move in board.legal_moves and analysis.pv[0] == analysis.move
    assert sum(analysis.visits.values()) == 4 and set(analysis.visits) <= set(board.legal_moves)
    assert sum(analysis.policy.values()) == pytest.approx(1.0, abs=1e-5)
    assert sum(analysis.prior.values()) == pytest.approx(1.0, abs=1e-5) and -1 <= analysis.value <= 1
    raw = player.load_player("cli", checkpoint_dir=str(root / "ckpt"), simulations=0)
    raw_analysis = raw.analyse(board)
    with pytest.raises(ValueError, match="not a legal position"):
        raw.analyse("8/8/8/8/8/8/8/8 w - - 0 1")
    assert raw_analysis.move == max(raw_analysis.prior, key=raw_analysis.prior.get)
    net = checkpoint.load_network(result.checkpoint_path)
    from chessbrain_jax.play import notation

    logits, _ = net.apply(notation.board_to_state(board).observation[None])
    legal = sorted(notation.legal_actions(board))
    expected = jax.nn.softmax(np.asarray(logits[0])[legal])
    np.testing.assert_allclose([raw_analysis.prior[notation.action_to_move(board, a)] for a in legal], expected,
                               rtol=1e-5)


def test_profile_trace_is_written_for_tensorboard(finished_run):
    root, *_ = finished_run
    traces = glob.glob(str(root / "runs" / "cli" / "plugins" / "profile" / "*" / "*.xplane.pb"))
    assert len(traces) == 1 and os.path.getsize(traces[0]) > 10_000
    trace = open(traces[0], "rb").read()
    assert all(name in trace for name in (b"episode", b"step_num", b"selfplay", b"train"))  # step markers


def test_probe_script_scores_every_checkpoint_of_a_job(finished_run, tmp_path, capsys):
    """scripts/probe_checkpoints.py: one row per checkpoint, the same numbers the training-time diagnostics give."""
    import importlib.util

    from chessbrain_jax.play import diagnostics

    root, *_ = finished_run
    spec = importlib.util.spec_from_file_location("probe_checkpoints", "scripts/probe_checkpoints.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    probes = tmp_path / "probes.jsonl"
    with open(diagnostics.PROBES, encoding="utf-8") as stream:
        probes.write_text("".join(stream.readlines()[:16]))
    out = tmp_path / "rows.json"
    assert script.main(["--job", "cli", "--checkpoint-dir", str(root / "ckpt"), "--probes", str(probes),
                        "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [row["step"] for row in rows] == [4, 6] and [row["episode"] for row in rows] == [2, 3]
    loaded = checkpoint.load_network(str(root / "ckpt" / "cli_step6"))
    expected = diagnostics.Diagnostics(lambda p, x: loaded.network.apply({"params": p}, x), str(probes))(loaded.params)
    assert rows[1] == pytest.approx(dict(step=6, episode=3, **expected))
    assert "| 6 | 3 |" in capsys.readouterr().out
    assert script.main(["--job", "nojob", "--checkpoint-dir", str(root / "ckpt")]) == 2
