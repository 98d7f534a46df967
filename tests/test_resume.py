"""Never lose a run: exact resume, SIGTERM, a corrupt latest checkpoint, --overwrite, the non-finite guard."""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from chessbrain_jax import registry, train
from chessbrain_jax.config import load_config
from chessbrain_jax.core import learner, model
from chessbrain_jax.run.console import TrainingDiverged, UsageError
from chessbrain_jax.run.job import prepare_folders, resumed_config
from chessbrain_jax.storage import checkpoint

TINY = ["--selfplay-batch", "4", "--plies-per-episode", "4", "--mcts-simulations", "4", "--channels", "8",
        "--blocks", "1", "--batch-size", "8", "--replay-capacity", "64", "--checkpoint-interval", "2", "--quiet",
        "--exploration-rate", "0.5", "--max-plies", "12"]
TIMING = ("selfplay_positions_per_s", "train_steps_per_s", "train_samples_per_s", "wall_time_s")


def _run(root, job, *args):
    argv = [*TINY, "--job-id", job, "--log-dir", str(root / "runs"), "--checkpoint-dir", str(root / "ckpt"), *args]
    config, options = load_config(argv, environ={})
    return train.run(config, resume=options["resume"], overwrite=options["overwrite"], explicit=options["explicit"])


def _records(root, job):
    return [json.loads(line) for line in (root / "runs" / job / "metrics.jsonl").read_text().splitlines()]


def _without_timing(record):
    return {name: value for name, value in record.items() if name not in TIMING}


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    return root, _run(root, "straight", "--episodes", "4")


def test_stop_and_resume_equals_a_straight_run(straight):
    root, uninterrupted = straight
    _run(root, "split", "--episodes", "2")
    resumed = _run(root, "split", "--episodes", "4", "--resume")
    # Bit for bit: same compiled programs, same inputs (params, optimizer state, RNG, games, replay buffer) on CPU.
    jax.tree.map(np.testing.assert_array_equal, resumed.params, uninterrupted.params)
    assert [_without_timing(r) for r in _records(root, "split")] == \
        [_without_timing(r) for r in _records(root, "straight")]
    assert [r["episode"] for r in _records(root, "split")] == [1, 2, 3, 4]
    assert any(r["games_finished"] or r["games/truncated"] for r in _records(root, "split"))  # games carried over


def test_resume_refuses_changed_settings_and_existing_jobs_need_a_flag(straight):
    root, _ = straight
    with pytest.raises(UsageError, match="--resume: --channels 16 differs from the job's 8"):
        _run(root, "straight", "--episodes", "5", "--resume", "--channels", "16")
    with pytest.raises(UsageError, match="use --resume to continue it or --overwrite"):
        _run(root, "straight", "--episodes", "5")


def test_a_resumed_cosine_job_keeps_its_learning_rate_horizon(tmp_path, capsys):
    first = _run(tmp_path, "cosine", "--episodes", "2", "--lr-schedule", "cosine")
    assert checkpoint.load_network(first.checkpoint_path).config.lr_decay_episodes == 2  # stored concrete
    capsys.readouterr()
    resumed = _run(tmp_path, "cosine", "--episodes", "4", "--resume")
    assert ("note: --lr-schedule cosine decays to 0 over the job's --lr-decay-episodes 2: episodes 3-4 train at "
            "learning rate 0") in capsys.readouterr().err
    stored = checkpoint.load_network(resumed.checkpoint_path).config
    assert (stored.lr_decay_episodes, stored.episodes) == (2, 4)
    # 2 optimizer steps per episode, so a 4-step cosine; each record has the rate of its episode's last step.
    expected = [1e-3 * 0.5 * (1 + math.cos(math.pi * step / 4)) if step < 4 else 0.0 for step in (1, 3, 5, 7)]
    np.testing.assert_allclose([r["learning_rate"] for r in _records(tmp_path, "cosine")], expected, rtol=1e-5,
                               atol=1e-12)
    with pytest.raises(UsageError, match="--resume: --lr-decay-episodes 4 differs from the job's 2"):
        _run(tmp_path, "cosine", "--episodes", "6", "--resume", "--lr-decay-episodes", "4")


def test_a_checkpoint_without_lr_decay_episodes_decays_over_its_own_episodes(tmp_path):
    saved = _config(tmp_path, "old", "--episodes", "2", "--lr-schedule", "cosine").to_dict()
    del saved["lr_decay_episodes"]  # written before the setting existed
    stored = checkpoint.config_from_meta({"config": saved})
    assert stored.lr_decay_episodes == 0
    resumed = resumed_config(stored, _config(tmp_path, "old", "--episodes", "4"), {"episodes"})
    assert (resumed.lr_decay_episodes, resumed.episodes) == (2, 4)


def test_corrupt_latest_checkpoint_falls_back_to_the_previous(straight, capsys):
    root, _ = straight
    copy = root / "corrupt"
    shutil.copytree(root / "runs" / "straight", copy / "runs" / "straight")
    shutil.copytree(root / "ckpt", copy / "ckpt")
    latest = copy / "ckpt" / "straight_step8"
    for data_file in (latest / "state").rglob("*"):
        if data_file.is_file() and data_file.stat().st_size > 0 and "manifest" not in data_file.name:
            data_file.write_bytes(b"\0" * 7)  # truncated and overwritten
    capsys.readouterr()
    result = _run(copy, "straight", "--episodes", "4", "--resume")
    err = capsys.readouterr().err
    assert "checkpoint straight_step8 cannot be restored" in err
    assert "resuming after episode 2 from straight_step4 (2 later metrics records dropped)" in err
    records = _records(copy, "straight")
    assert [r["episode"] for r in records] == [1, 2, 3, 4]  # no duplicates, in order
    expected = [_without_timing(r) for r in _records(root, "straight")]
    assert [_without_timing(r) for r in records] == expected  # the redone episodes come out the same
    assert result.checkpoint_path.endswith("straight_step8")


def test_only_the_newest_checkpoints_keep_the_replay_buffer_and_resume_stays_exact(straight, capsys):
    root, uninterrupted = straight
    _run(root, "lean", "--episodes", "2", "--checkpoint-interval", "1")
    resumed = _run(root, "lean", "--episodes", "4", "--checkpoint-interval", "1", "--resume")
    jax.tree.map(np.testing.assert_array_equal, resumed.params, uninterrupted.params)
    folders = {info.step: info.path for info in checkpoint.list_checkpoints(str(root / "ckpt"), "lean")}
    assert sorted(folders) == [2, 4, 6, 8]
    assert [checkpoint.has_run(folders[step]) for step in (2, 4, 6, 8)] == [False, False, True, True]
    lean = checkpoint.load_network(folders[2])  # arena, uci, registry and results load lean checkpoints
    assert [row["resumable"] for row in registry.describe_job(str(root / "ckpt"), "lean")] == \
        ["no (network only)"] * 2 + ["yes"] * 2
    assert lean.step == 2 and lean.meta["episode"] == 1
    full_size = sum(f.stat().st_size for f in (root / "ckpt" / "lean_step8").rglob("*") if f.is_file())
    lean_size = sum(f.stat().st_size for f in (root / "ckpt" / "lean_step2").rglob("*") if f.is_file())
    assert lean_size < full_size
    for step in (6, 8):  # both checkpoints with a buffer corrupt: the lean ones cannot resume exactly
        for data_file in (root / "ckpt" / f"lean_step{step}" / "state").rglob("*"):
            if data_file.is_file() and data_file.stat().st_size > 0 and "manifest" not in data_file.name:
                data_file.write_bytes(b"\0" * 7)
    with pytest.raises(UsageError, match="none of the 2 checkpoints of job 'lean' that keep the replay buffer can "
                                         "be restored; the 2 older ones keep networks only"):
        _run(root, "lean", "--episodes", "5", "--checkpoint-interval", "1", "--resume")


def test_keep_replay_0_keeps_every_buffer(tmp_path):
    _run(tmp_path, "all", "--episodes", "3", "--checkpoint-interval", "1", "--keep-replay", "0")
    infos = checkpoint.list_checkpoints(str(tmp_path / "ckpt"), "all")
    assert len(infos) == 3 and all(checkpoint.has_run(info.path) for info in infos)


def test_overwrite_starts_the_job_again(tmp_path):
    _run(tmp_path, "again", "--episodes", "1")
    (tmp_path / "runs" / "again" / "marker").write_text("old")
    _run(tmp_path, "again", "--episodes", "2", "--overwrite")
    assert not (tmp_path / "runs" / "again" / "marker").exists()
    assert [r["episode"] for r in _records(tmp_path, "again")] == [1, 2]


def test_sigterm_stops_after_the_episode_with_a_checkpoint(tmp_path):
    argv = [sys.executable, "-m", "chessbrain_jax.train", *TINY, "--episodes", "1000", "--checkpoint-interval",
            "1000", "--job-id", "term", "--log-dir", str(tmp_path / "runs"), "--checkpoint-dir", str(tmp_path / "ckpt")]
    process = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines = []
    for line in process.stderr:
        lines.append(line)
        if line.startswith("episode 2/1000"):
            process.send_signal(signal.SIGTERM)
            break
    _, rest = process.communicate(timeout=120)
    assert process.returncode == 0, "".join(lines) + rest
    assert "stopped by SIGTERM after episode" in rest
    records = [json.loads(line) for line in (tmp_path / "runs" / "term" / "metrics.jsonl").read_text().splitlines()]
    saved = checkpoint.list_checkpoints(str(tmp_path / "ckpt"), "term")
    assert len(saved) == 1 and saved[0].step == records[-1]["step"]
    assert checkpoint.load_network(saved[0].path).meta["episode"] == records[-1]["episode"] >= 2
    assert "Traceback" not in rest


def test_nonfinite_gradients_are_skipped_not_applied():
    from tests.test_learner import _batch

    config, _ = load_config(["--channels", "8", "--blocks", "1", "--batch-size", "4"], environ={})
    network = model.make_network(config)
    optimizer = learner.make_optimizer(config)
    state = learner.init_train_state(model.init_params(network, jax.random.PRNGKey(0)), optimizer)
    step = jax.jit(learner.make_train_step(config, model.make_apply(network), optimizer))
    good = _batch(4)
    bad = good._replace(observation=good.observation.at[0, 0, 0, 0].set(np.nan))
    after_bad, metrics = step(state, bad)
    assert float(metrics["nonfinite_skipped"]) == 1.0 and int(after_bad.step) == 0
    jax.tree.map(np.testing.assert_array_equal, after_bad.params, state.params)
    after_good, metrics = step(after_bad, good)
    assert float(metrics["nonfinite_skipped"]) == 0.0 and int(after_good.step) == 1


def test_diverging_run_stops_with_a_checkpoint(tmp_path):
    with pytest.raises(TrainingDiverged, match="every update of episode"):
        _run(tmp_path, "nan", "--episodes", "4", "--learning-rate", "1e30", "--grad-clip", "0")
    records = _records(tmp_path, "nan")
    assert records[-1]["nonfinite_skipped"] == 2  # both micro-batches of the episode
    saved = checkpoint.list_checkpoints(str(tmp_path / "ckpt"), "nan")
    assert saved and saved[-1].step == records[-1]["step"]


@pytest.mark.parametrize("seed", [0, 1])
def test_kill_9_at_a_random_moment_then_resume(tmp_path, seed):
    from tests.conftest import XLA_CACHE

    argv = [sys.executable, "-m", "chessbrain_jax.train", *TINY, "--episodes", "6", "--checkpoint-interval", "1",
            "--job-id", "kill", "--resume", "--log-dir", str(tmp_path / "runs"), "--checkpoint-dir",
            str(tmp_path / "ckpt")]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "JAX_COMPILATION_CACHE_DIR": XLA_CACHE,
           "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0.5"}
    process = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, env=env)
    moment = random.Random(seed)
    after_episode = moment.randint(1, 3)  # an episode takes ~0.2 s here: the kill lands in episodes 2-4 or a save
    for line in process.stderr:
        if line.startswith(f"episode {after_episode}/"):
            break
    # The kill comes after a complete checkpoint (one is saved per episode), so the resume has one to continue from.
    deadline = time.monotonic() + 60
    while not checkpoint.list_checkpoints(str(tmp_path / "ckpt"), "kill"):
        assert process.poll() is None and time.monotonic() < deadline, "no checkpoint before the kill"
        time.sleep(0.01)
    time.sleep(moment.uniform(0.0, 0.1))
    process.kill()
    process.communicate()
    assert process.returncode == -signal.SIGKILL  # killed while running, not after finishing
    metrics = tmp_path / "runs" / "kill" / "metrics.jsonl"
    steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines()]  # every line is whole JSON
    assert steps == sorted(set(steps))
    saved = checkpoint.list_checkpoints(str(tmp_path / "ckpt"), "kill")
    assert saved, "the checkpoint seen before the kill is gone"
    newest = checkpoint.load_network(saved[-1].path)
    assert newest.step == saved[-1].step >= 1 and newest.meta["episode"] >= 1

    finished = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    assert finished.returncode == 0, finished.stderr
    # It continued from the newest checkpoint of the killed run, not from scratch.
    assert f"resuming after episode {newest.meta['episode']} from kill_step{newest.step}" in finished.stderr
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [r["episode"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert [r["step"] for r in records] == sorted({r["step"] for r in records})
    assert checkpoint.list_checkpoints(str(tmp_path / "ckpt"), "kill")[-1].step == records[-1]["step"]


def _file_size_limit():
    """In the child: files may not grow past 30 KB (a full disk as far as a checkpoint is concerned)."""
    import resource
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing
    resource.setrlimit(resource.RLIMIT_FSIZE, (30_000, 30_000))


def test_a_checkpoint_that_cannot_be_written_keeps_the_earlier_ones(tmp_path):
    _run(tmp_path, "full", "--episodes", "2")
    kept = checkpoint.list_checkpoints(str(tmp_path / "ckpt"), "full")
    argv = [sys.executable, "-m", "chessbrain_jax.train", *TINY, "--episodes", "4", "--job-id", "full", "--resume",
            "--log-dir", str(tmp_path / "runs"), "--checkpoint-dir", str(tmp_path / "ckpt")]
    failed = subprocess.run(argv, capture_output=True, text=True, timeout=300, preexec_fn=_file_size_limit)
    assert failed.returncode == 1, failed.stderr
    last = failed.stderr.strip().splitlines()[-1]
    assert last.startswith("chessbrain_jax.train: error: checkpoint ") and "(File too large)" in last
    assert "--resume" in last
    assert "Traceback" not in failed.stderr and "Event loop is closed" not in failed.stderr, failed.stderr
    assert checkpoint.list_checkpoints(str(tmp_path / "ckpt"), "full") == kept
    assert checkpoint.load_network(kept[-1].path).step == kept[-1].step
    _run(tmp_path, "full", "--episodes", "4", "--resume")
    assert [r["episode"] for r in _records(tmp_path, "full")] == [1, 2, 3, 4]


def _config(root, job, *args):
    argv = [*TINY, "--job-id", job, "--log-dir", str(root / "runs"), "--checkpoint-dir", str(root / "ckpt"), *args]
    return load_config(argv, environ={})[0]


def test_of_two_runs_started_at_once_with_one_job_id_the_second_stops(tmp_path, monkeypatch):
    config = _config(tmp_path, "twin")
    job_dir, _, existed = prepare_folders(config, resume=False, overwrite=False)
    assert not existed and os.path.getsize(os.path.join(job_dir, "metrics.jsonl")) == 0
    with pytest.raises(UsageError, match="already exists"):  # started later: sees the job
        prepare_folders(config, resume=False, overwrite=False)
    real_exists = os.path.exists
    monkeypatch.setattr(os.path, "exists", lambda path: False if path.endswith("metrics.jsonl") else real_exists(path))
    with pytest.raises(UsageError, match="was just started by another run"):  # started at the same moment
        prepare_folders(config, resume=False, overwrite=False)


def test_resume_removes_only_this_jobs_unfinished_saves(tmp_path):
    config = _config(tmp_path, "job")
    prepare_folders(config, resume=False, overwrite=False)
    ckpt = tmp_path / "ckpt"
    mine = ckpt / "job_step8.orbax-checkpoint-tmp-1764100000"
    other = ckpt / "jobber_step8.orbax-checkpoint-tmp-1764100000"
    kept = ckpt / "job_step4"
    for folder in (mine, other, kept):
        (folder / "state").mkdir(parents=True)
    prepare_folders(config, resume=True, overwrite=False)
    assert not mine.exists() and other.exists() and kept.exists()


def test_readme_library_example_runs(straight, capsys):
    """The README's "use it as a library" block, run as written against this module's checkpoint."""
    import pathlib
    import re

    import chess

    root, finished = straight
    readme = (pathlib.Path(__file__).resolve().parent.parent / "README.md").read_text()
    code = re.search(r"## Use it as a library\n\n```python\n(.*?)```", readme, re.S)[1]
    assert code.count("\n") <= 8 and '"checkpoints/<job-id>_step<N>"' in code
    exec(code.replace('"checkpoints/<job-id>_step<N>"', repr(finished.checkpoint_path)), {})
    move, score = capsys.readouterr().out.splitlines()[:2]
    assert chess.Move.from_uci(move) in chess.Board().legal_moves
    assert 0.0 <= float(score.split()[0]) <= 1.0
