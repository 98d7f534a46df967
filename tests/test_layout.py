"""The layering rule, read from the source (ast): each folder imports only the folders below it.

    config  <  core (hot path)  <  scale  <  storage  <  play  <  run  <  the commands (train, arena, uci, ...)

The hot path also imports no I/O library (Orbax, tensorboardX, python-chess), and nothing imports the training
CLI module `chessbrain_jax.train` or another command. docs/architecture.md draws the same picture.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "chessbrain_jax"
LAYERS = ("config", "core", "scale", "storage", "play", "run")
COMMANDS = ("train", "arena", "uci", "registry", "bench", "plan")
IO_LIBRARIES = ("orbax", "tensorboardX", "chess")


def layer_of(module: str) -> int:
    """Rank of a `chessbrain_jax.*` module: its folder's (or config's) place in LAYERS; commands above all."""
    parts = module.split(".")
    head = parts[1] if len(parts) > 1 else "__init__"
    return LAYERS.index(head) if head in LAYERS else len(LAYERS)


def imports_of(path: pathlib.Path, module: str, root: pathlib.Path) -> list[tuple[int, str]]:
    """(line, imported module) for every import in the file, at any depth (function-local ones too); for
    `from package import name`, the name counts as a module when it is one under `root` (the package's parent)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                package = module.split(".")[: -node.level]
                base = ".".join(package + ([base] if base else []))
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                path_of = root / candidate.replace(".", "/")
                is_module = path_of.with_suffix(".py").exists() or path_of.is_dir()
                found.append((node.lineno, candidate if is_module else base))
    return found


def violations(package: pathlib.Path = PACKAGE) -> list[str]:
    """Every import in `package` that breaks the rule, as 'file:line: what'."""
    problems = []
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package.parent).with_suffix("")
        module = ".".join(relative.parts).removesuffix(".__init__")
        own = layer_of(module)
        for line, imported in imports_of(path, module, package.parent):
            where = f"{relative}.py:{line}"
            top = imported.split(".")[0]
            if module.startswith("chessbrain_jax.core") and top in IO_LIBRARIES:
                problems.append(f"{where}: the hot path imports the I/O library {imported}")
            if top != "chessbrain_jax" or imported == "chessbrain_jax":
                continue
            if imported.split(".")[1] in COMMANDS and imported != module:
                problems.append(f"{where}: {module} imports the command {imported}")
            elif layer_of(imported) > own:
                problems.append(f"{where}: {module} (layer {LAYERS[own] if own < len(LAYERS) else 'commands'}) "
                                f"imports {imported}, which lies above it")
    return problems


def test_every_import_runs_downward():
    assert violations() == []


def test_every_module_sits_in_a_layer():
    loose = [path.name for path in PACKAGE.glob("*.py")
             if path.stem not in (*COMMANDS, "config", "__init__", "__main__")]
    assert loose == [], "a module at the top level that is neither config nor a command: put it in a layer folder"
    assert sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__") == \
        sorted(LAYERS[1:])


@pytest.mark.parametrize("module, source, expected", [
    ("core/search.py", "from chessbrain_jax.storage import checkpoint\n", "lies above it"),
    ("core/replay.py", "def f():\n    from chessbrain_jax.run import loop\n", "lies above it"),
    ("scale/sharding.py", "import chessbrain_jax.play.player\n", "lies above it"),
    ("core/model.py", "import orbax.checkpoint as ocp\n", "I/O library"),
    ("play/arena.py", "from chessbrain_jax import train\n", "imports the command"),
    ("run/loop.py", "from .. import bench\n", "imports the command"),
    ("config.py", "from chessbrain_jax.core import model\n", "lies above it"),
])
def test_an_upward_import_is_caught(tmp_path, module, source, expected):
    """The checker on a copy of the package with one forbidden import added: it names the file, line and reason."""
    import shutil

    copy = tmp_path / "chessbrain_jax"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / module
    target.write_text(target.read_text() + "\n" + source)
    found = violations(copy)
    assert len(found) == 1 and found[0].startswith(f"chessbrain_jax/{module}:") and expected in found[0], found
