"""Configuration: the old pipeline's flags and defaults, precedence, and one-line errors for bad input."""

from __future__ import annotations

import subprocess
import sys

import pytest

from chessbrain_jax.config import FIELDS, ConfigError, build_parser, flag_name, load_config

OLD_PIPELINE_DEFAULTS = {
    "episodes": 4, "batch_size": 16, "checkpoint_interval": 2, "exploration_rate": 0.1, "seed": 7,
    "grad_accum_steps": 1, "mcts_simulations": 32, "mcts_cpuct": 1.5, "producer_workers": 0,
    "producer_queue_size": 16, "producer_device": "cpu", "no_amp": False,
}


def test_old_pipeline_flags_keep_their_defaults():
    config, _ = load_config([], environ={})
    for name, default in OLD_PIPELINE_DEFAULTS.items():
        assert getattr(config, name) == default, name
    assert config.log_dir == "./runs" and config.checkpoint_dir == "./checkpoints"
    assert config.job_id  # a timestamp


def test_every_field_is_a_documented_flag():
    help_text = build_parser().format_help()
    for name in FIELDS:
        assert flag_name(name) in help_text
    for flag in ("--config", "--no-amp", "--selfplay-batch", "--max-plies", "--search", "--log-every"):
        assert flag in help_text


def test_precedence_defaults_yaml_env_flags(tmp_path):
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text("batch_size: 32\nepisodes: 10\nmcts_simulations: 8\nno_amp: true\n")
    environ = {"CHESSBRAIN_EPISODES": "20", "CHESSBRAIN_MCTS_SIMULATIONS": "9", "TENSORBOARD_LOG_DIR": "/tmp/tb"}
    config, _ = load_config(["--config", str(yaml_file), "--mcts-simulations", "64"], environ=environ)
    assert config.batch_size == 32  # YAML over default
    assert config.episodes == 20  # environment over YAML
    assert config.mcts_simulations == 64  # flag over environment
    assert config.no_amp is True
    assert config.log_dir == "/tmp/tb"
    assert config.seed == 7  # default


def test_episode_arithmetic():
    config, _ = load_config(["--selfplay-batch", "8", "--plies-per-episode", "10", "--batch-size", "16",
                             "--grad-accum-steps", "4", "--sample-reuse", "2"], environ={})
    assert config.positions_per_episode == 80
    assert config.micro_steps_per_episode == 12  # ceil(2 * 80 / 16) = 10, rounded up to whole steps of 4
    assert config.optimizer_steps_per_episode == 3


@pytest.mark.parametrize("argv, environ, fragment", [
    (["--batch-size", "0"], {}, "--batch-size must be a positive integer"),
    (["--batch-size", "x"], {}, "--batch-size must be an integer"),
    (["--exploration-rate", "1.5"], {}, "--exploration-rate must be <= 1.0"),
    (["--search", "alphabeta"], {}, "--search must be one of gumbel, puct"),
    (["--max-plies", "600"], {}, "--max-plies must be <= 512"),
    (["--learning-rate", "nan"], {}, "--learning-rate must be a finite number"),
    (["--device", "quantum"], {}, "--device must be one of"),
    (["--bogus"], {}, "unrecognized arguments: --bogus"),
    (["--job-id", "a/b"], {}, "plain name"),
    (["--batch-size", "64", "--replay-capacity", "32"], {}, "must not exceed --replay-capacity"),
    (["--sample-reuse", "0"], {}, "--sample-reuse must be > 0.0"),
    (["--value-material-weight", "0.6", "--value-root-weight", "0.5"], {}, "must add up to at most 1"),
    (["--value-material-weight", "-0.1"], {}, "--value-material-weight must be >= 0.0"),
    (["--weight-decay", "0.01"], {}, "--weight-decay (0.01) needs --optimizer adamw"),
    (["--playout-cap-fraction", "0.25", "--playout-cap-simulations", "32"], {},
     "--playout-cap-simulations (32) must be below --mcts-simulations (32)"),
    (["--playout-cap-fraction", "0"], {}, "--playout-cap-fraction must be > 0.0"),
    (["--dirichlet-alpha", "0"], {}, "--dirichlet-alpha must be > 0.0"),
    (["--seed", "99999999999999999999"], {}, "--seed must be <= 4294967295"),
    (["--episodes", "2.5"], {}, "--episodes must be an integer, got '2.5'"),
    ([], {"CHESSBRAIN_EPISODES": "-1"}, "environment variable CHESSBRAIN_EPISODES must be a positive integer"),
    ([], {"CHESSBRAIN_EPISODS": "3"}, "CHESSBRAIN_EPISODS is not a setting (did you mean 'episodes'?)"),
    ([], {"CHESSBRAIN_NO_AMP": "maybe"}, "must be a boolean"),
])
def test_bad_values_name_the_problem(argv, environ, fragment):
    with pytest.raises(ConfigError, match=None) as caught:
        load_config(argv, environ=environ)
    assert fragment in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("text, fragment", [
    ("batch_sise: 3\n", "unknown key 'batch_sise' (did you mean 'batch_size'?)"),
    ("batch_size: [1, 2]\n", "batch_size must be an integer"),
    ("batch_size: 2.5\n", "batch_size must be an integer"),
    ("episodes: -3\n", "episodes must be a positive integer"),
    ("search: {a: 1}\n", "search must be a string"),
    ("- 1\n- 2\n", "must hold a mapping"),
    ("batch_size: [1, 2\n", "is not valid YAML at line"),
])
def test_bad_yaml_names_the_problem(tmp_path, text, fragment):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(["--config", str(path)], environ={})
    assert fragment in str(caught.value)


@pytest.mark.parametrize("args, fragment", [
    (["--batch-size", "-4"], "--batch-size must be a positive integer; got -4"),
    (["--config", "/nonexistent/x.yaml"], "config file /nonexistent/x.yaml does not exist"),
    (["--mcts-simulations"], "expected one argument"),
    (["--search", "mcts"], "--search must be one of gumbel, puct"),
])
def test_cli_usage_errors_exit_2_with_one_line(args, fragment):
    result = subprocess.run([sys.executable, "-m", "chessbrain_jax.train", *args], capture_output=True, text=True,
                            timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("chessbrain_jax.train: error: ")
    assert fragment in lines[0]
    assert "Traceback" not in result.stderr


def test_cli_bad_yaml_value_exits_2(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("mcts_cpuct: fast\n")
    result = subprocess.run([sys.executable, "-m", "chessbrain_jax.train", "--config", str(path)],
                            capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 2
    assert result.stderr.strip() == f"chessbrain_jax.train: error: config file {path}: mcts_cpuct must be a number, got 'fast'"


def test_shipped_configs_are_valid():
    import pathlib

    configs = sorted(pathlib.Path(__file__).resolve().parent.parent.glob("configs/*.yaml"))
    assert configs, "configs/ has no YAML files"
    for path in configs:
        load_config(["--config", str(path)], environ={})


def test_precision_resolution():
    from chessbrain_jax.config import resolve_precision

    def precision(argv, platform):
        return resolve_precision(load_config(argv, environ={})[0], platform)[0]

    assert precision([], "cpu") == "float32"
    assert precision([], "gpu") == precision([], "tpu") == "bfloat16"
    assert precision(["--no-amp"], "gpu") == "float32"
    assert precision(["--precision", "bfloat16"], "cpu") == "bfloat16"
    assert precision(["--no-amp", "--precision", "bfloat16"], "cpu") == "float32"  # --no-amp wins


def test_integers_in_scientific_notation(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("replay_capacity: 1e5\nepisodes: 2.0e2\n")  # PyYAML reads these as strings
    config, _ = load_config(["--config", str(path)], environ={"CHESSBRAIN_SEED": "1e3"})
    assert (config.replay_capacity, config.episodes, config.seed) == (100000, 200, 1000)
