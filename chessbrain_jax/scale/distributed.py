"""Joining a multi-process job (several hosts, or several processes on one host) with `jax.distributed`.

JAX's own machinery does the work: `jax.distributed.initialize` connects the processes through a coordinator, after
which `jax.devices()` lists the devices of every process and the data-parallel mesh (`sharding`) spans them all.
Its settings come from flags (`--coordinator-address`, `--num-processes`, `--process-id`), from JAX's environment
variable `JAX_COORDINATOR_ADDRESS`, or from JAX's cluster detection (SLURM, Open MPI). Process 0 writes the job's
metrics, TensorBoard events, PGN and `run.json`; every process takes part in checkpoint saves and restores.
"""

from __future__ import annotations

import os

import numpy as np

from chessbrain_jax.config import Config


class DistributedError(Exception):
    """The multi-process job could not be joined; the message is one line."""


def requested(config: Config, environ=None) -> bool:
    """Whether this process is one of several: flags, JAX's coordinator variable, or a multi-task SLURM/MPI run."""
    environ = os.environ if environ is None else environ
    tasks = max(int(environ.get(name, "1") or 1) for name in ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE"))
    return bool(config.num_processes > 1 or config.coordinator_address or environ.get("JAX_COORDINATOR_ADDRESS")
                or tasks > 1)


def initialize(config: Config) -> bool:
    """Calls `jax.distributed.initialize` when `requested` (before any other JAX call); returns whether it did."""
    if not requested(config):
        return False
    import jax

    try:
        jax.distributed.initialize(
            coordinator_address=config.coordinator_address or None,
            num_processes=config.num_processes or None,
            process_id=config.process_id if config.process_id >= 0 else None,
            initialization_timeout=300,
        )
    except (RuntimeError, ValueError, TypeError) as error:
        reason = (str(error).splitlines() or [type(error).__name__])[0][:200]
        raise DistributedError(f"cannot join the multi-process job ({reason}); check --coordinator-address, "
                               "--num-processes and --process-id") from None
    return True


def is_writer() -> bool:
    """True in the process that writes the job's files (process 0; the only one without jax.distributed)."""
    import jax

    return jax.process_index() == 0


def any_process(flag: bool) -> bool:
    """Whether `flag` is set in any process (a collective every process must call; free with one process)."""
    import jax

    if jax.process_count() == 1:
        return flag
    from jax.experimental import multihost_utils

    return bool(np.asarray(multihost_utils.process_allgather(np.int32(flag))).max())


def broadcast(value: int) -> int:
    """Process 0's `value` in every process."""
    import jax

    if jax.process_count() == 1:
        return value
    from jax.experimental import multihost_utils

    return int(multihost_utils.broadcast_one_to_all(np.int32(value)))


def barrier(name: str) -> None:
    import jax

    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)
