"""The persistent compilation cache: where `--compile-cache` points, that an unwritable folder turns it off in one
line, and that a start writes compiled programs there for the next one."""

from __future__ import annotations

import os
import subprocess
import sys

from chessbrain_jax.storage import compile_cache

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_settings_name_folders():
    assert compile_cache.folder_of("auto", {"XDG_CACHE_HOME": "/x/cache"}) == "/x/cache/chessbrain_jax/xla"
    assert compile_cache.folder_of("auto", {}).endswith(os.path.join(".cache", "chessbrain_jax", "xla"))
    assert compile_cache.folder_of("off", {}) is None and compile_cache.folder_of("OFF ", {}) is None
    assert compile_cache.folder_of("rel/dir", {}) == os.path.abspath("rel/dir")


def test_an_unwritable_folder_turns_the_cache_off_with_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    notes = []
    assert compile_cache.enable(str(blocker / "xla"), note=notes.append) is None
    assert len(notes) == 1 and "compile cache off" in notes[0] and str(blocker / "xla") in notes[0]
    assert compile_cache.enable("off", note=notes.append) is None and len(notes) == 1


def _arena(cache: str, tmp_path, xdg: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("CHESSBRAIN_", "JAX_"))}
    env.update(JAX_PLATFORMS="cpu", PYTHONPATH=ROOT, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               XDG_CACHE_HOME=str(tmp_path / xdg))
    argv = ["untrained,channels=8,blocks=1", "random", "--games", "2", "--simulations", "2", "--max-plies", "4",
            "--out", str(tmp_path / "match"), "--compile-cache", cache]
    return subprocess.run([sys.executable, "-m", "chessbrain_jax.arena", *argv], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=300)


def test_a_start_writes_its_programs_to_the_per_user_cache(tmp_path):
    first = _arena("auto", tmp_path, "home")
    assert first.returncode == 0, first.stderr
    cache = tmp_path / "home" / "chessbrain_jax" / "xla"
    entries = [name for name in os.listdir(cache) if not name.startswith(".")]
    assert any(name.startswith("jit_") for name in entries), entries
