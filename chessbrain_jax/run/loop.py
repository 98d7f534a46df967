"""The episode loop: self-play, replay and training chunks on the device; on the host between them, the episode's
record, evaluation, progress and the save/stop rules."""

from __future__ import annotations

import time
from typing import Any

from chessbrain_jax.run import saving
from chessbrain_jax.run.console import TrainingDiverged, say
from chessbrain_jax.run.state import StartState, step_of

_GAME_COUNTS = ("white_wins", "black_wins", "draws", "truncated", "adjudicated_wins", "drawn_ahead", "pool_finished",
                "pool_decisive", "mates_played")


class EpisodeLoop:
    """Runs episodes `start.first_episode .. config.episodes` of `job` (an `orchestrator.Job`) and owns the state
    that changes between them: train state, RNG key, replay buffer and the host counters."""

    def __init__(self, job, start: StartState, source, train, schedule, split, observers, writer, progress):
        self.job, self.config = job, job.config
        self.train_state, self.key, self.buffer = start.train_state, start.key, start.buffer
        self.first_episode, self.positions_seen, self.totals = start.first_episode, start.positions_seen, start.totals
        self.source, self.train, self.schedule, self.split = source, train, schedule, split
        self.evaluator, self.recorder, self.probes = observers
        self.writer, self.progress = writer, progress
        self.saver = saving.Saver(job.manager, job.config, job.checkpoint_dir, writer, prunes=job.writer_process)
        self.stop = saving.GracefulStop()
        self.record: dict[str, Any] = {}
        self.started = time.monotonic()

    @property
    def step(self) -> int:
        return step_of(self.train_state)

    def run(self) -> None:
        """Every episode until the last or a stop request, then the producers' drain and the final save."""
        import jax

        from chessbrain_jax.scale import distributed

        for episode in range(self.first_episode, self.config.episodes + 1):
            self.key, play_key, train_key = self.split(self.key)
            # Step markers: TensorBoard's profile overview shows the episode's step time, split in its two parts.
            with self._profiled(episode), jax.profiler.StepTraceAnnotation("episode", step_num=episode):
                with jax.profiler.TraceAnnotation("selfplay"):
                    selfplay_s, source_metrics = self._play(episode, play_key)
                with jax.profiler.TraceAnnotation("train"):
                    train_metrics, train_s = self._train(train_key)
            stopping = distributed.any_process(bool(self.stop.requested))  # every process stops after one episode
            self.record = self._episode_record(episode, train_metrics, source_metrics, selfplay_s, train_s)
            self._observe(episode, stopping, train_metrics)
            if episode == self.config.episodes or stopping:
                self._drain()
            if saving.due(episode, self.config, stopping):
                self.save(episode)
            if stopping:
                say(f"stopped by {self.stop.requested or 'another process'} after episode {episode}; "
                    "continue with --resume")
                break

    def _profiled(self, episode: int):
        """A JAX profiler trace around the second episode of this start (`--profile`), else nothing."""
        import contextlib

        import jax

        first = self.first_episode
        if not (self.config.profile and episode == min(first + 1, self.config.episodes) and self.job.writer_process):
            return contextlib.nullcontext()

        @contextlib.contextmanager
        def trace():
            jax.profiler.start_trace(self.job.job_dir)
            yield
            jax.profiler.stop_trace()
            say(f"profiler trace of episode {episode} written under {self.job.job_dir}/plugins/profile/")

        return trace()

    def _play(self, episode: int, key) -> tuple[float, dict[str, Any]]:
        """One self-play chunk into the buffer; its game counts join the totals and its games the PGN recorder."""
        from chessbrain_jax.scale import sharding

        started = time.monotonic()
        self.buffer, stats, trajectories, source_metrics = self.source.episode(
            self.train_state.params, self.buffer, key, self.step)
        stats = sharding.fetch(stats)
        if self.recorder is not None:
            for trajectory in trajectories:
                count = min(self.config.selfplay_pgn_games, trajectory.action.shape[1])
                self.recorder.record(sharding.first_columns(trajectory.action, count),
                                     sharding.first_columns(trajectory.position.generation, count), episode)
        self.positions_seen += self.config.positions_per_episode
        for name, value in stats.items():
            self.totals[name] += int(value)
        return time.monotonic() - started, source_metrics

    def _train(self, key) -> tuple[dict[str, float], float]:
        """One training chunk once the buffer holds a batch; new parameters go to the producers."""
        from chessbrain_jax.scale import sharding

        started = time.monotonic()
        metrics: dict[str, float] = {}
        if min(self.positions_seen, self.config.replay_capacity) >= self.config.batch_size:
            self.train_state, metrics = self.train(self.train_state, self.buffer, key)
            metrics = {name: float(value) for name, value in sharding.fetch(metrics).items()}
            self.source.publish(self.train_state.params, self.step)
        return metrics, time.monotonic() - started

    def _episode_record(self, episode: int, train_metrics: dict[str, float], source_metrics: dict[str, Any],
                        selfplay_s: float, train_s: float) -> dict[str, Any]:
        """The metrics.jsonl record of one episode."""
        config, totals, step = self.config, self.totals, self.step
        finished, trained = totals["games_finished"], bool(train_metrics)
        skipped = round(train_metrics.pop("nonfinite_skipped", 0.0) * config.micro_steps_per_episode)
        ended = finished + totals["truncated"]
        return {
            "step": step,
            "episode": episode,
            "games_finished": finished,
            "positions": self.positions_seen,
            **train_metrics,
            "nonfinite_skipped": skipped,
            "learning_rate": float(self.schedule(max(step - 1, 0))),
            "selfplay_positions_per_s": source_metrics.get("producer", {}).get(
                "positions_per_s", config.positions_per_episode / selfplay_s),
            "train_steps_per_s": config.optimizer_steps_per_episode / train_s if trained else 0.0,
            "train_samples_per_s": config.micro_steps_per_episode * config.batch_size / train_s if trained else 0.0,
            "games": {name: totals[name] for name in _GAME_COUNTS},
            "mean_game_plies": totals["ended_game_plies"] / ended if ended else None,
            "replay_size": min(self.positions_seen, config.replay_capacity),
            # Uniform sampling: a sampled position is on average half the buffer's span old.
            "replay_age_episodes": (min(self.positions_seen, config.replay_capacity) / config.positions_per_episode
                                    - 1) / 2,
            **source_metrics,
            "wall_time_s": time.monotonic() - self.started,
        }

    def _observe(self, episode: int, stopping: bool, train_metrics: dict[str, float]) -> None:
        """Evaluation when due, the record to metrics.jsonl when due, the progress line; stops a diverged run."""
        from chessbrain_jax.scale import sharding

        config, record, step = self.config, self.record, self.step
        evaluated = self.evaluator is not None and self.evaluator.due(episode) and not stopping
        if evaluated:
            result = record["eval"] = self.evaluator(sharding.on_one_device(self.train_state.params), step, episode)
            say(f"eval after episode {episode} (step {step}): +{result['wins']} ={result['draws']} "
                f"-{result['losses']} against {result['opponent']}, score {result['score']:.2f}")
        probed = self.probes is not None and episode % config.probe_interval == 0
        if probed:
            record["probe"] = self.probes(sharding.on_one_device(self.train_state.params))
        if episode % config.log_every == 0 or episode == config.episodes or stopping or evaluated or probed:
            self.writer.write(step, record)
        loss = train_metrics.get("loss")
        loss_text = f"loss {loss:.3f}" if loss is not None else "loss -"
        self.progress.update(episode, f"step {step} | {loss_text} | {record['selfplay_positions_per_s']:.1f} "
                                      f"pos/s | games {self.totals['games_finished']}")
        if train_metrics and record["nonfinite_skipped"] == config.micro_steps_per_episode:
            self.save(episode)
            raise TrainingDiverged(
                f"every update of episode {episode} had a non-finite loss or gradient; the last good state is "
                f"checkpointed as {config.job_id}_step{step}; lower --learning-rate or --grad-clip before resuming")

    def _drain(self) -> None:
        """Stops the producers; chunks still queued join the buffer and the counters."""
        self.buffer, drained, drained_stats = self.source.close(self.buffer)
        self.positions_seen += drained * self.config.positions_per_episode // max(self.config.producer_workers, 1)
        for name, value in drained_stats.items():
            self.totals[name] += value
        if drained:
            say(f"producers stopped; {drained} queued chunks added to the replay buffer")

    def save(self, episode: int) -> None:
        from chessbrain_jax.storage import checkpoint

        self.saver.save(self.step, self.train_state, self.key, checkpoint.RunState(self.source.games, self.buffer), {
            "config": self.config.to_dict(), "episode": episode, "games_finished": self.totals["games_finished"],
            "positions": self.positions_seen, "totals": self.totals, "metrics": self.record,
        })
