"""Bad input through the real command line: exit status 2 and one line on stderr that names the problem."""

from __future__ import annotations

import subprocess
import sys

import pytest

FAST = ["--episodes", "1", "--selfplay-batch", "2", "--plies-per-episode", "1", "--mcts-simulations", "2",
        "--channels", "4", "--blocks", "0", "--batch-size", "2", "--replay-capacity", "8"]

# (flags, environment, YAML text or None, fragment of the error line)
CASES = [
    (["--episodes", "0"], {}, None, "--episodes must be a positive integer; got 0"),
    (["--episodes", "many"], {}, None, "--episodes must be an integer, got 'many'"),
    (["--batch-size", "-1"], {}, None, "--batch-size must be a positive integer"),
    (["--checkpoint-interval", "0"], {}, None, "--checkpoint-interval must be a positive integer"),
    (["--exploration-rate", "-0.1"], {}, None, "--exploration-rate must be >= 0.0"),
    (["--exploration-rate", "2"], {}, None, "--exploration-rate must be <= 1.0"),
    (["--seed", "-3"], {}, None, "--seed must be >= 0"),
    (["--grad-accum-steps", "0"], {}, None, "--grad-accum-steps must be a positive integer"),
    (["--mcts-simulations", "3.5"], {}, None, "--mcts-simulations must be an integer"),
    (["--mcts-cpuct", "inf"], {}, None, "--mcts-cpuct must be a finite number"),
    (["--producer-device", "fpga"], {}, None, "--producer-device must be one of cpu, gpu, tpu, auto"),
    (["--search", "minimax"], {}, None, "--search must be one of gumbel, puct"),
    (["--max-plies", "1000"], {}, None, "--max-plies must be <= 512"),
    (["--sample-reuse", "0"], {}, None, "--sample-reuse must be > 0.0"),
    (["--learning-rate"], {}, None, "argument --learning-rate: expected one argument"),
    (["--chanels", "8"], {}, None, "unrecognized arguments: --chanels 8"),
    (["--resume", "--overwrite"], {}, None, "--resume and --overwrite exclude each other"),
    (["--job-id", "../escape"], {}, None, "must be a plain name without path separators"),
    (["--config", "/nonexistent.yaml"], {}, None, "config file /nonexistent.yaml does not exist"),
    (["--config", "/"], {}, None, "config file / is a directory"),
    ([], {}, "episodes: [1\n", "is not valid YAML at line 2"),
    ([], {}, "- just\n- a list\n", "must hold a mapping of keys to values"),
    ([], {}, "batchsize: 4\n", "unknown key 'batchsize' (did you mean 'batch_size'?)"),
    ([], {}, "no_amp: sometimes\n", "no_amp must be a boolean"),
    ([], {}, "search: 3\n", "search must be one of gumbel, puct"),
    ([], {"CHESSBRAIN_EPISODES": "zero"}, None, "environment variable CHESSBRAIN_EPISODES must be an integer"),
    ([], {"CHESSBRAIN_SEARCH": "mcts"}, None, "environment variable CHESSBRAIN_SEARCH must be one of gumbel, puct"),
    ([], {"CHESSBRAIN_BATCH": "4"}, None, "environment variable CHESSBRAIN_BATCH is not a setting"),
    ([], {"CHESSBRAIN_QUIET": "perhaps"}, None, "must be a boolean"),
    (["--batch-size", "16", "--replay-capacity", "8"], {}, None, "must not exceed --replay-capacity"),
    (["--selfplay-start-share", "0.5"], {}, None, "--selfplay-start-share (0.5) needs --selfplay-starts FILE"),
    (["--playout-cap-mate-targets"], {}, None, "--playout-cap-mate-targets needs --play-searched-mates"),
    (["--selfplay-start-share", "2"], {}, None, "--selfplay-start-share must be <= 1.0"),
]


@pytest.mark.parametrize("flags, environment, yaml_text, fragment", CASES)
def test_usage_errors(tmp_path, flags, environment, yaml_text, fragment):
    argv = list(flags)
    if yaml_text is not None:
        path = tmp_path / "config.yaml"
        path.write_text(yaml_text)
        argv = ["--config", str(path), *argv]
    result = subprocess.run([sys.executable, "-m", "chessbrain_jax.train", *argv], capture_output=True, text=True,
                            timeout=60, cwd=tmp_path,
                            env={"PATH": "/usr/bin:/bin", "CHESSBRAIN_COMPILE_CACHE": "off", **environment})
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("chessbrain_jax.train: error: "), result.stderr
    assert fragment in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("flags, fragment", [
    (["--log-dir", "/dev/null/runs"], "--log-dir: cannot create"),
    (["--checkpoint-dir", "/dev/null/ckpt"], "--checkpoint-dir: cannot create"),
    (["--log-dir", "/sys"], "--log-dir: cannot create /sys/"),  # exists, but no one may create folders in sysfs
    (["--device", "gpu"], "--device gpu: no GPU is available to JAX"),
    (["--eval-interval", "1", "--eval-opponent", "nobody"], "is not a checkpoint folder"),
    (["--eval-interval", "1", "--eval-opponent", "stockfish,nodes=0"], "nodes must be >= 1"),
    (["--selfplay-starts", "nowhere.fen", "--selfplay-start-share", "0.5"],
     "--selfplay-starts: cannot read file nowhere.fen: No such file or directory"),
])
def test_environment_errors_after_start(tmp_path, flags, fragment):
    result = subprocess.run([sys.executable, "-m", "chessbrain_jax.train", *FAST, "--quiet", *flags],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path,
                            env={"PATH": "/usr/bin:/bin", "JAX_PLATFORMS": "", "CHESSBRAIN_COMPILE_CACHE": "off"})
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("chessbrain_jax.train: error: ") and fragment in last
    assert "Traceback" not in result.stderr


def test_a_bad_start_pool_stops_the_run_before_it_makes_folders(tmp_path):
    (tmp_path / "pool.fen").write_text("8/8/8/4k3/8/8/8/R3K3 w - - 0 1\n8/8/8/8/8/8/8/8 w - - 0 1\n")
    result = subprocess.run([sys.executable, "-m", "chessbrain_jax.train", *FAST, "--quiet", "--selfplay-starts",
                             "pool.fen", "--selfplay-start-share", "0.5"], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path,
                            env={"PATH": "/usr/bin:/bin", "JAX_PLATFORMS": "", "CHESSBRAIN_COMPILE_CACHE": "off"})
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "chessbrain_jax.train: error: --selfplay-starts: pool.fen:2: not a legal position (no white king, no black "
        "king, empty)"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["pool.fen"]


# The other commands: (module, arguments, file to write first as (name, text) or None, fragment of the error line)
OTHER_TOOLS = [
    ("arena", ["random", "random", "--openings", "{tmp}/book.epd"], ("book.epd", "not a fen\n"),
     "book.epd:1: not a FEN or EPD position"),
    ("arena", ["random", "random", "--openings", "{tmp}/book.epd"], ("book.epd", "8/8/8/8/8/8/8/8 w - - 0 1\n"),
     "book.epd:1: not a legal position (no white king, no black king"),
    ("arena", ["{tmp}/nowhere_step4", "random"], None, "nowhere_step4 does not exist"),
    ("arena", ["{tmp}/notes.txt", "random"], ("notes.txt", "hello\n"), "is not a checkpoint folder"),
    ("arena", ["random", "random", "--games", "0"], None, "--games must be >= 1, got 0"),
    ("arena", ["untrained,channels=x", "random"], None, "channels must be an integer"),
    ("arena", ["job:ghost", "random", "--checkpoint-dir", "{tmp}"], None, "ghost"),
    ("uci", ["--checkpoint", "{tmp}"], None, "is not a checkpoint folder"),
    ("registry", ["--checkpoint-dir", "{tmp}/nothere"], None, "is not a folder"),
    ("bench", ["--channels", "0"], None, "--channels must be >= 1, got 0"),
    ("plan", ["--device-memory-gb", "lots"], None, "--device-memory-gb: invalid float value: 'lots'"),
    ("plan", ["--episodes", "0"], None, "--episodes must be"),
]


@pytest.mark.parametrize("module, arguments, file, fragment", OTHER_TOOLS)
def test_other_commands_reject_bad_input_in_one_line(tmp_path, module, arguments, file, fragment):
    if file is not None:
        (tmp_path / file[0]).write_text(file[1])
    argv = [argument.format(tmp=tmp_path) for argument in arguments]
    result = subprocess.run([sys.executable, "-m", f"chessbrain_jax.{module}", *argv], capture_output=True,
                            text=True, timeout=120, cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "JAX_PLATFORMS": "",
                                                                 "CHESSBRAIN_COMPILE_CACHE": "off"},
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and ": error: " in lines[0] and fragment in lines[0], result.stderr
