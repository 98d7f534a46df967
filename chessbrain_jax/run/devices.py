"""Choosing the platform and devices before JAX's backends start."""

from __future__ import annotations

import os

from chessbrain_jax.config import Config
from chessbrain_jax.run.console import UsageError, say

_PLATFORMS = {"cpu": "cpu", "gpu": "cuda", "tpu": "tpu"}


def select_device(choice: str, config: Config | None = None):
    """Pins JAX to the requested platform before its backends start (joining a multi-process job first, when
    `config` asks for one: `distributed`), with `config`'s compile cache; returns the devices of every process."""
    import jax

    from chessbrain_jax.scale import distributed
    from chessbrain_jax.storage import compile_cache

    if config is not None:
        compile_cache.enable(config.compile_cache, note=say)
    if choice != "auto":
        platforms = [_PLATFORMS[choice]]
        if config is not None and config.producer_workers and config.producer_device not in ("auto", choice):
            platforms.append(_PLATFORMS[config.producer_device])  # producers on another platform (e.g. the CPU)
        jax.config.update("jax_platforms", ",".join(platforms))
    if config is not None and choice in ("auto", "cpu"):
        split_cpu(config)
    if config is not None:
        try:
            distributed.initialize(config)
        except distributed.DistributedError as error:
            raise UsageError(str(error)) from None
    try:
        return jax.devices()
    except (RuntimeError, AssertionError):  # jax asserts, rather than raising, when no plugin provides the platform
        hint = " (install the extra: pip install 'chessbrain_jax[cuda12]')" if choice == "gpu" else ""
        raise UsageError(f"--device {choice}: no {choice.upper()} is available to JAX{hint}") from None


def cpu_device_count(config: Config, cores: int) -> int:
    """The CPU devices `--cpu-devices` asks for: N, or for 0 the largest count <= `cores` dividing both batches."""
    if config.cpu_devices:
        return config.cpu_devices
    return max(n for n in range(1, max(cores, 1) + 1)
               if config.selfplay_batch % n == 0 and config.batch_size % n == 0)


def split_cpu(config: Config) -> None:
    """Sets JAX's CPU device count from `--cpu-devices` before its backends start (XLA_FLAGS, if it forces a
    count, wins; so does a JAX already started in this process).

    With several CPU devices, XLA:CPU runs each collective as an in-process rendezvous and aborts the process when a
    device arrives 40 s late. Two such stalls on a 2-core host were deadlocks (every thread asleep), not slow devices:
    the loop now runs one multi-device program at a time (`DataParallel.one_program_at_a_time`), and the limit is
    set to 2 minutes, enough for a device slowed by a busy host, short enough that a stuck job ends soon (the last
    checkpoint is intact; `--resume` continues).
    """
    import jax

    flags = os.environ.get("XLA_FLAGS", "")
    forced = "xla_force_host_platform_device_count" in flags
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    count = 0 if forced else cpu_device_count(config, cores)
    if (forced or count > 1) and "xla_cpu_collective_call_terminate_timeout" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_cpu_collective_call_terminate_timeout_seconds=120".strip()
    if forced or count == max(jax.config.jax_num_cpu_devices, 1):
        return
    try:
        jax.config.update("jax_num_cpu_devices", count)
    except RuntimeError:
        say(f"note: --cpu-devices {config.cpu_devices}: JAX already started in this process; keeping its CPU "
            "devices")
