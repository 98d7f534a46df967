"""Shared fixtures. Every distinct jitted shape costs seconds of XLA compile on a small CPU, so tests share tiny
configs and compiled functions through module- or session-scoped fixtures."""

from __future__ import annotations

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import tempfile  # noqa: E402

import jax  # noqa: E402
import pytest  # noqa: E402

# Identical programs compiled by different tests (each training run compiles its own) load from this cache; it is
# shared by the pytest-xdist workers of one run and by the subprocesses tests start (they inherit the variables).
_RUN = os.environ.get("PYTEST_XDIST_TESTRUNUID")
XLA_CACHE = (os.path.join(tempfile.gettempdir(), f"chessbrain-xla-cache-{_RUN}") if _RUN
             else tempfile.mkdtemp(prefix="chessbrain-xla-cache-"))
os.makedirs(XLA_CACHE, exist_ok=True)
CACHE_ENVIRONMENT = {"JAX_COMPILATION_CACHE_DIR": XLA_CACHE, "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0.5"}
os.environ.update(CACHE_ENVIRONMENT)
jax.config.update("jax_compilation_cache_dir", XLA_CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)

from chessbrain_jax.config import Config, load_config  # noqa: E402


def make_config(**overrides) -> Config:
    """A tiny config; `overrides` use field names (batch_size=4)."""
    settings = dict(selfplay_batch=4, plies_per_episode=4, mcts_simulations=8, channels=8, blocks=1,
                    batch_size=8, replay_capacity=256, job_id="test")
    settings.update(overrides)
    argv = []
    for name, value in settings.items():
        flag = "--" + name.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif value is not False:
            argv += [flag, str(value)]
    return load_config(argv, environ={})[0]


@pytest.fixture(scope="session")
def tiny_network():
    """(network, params, apply_fn) of an untrained 8-channel, 1-block net."""
    from chessbrain_jax.core import model

    network = model.ChessNet(channels=8, blocks=1)
    params = model.init_params(network, jax.random.PRNGKey(0))
    return network, params, lambda p, observation: network.apply({"params": p}, observation)


def confident_prior(apply_fn, favourite: int, unlikely: int):
    """`apply_fn` with a fixed prior: logit 6 on pgx action `favourite`, -2 on `unlikely` (e^-8 of the favourite's
    weight), 0 elsewhere, and value 0: a search must find `unlikely`'s worth itself."""
    import jax.numpy as jnp

    def confident(p, observation):
        logits, value = apply_fn(p, observation)
        bias = jnp.zeros(logits.shape[-1]).at[favourite].set(6.0).at[unlikely].set(-2.0)
        return jnp.zeros_like(logits) + bias, jnp.zeros_like(value)

    return confident


# The platform `gpu`-marked tests run on (`$GPU_TEST_PLATFORM`, default gpu; cpu checks the tests
# themselves); without a device of it they are skipped.
GPU_TEST_PLATFORM = os.environ.get("GPU_TEST_PLATFORM", "gpu")


def _has_platform(platform: str) -> bool:
    try:
        return bool(jax.devices(platform))
    except RuntimeError:
        return False


# The files that take longest on the 2-core CI box (pytest --durations at stop 25: four-device and two-process jobs,
# growing trees, the arena's trees reference), collected first. pytest-xdist's default hands files out largest test
# count first, which left test_scaling's five long tests (~4 min) to run alone at the end on one worker; with
# `--no-loadscope-reorder` (pyproject) it follows this order and the two workers finish together.
SLOWEST_FILES = ("test_scaling.py", "test_uci.py", "test_resume.py", "test_search.py", "test_growing.py",
                 "test_selfplay.py", "test_arena.py", "test_train_cli.py", "test_bench.py", "test_compile_cache.py")


def _slowest_first(item) -> int:
    name = item.path.name
    return SLOWEST_FILES.index(name) if name in SLOWEST_FILES else len(SLOWEST_FILES)


def pytest_collection_modifyitems(config, items):
    items.sort(key=_slowest_first)  # stable: tests keep their order within a file
    if any("gpu" in item.keywords for item in items) and not _has_platform(GPU_TEST_PLATFORM):
        skip = pytest.mark.skip(reason=f"no {GPU_TEST_PLATFORM} device (JAX_PLATFORMS={os.environ['JAX_PLATFORMS']})")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)
