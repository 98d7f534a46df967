"""Scale-out on forced host devices: data parallelism over 4 CPU devices (exact gradient arithmetic, real placement,
checkpoints that restore onto other device counts), producer/consumer mode, and a two-process jax.distributed job.

JAX fixes its device count when it starts, so each check runs in a subprocess with
`XLA_FLAGS=--xla_force_host_platform_device_count=N`.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.conftest import CACHE_ENVIRONMENT

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--channels", "8", "--blocks", "1", "--mcts-simulations", "2", "--gumbel-considered-actions", "2",
        "--plies-per-episode", "4", "--batch-size", "8", "--replay-capacity", "256", "--quiet"]


def _environment(devices: int | None) -> dict[str, str]:
    """A clean environment on the CPU with `devices` forced host devices (None: JAX's default, or --cpu-devices)."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("CHESSBRAIN_", "JAX_", "SLURM_", "XLA_FLAGS"))}
    env.update(JAX_PLATFORMS="cpu", PYTHONPATH=ROOT, **CACHE_ENVIRONMENT)
    if devices is not None:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return env


def _python(code: str, devices: int, timeout: int = 600) -> dict:
    """Runs `code` in a fresh interpreter with `devices` CPU devices; returns the JSON object it prints last."""
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                            env=_environment(devices), cwd=ROOT, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _train(args: list[str], devices: int | None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "chessbrain_jax.train", *args], capture_output=True, text=True,
                          env=_environment(devices), cwd=ROOT, timeout=timeout)


DATA_PARALLEL_CHECKS = """
import json, tempfile
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import PartitionSpec as P
from chessbrain_jax.storage import checkpoint
from chessbrain_jax.core import learner, model, replay
from chessbrain_jax.scale import sharding
from tests.conftest import make_config
from tests.test_learner import _batch

out = {"devices": jax.device_count()}
config = make_config(selfplay_batch=8, plies_per_episode=4, mcts_simulations=2, gumbel_considered_actions=2,
                     batch_size=8, replay_capacity=64, learning_rate=0.1, optimizer="sgd", moves_left_weight=0.5)
network = model.make_network(config)
apply_fn = model.make_apply(network)
optimizer = learner.make_optimizer(config)
params = model.init_params(network, jax.random.PRNGKey(0))

# 1. One train step on a global batch of 8: 1 device vs 4 devices with 2 samples each.
batch = _batch(8)
single = jax.jit(learner.make_train_step(config, apply_fn, optimizer))
parallel = sharding.DataParallel(config)
step = learner.make_train_step(config, apply_fn, optimizer, axis=sharding.AXIS)
sharded = jax.jit(jax.shard_map(step, mesh=parallel.mesh, in_specs=(P(), P(sharding.AXIS)), out_specs=(P(), P()),
                                check_vma=False))
one = four = learner.init_train_state(params, optimizer)
for _ in range(3):
    one, one_metrics = single(one, batch)
    four, four_metrics = sharded(four, jax.device_put(batch, parallel.sharding(P(sharding.AXIS))))
out["param_max_diff"] = max(float(jnp.max(jnp.abs(a - b))) for a, b in
                            zip(jax.tree.leaves(one.params), jax.tree.leaves(four.params)))
out["param_max_change"] = max(float(jnp.max(jnp.abs(a - b))) for a, b in
                              zip(jax.tree.leaves(one.params), jax.tree.leaves(params)))
out["metrics_one"] = {k: float(v) for k, v in one_metrics.items()}
out["metrics_four"] = {k: float(v) for k, v in sharding.fetch(four_metrics).items()}

# 2. Self-play: each device plays its 2 games; slots keep their global numbers.
state = parallel.replicate(learner.init_train_state(params, optimizer))
games = parallel.init_games()
play = jax.jit(parallel.play_episode(apply_fn))
games, trajectory, stats = play(state.params, games, parallel.replicate(jax.random.PRNGKey(3)))
shards = games.env.observation.addressable_shards
out["game_shards"] = sorted((shard.device.id, shard.data.shape[0]) for shard in shards)
out["trajectory_slots"] = np.asarray(trajectory.position.slot).tolist()
out["slot_shards"] = sorted((s.device.id, np.asarray(s.data)[0].tolist()) for s in
                            trajectory.position.slot.addressable_shards)

# 3. Replay: device d's columns hold its own games; a sharded micro-step keeps the replicas identical.
buffer = jax.jit(parallel.add())(parallel.init_buffer(), trajectory, games)
out["buffer_slots"] = np.asarray(buffer.positions.slot[:4]).tolist()
out["buffer_size"] = np.asarray(buffer.size).tolist()
out["buffer_shards"] = sorted((s.device.id, list(s.data.shape[:2])) for s in
                              buffer.positions.policy.addressable_shards)
micro = jax.jit(parallel.micro_step(config, apply_fn, optimizer))
state, metrics = micro(state, buffer, parallel.replicate(jax.random.PRNGKey(4)))
leaf = jax.tree.leaves(state.params)[0]
replicas = [np.asarray(s.data) for s in leaf.addressable_shards]
out["replicas"] = len(replicas)
out["replicas_equal"] = all(np.array_equal(replicas[0], r) for r in replicas)
out["micro_loss"] = float(sharding.fetch(metrics)["loss"])

# 4. A checkpoint of the 4-device state restores onto 2 devices and onto 1, unchanged.
folder = tempfile.mkdtemp()
manager = checkpoint.make_manager(folder, "dp")
checkpoint.save(manager, state, jax.random.PRNGKey(5), checkpoint.RunState(games, buffer),
                {"config": config.to_dict()})
manager.wait_until_finished()
saved = jax.device_get((games, buffer))
for count in (2, 1):
    target = sharding.DataParallel(config, jax.devices()[:count])
    run = checkpoint.restore_run(manager, int(state.step), config, target.sharding(sharding.GAMES),
                                 target.sharding(sharding.BUFFER))
    restored_state, _, _ = checkpoint.restore(manager, int(state.step), config,
                                              target.sharding(sharding.REPLICATED))
    same = all(np.array_equal(a, b, equal_nan=a.dtype.kind == "f")  # the results table holds NaN
               for a, b in zip(jax.tree.leaves(saved), jax.tree.leaves(jax.device_get(run))))
    devices = {d.id for x in jax.tree.leaves(run) for d in x.sharding.device_set}
    params_same = all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(jax.device_get(state.params)),
                                                            jax.tree.leaves(jax.device_get(restored_state.params))))
    out[f"restored_on_{count}"] = [same, len(devices), params_same]
manager.close()
print(json.dumps(out))
"""


@pytest.mark.slow
def test_data_parallel_on_four_devices_is_exact_placed_and_restorable():
    out = _python(DATA_PARALLEL_CHECKS, devices=4)
    assert out["devices"] == 4
    # The sharded update is the single-device update (value loss normalised globally, not a mean of means): after
    # three SGD steps the parameters agree to float32 rounding of differently ordered sums.
    assert out["param_max_change"] > 1e-2
    assert out["param_max_diff"] < 1e-4 * out["param_max_change"]
    for name in ("loss", "policy_loss", "value_loss", "l2", "grad_norm", "value_targets_known", "moves_left_loss",
                 "moves_left_error"):
        assert out["metrics_four"][name] == pytest.approx(out["metrics_one"][name], rel=1e-5, abs=1e-6), name
    # Games and replay columns are split 2 per device, and slot numbers stay global.
    assert out["game_shards"] == [[0, 2], [1, 2], [2, 2], [3, 2]]
    assert out["trajectory_slots"] == [list(range(8))] * 4
    assert out["slot_shards"] == [[0, [0, 1]], [1, [2, 3]], [2, [4, 5]], [3, [6, 7]]]
    assert out["buffer_slots"] == [list(range(8))] * 4
    assert out["buffer_size"] == [4] * 8
    assert out["buffer_shards"] == [[0, [8, 2]], [1, [8, 2]], [2, [8, 2]], [3, [8, 2]]]
    assert out["replicas"] == 4 and out["replicas_equal"] and np.isfinite(out["micro_loss"])
    assert out["restored_on_2"] == [True, 2, True]
    assert out["restored_on_1"] == [True, 1, True]


@pytest.mark.slow
def test_four_device_training_resumes_on_one_device(tmp_path):
    common = ["--job-id", "dp", "--log-dir", str(tmp_path / "runs"), "--checkpoint-dir", str(tmp_path / "ck"),
              "--selfplay-batch", "8", "--selfplay-pgn-games", "2", *TINY]
    first = _train([*common, "--episodes", "2", "--eval-interval", "2", "--eval-games", "2",
                    "--eval-simulations", "0"], devices=4)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "data parallel over 4 cpu device(s): 2 games and 2 samples per micro-batch on each" in first.stderr
    run = json.loads((tmp_path / "runs" / "dp" / "run.json").read_text())
    assert run["parallelism"]["mode"] == "synchronous" and run["parallelism"]["devices"] == 4
    assert run["parallelism"]["one_program_at_a_time"]  # CPU devices: no two multi-device programs in flight
    assert len(run["devices"]) == 4
    records = [json.loads(line) for line in (tmp_path / "runs" / "dp" / "metrics.jsonl").read_text().splitlines()]
    assert [r["episode"] for r in records] == [1, 2] and records[-1]["step"] == 2 * 4
    assert records[-1]["eval/wins"] + records[-1]["eval/draws"] + records[-1]["eval/losses"] == 2
    second = _train([*common, "--episodes", "3", "--resume"], devices=1)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resuming after episode 2" in second.stderr and "over 1 cpu device(s)" in second.stderr
    records = [json.loads(line) for line in (tmp_path / "runs" / "dp" / "metrics.jsonl").read_text().splitlines()]
    assert [r["episode"] for r in records] == [1, 2, 3] and records[-1]["positions"] == 3 * 8 * 4
    odd = _train([*common, "--job-id", "odd", "--selfplay-batch", "6"], devices=4)
    assert odd.returncode == 2 and odd.stderr.count("\n") == 1
    assert "--selfplay-batch 6 must be a multiple of the 4 devices" in odd.stderr
    split = _train([*common, "--job-id", "split", "--cpu-devices", "3"], devices=None)  # 3 CPU devices, 8 games
    assert split.returncode == 2 and "--selfplay-batch 8 must be a multiple of the 3 devices" in split.stderr


def test_cpu_devices_auto_picks_a_divisor_of_both_batches():
    from chessbrain_jax.run.devices import cpu_device_count
    from tests.conftest import make_config

    assert cpu_device_count(make_config(cpu_devices=0, selfplay_batch=64, batch_size=64), cores=2) == 2
    assert cpu_device_count(make_config(cpu_devices=0, selfplay_batch=64, batch_size=64), cores=6) == 4
    assert cpu_device_count(make_config(cpu_devices=0, selfplay_batch=12, batch_size=8), cores=8) == 4
    assert cpu_device_count(make_config(cpu_devices=0, selfplay_batch=7, batch_size=8), cores=8) == 1
    assert cpu_device_count(make_config(cpu_devices=3), cores=2) == 3


@pytest.mark.slow
def test_producer_consumer_finishes_drains_and_reports_staleness(tmp_path):
    args = ["--job-id", "pc", "--log-dir", str(tmp_path / "runs"), "--checkpoint-dir", str(tmp_path / "ck"),
            "--selfplay-batch", "8", "--producer-workers", "2", "--producer-queue-size", "2",
            "--producer-device", "cpu", "--episodes", "3", "--replay-capacity", "4096", *TINY[:-3], "--quiet"]
    result = _train(args, devices=4)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 producer(s) of 4 games each on cpu:2, cpu:3" in result.stderr
    assert "learner: data parallel over 2 cpu device(s)" in result.stderr
    records = [json.loads(line) for line in (tmp_path / "runs" / "pc" / "metrics.jsonl").read_text().splitlines()]
    assert [r["episode"] for r in records] == [1, 2, 3]
    for record in records:
        assert record["producer/staleness_max"] >= record["producer/staleness_mean"] >= 0
    assert records[0]["producer/staleness_mean"] == 0  # nothing trained before the first chunks
    run = json.loads((tmp_path / "runs" / "pc" / "run.json").read_text())
    assert run["parallelism"]["mode"] == "producer/consumer" and len(run["parallelism"]["producers"]) == 2
    # No trajectory lost: every position produced (3 episodes + the drained queue) is in the checkpoint's buffer.
    from chessbrain_jax.storage import checkpoint

    saved = checkpoint.list_checkpoints(str(tmp_path / "ck"), "pc")[-1]
    manager = checkpoint.make_manager(str(tmp_path / "ck"), "pc", read_only=True)
    meta = checkpoint.read_meta(manager, saved.step)
    run_state = checkpoint.restore_run(manager, saved.step, checkpoint.config_from_meta(meta))
    manager.close()
    assert meta["positions"] >= 3 * 8 * 4 and meta["positions"] % (4 * 4) == 0
    assert int(np.asarray(run_state.buffer.size).sum()) == meta["positions"]
    # Each producer's games in the checkpoint are those after its last chunk in the buffer.
    np.testing.assert_array_equal(np.asarray(run_state.buffer.slot_generation),
                                  np.asarray(run_state.games.generation))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_two_process_job_on_localhost(tmp_path):
    port = _free_port()
    common = ["--job-id", "mp", "--log-dir", str(tmp_path / "runs"), "--checkpoint-dir", str(tmp_path / "ck"),
              "--selfplay-batch", "8", "--episodes", "2", "--coordinator-address", f"localhost:{port}",
              "--num-processes", "2", *TINY]
    processes = [subprocess.Popen([sys.executable, "-m", "chessbrain_jax.train", *common, "--process-id", str(i)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_environment(2),
                                  cwd=ROOT) for i in range(2)]
    outputs = [process.communicate(timeout=600) for process in processes]
    for process, (_, stderr) in zip(processes, outputs):
        assert process.returncode == 0, stderr[-3000:]
    assert "4 cpu device(s) in 2 processes" in outputs[0][1]
    assert "[chessbrain_jax.train]" not in outputs[1][1] and "episode 1/2" not in outputs[1][1]  # process 0 speaks
    run = json.loads((tmp_path / "runs" / "mp" / "run.json").read_text())
    assert run["processes"] == 2 and len(run["devices"]) == 4
    records = (tmp_path / "runs" / "mp" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["episode"] for line in records] == [1, 2]  # written once, by process 0
    from chessbrain_jax.storage import checkpoint

    loaded = checkpoint.load_network(str(tmp_path / "ck" / "mp_step8"))
    assert loaded.step == 8
