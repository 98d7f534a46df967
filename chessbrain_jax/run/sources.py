"""Where an episode's positions come from: the synchronous loop's compiled self-play, or the producer pool."""

from __future__ import annotations


class SynchronousSelfPlay:
    """The default loop's self-play (`--producer-workers 0`): every episode, all games play one chunk with the
    current parameters on the data-parallel mesh, and their positions go straight into the replay buffer."""

    mode = "synchronous"

    def __init__(self, play, add, games, wait: bool = False):
        self._play, self._add, self.games, self._wait = play, add, games, wait

    def episode(self, params, buffer, key, step: int):
        """Returns (buffer, stats, trajectories whose first columns are slots 0.., metrics); stats are replicated
        device counters; nothing waits for the device unless `wait` (then each program finishes before the next)."""
        import jax

        self.games, trajectory, stats = self._play(params, self.games, key)
        if self._wait:
            jax.block_until_ready(stats)
        buffer = self._add(buffer, trajectory, self.games)
        if self._wait:
            jax.block_until_ready(buffer)
        return buffer, stats, [trajectory], {}

    def publish(self, params, step: int) -> None:
        pass

    def close(self, buffer):
        return buffer, 0, {}

    def abort(self) -> None:
        pass


def start_pool(config):
    """The `--selfplay-starts` pool (`core.starts.StartPool`) when a share of the games uses it, else None."""
    if config.selfplay_start_share <= 0:
        return None
    from chessbrain_jax.play import notation

    return notation.read_start_pool(config.selfplay_starts)


def compile_source(job, apply_fn, start, split):
    """The episode source for `job`, compiled for `start`'s shapes: producers when `producer_workers` > 0 (they
    compile on their own devices), else the synchronous self-play chunk and replay `add`. Returns (source, key)."""
    import jax

    from chessbrain_jax.core import replay
    from chessbrain_jax.run.state import step_of

    parallel, key = job.parallel, start.key
    if job.producer_devices:
        from chessbrain_jax.scale import producers

        key, producer_key = split(key)[:2]
        return producers.ProducerPool(job.config, apply_fn, job.producer_devices, start.games,
                                      start.train_state.params, step_of(start.train_state), producer_key,
                                      jax.jit(replay.add, donate_argnums=0), parallel.replicate,
                                      start_pool(job.config)), key
    play_episode = parallel.play_episode(apply_fn, start_pool(job.config))
    params = start.train_state.params
    play = jax.jit(play_episode, donate_argnums=1).lower(params, start.games, key).compile()
    _, trajectory_shape, _ = jax.eval_shape(play_episode, params, start.games, key)
    add = jax.jit(parallel.add(), donate_argnums=0).lower(start.buffer, trajectory_shape, start.games).compile()
    return SynchronousSelfPlay(play, add, start.games, wait=parallel.one_program_at_a_time), key
