"""JAX's persistent compilation cache: a start of train, arena, uci or bench reuses the XLA programs an earlier
start compiled (tens of seconds each for self-play and training) instead of compiling them again.

The setting (`--compile-cache`, or `$CHESSBRAIN_COMPILE_CACHE`) is a folder, `auto` (the per-user cache folder,
`$XDG_CACHE_HOME/chessbrain_jax/xla`, default `~/.cache/chessbrain_jax/xla`) or `off`. A folder that cannot be
written turns the cache off with one line saying so; nothing else changes. JAX keys each entry by the program,
the jax/XLA versions, the devices and the compile options, so a stale entry is never used; it caches only programs
that took at least a second to compile.
"""

from __future__ import annotations

import os
import tempfile
from typing import Callable, Mapping

ENV = "CHESSBRAIN_COMPILE_CACHE"
OFF = ("off", "none", "false", "0", "")
HELP = ("JAX's persistent compilation cache: a folder, auto (the per-user cache folder, "
        "$XDG_CACHE_HOME/chessbrain_jax/xla or ~/.cache/chessbrain_jax/xla), or off.")


def folder_of(setting: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The cache folder a setting names, or None for `off`."""
    environ = os.environ if environ is None else environ
    if setting.strip().lower() in OFF:
        return None
    if setting.strip().lower() == "auto":
        base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        return os.path.join(base, "chessbrain_jax", "xla")
    return os.path.abspath(os.path.expanduser(setting))


def _writable(folder: str) -> bool:
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".probe-"):
            return True
    except OSError:
        return False


def enable(setting: str = "auto", environ: Mapping[str, str] | None = None,
           note: Callable[[str], None] | None = None) -> str | None:
    """Points JAX's persistent cache at `setting`'s folder (before the first compile); returns the folder, or None
    when the setting is off or the folder cannot be written (then `note` gets one line saying so)."""
    import jax

    folder = folder_of(setting, environ)
    if folder is None:
        return None
    if setting.strip().lower() == "auto" and jax.config.jax_compilation_cache_dir:
        return jax.config.jax_compilation_cache_dir  # JAX's own setting ($JAX_COMPILATION_CACHE_DIR) wins over auto
    if not _writable(folder):
        if note is not None:
            note(f"note: compile cache off: {folder} cannot be written (--compile-cache off silences this)")
        return None
    jax.config.update("jax_compilation_cache_dir", folder)
    return folder


def add_argument(parser) -> None:
    """`--compile-cache` for the command lines that are not configured by `Config` (arena, uci)."""
    parser.add_argument("--compile-cache", default=os.environ.get(ENV, "auto"), metavar="DIR|auto|off", help=HELP)
