"""What training shows of its own play: periodic arena matches and self-play games as PGN, under the job folder.

`Evaluator` plays `--eval-games` games between the current parameters (with search, or the raw policy) and
`--eval-opponent` every `--eval-interval` episodes; its numbers go into the episode's metrics record under `eval/`
and its games to `<job>/eval/step<N>.pgn`. `SelfPlayRecorder` follows the first `--selfplay-pgn-games` parallel
game slots through the trajectories and appends each finished game to `<job>/selfplay.pgn`.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any, Sequence

import chess
import chess.pgn
import numpy as np

from chessbrain_jax.config import Config
from chessbrain_jax.core import chess_env, targets
from chessbrain_jax.play import arena, notation
from chessbrain_jax.storage.metrics import write_text_atomically

_EPISODE_HEADER = re.compile(r'^\[Episode "(\d+)"\]$', re.MULTILINE)


class Evaluator:
    """Arena matches of the learner against a fixed opponent during training."""

    def __init__(self, config: Config, apply_fn, params, job_dir: str):
        from chessbrain_jax.play import player

        self.config, self.folder = config, os.path.join(job_dir, "eval")
        self.opponent = arena.parse_player(config.eval_opponent, config.checkpoint_dir)
        simulations = None if config.eval_simulations < 0 else config.eval_simulations
        self.learner = player.NetworkPlayer(apply_fn, params, config, simulations, name=config.job_id)

    def due(self, episode: int) -> bool:
        return self.config.eval_interval > 0 and episode % self.config.eval_interval == 0

    def __call__(self, params, step: int, episode: int) -> dict[str, Any]:
        """Plays the match with `params`; returns the `eval` metrics record and writes the games' PGN."""
        self.learner.params = params
        started = time.monotonic()
        games = arena.play_match(self.learner, self.opponent, self.config.eval_games, opening_plies=2,
                                 max_plies=self.config.max_plies, seed=self.config.seed + episode)
        summary = arena.summarise(games)
        arena.write_pgn(os.path.join(self.folder, f"step{step}.pgn"), games,
                        f"{self.config.job_id} step {step} vs {arena.describe(self.opponent)}")
        return {"score": summary["score"], "elo": summary["elo"], "elo_low": summary["elo_low"],
                "elo_high": summary["elo_high"], "wins": summary["wins"], "draws": summary["draws"],
                "losses": summary["losses"], "mean_plies": summary["mean_plies"],
                "opponent": arena.describe(self.opponent), "seconds": time.monotonic() - started}

    def close(self) -> None:
        if hasattr(self.opponent, "close"):
            self.opponent.close()


class SelfPlayRecorder:
    """Rebuilds the games of slots `0..n-1` from each episode's `[T, B]` actions and generation numbers.

    A slot's game is recorded only if it was seen from its first ply: after a resume, games already in progress are
    skipped. Each game is appended with one `write` so a kill leaves whole games; on resume, games from episodes
    after the checkpoint are dropped first (`keep_up_to`), since they are played again.
    """

    def __init__(self, config: Config, job_dir: str, resumed_generations: Sequence[int] | None = None):
        """`resumed_generations`: after a resume, the generation of each recorded slot's game in progress."""
        self.config, self.path = config, os.path.join(job_dir, "selfplay.pgn")
        slots = min(config.selfplay_pgn_games, config.selfplay_batch)
        self.boards = [chess.Board() for _ in range(slots)]
        resumed = resumed_generations is not None
        self.generation = [int(g) for g in resumed_generations[:slots]] if resumed else [0] * slots
        self.complete = [not resumed] * slots

    def record(self, actions: np.ndarray, generations: np.ndarray, episode: int) -> int:
        """Follows `i32[T, B]` played actions and game generations; returns how many games were written."""
        written = 0
        for slot, board in enumerate(self.boards):
            for ply in range(actions.shape[0]):
                if generations[ply, slot] != self.generation[slot]:
                    if self.complete[slot]:
                        self._write(board, slot, self.generation[slot], episode)
                        written += 1
                    board = self.boards[slot] = chess.Board()
                    self.generation[slot], self.complete[slot] = int(generations[ply, slot]), True
                if self.complete[slot]:  # a game resumed mid-way is not followed: its opening moves are unknown
                    board.push(notation.action_to_move(board, int(actions[ply, slot])))
        return written

    def _write(self, board: chess.Board, slot: int, generation: int, episode: int) -> None:
        outcome = board.outcome(claim_draw=True)
        if outcome is not None:
            result, detail = outcome.result(), outcome.termination.name.lower().replace("_", " ")
        elif len(board.move_stack) >= self.config.max_plies and self.config.adjudicate_material:
            balance = sum(chess_env.PIECE_VALUES[piece.piece_type] * (1 if piece.color == chess.WHITE else -1)
                          for piece in board.piece_map().values())
            verdict = float(targets.adjudicate(balance, self.config.adjudicate_material))
            result = arena.RESULTS[(verdict + 1.0) / 2.0]  # white's result -> white's score
            detail = f"adjudicated at {self.config.max_plies} plies on material (white {balance:+d})"
        elif len(board.move_stack) >= self.config.max_plies:
            result, detail = "*", f"truncated at {self.config.max_plies} plies (no result, no value target)"
        else:
            result, detail = "1/2-1/2", "pgx draw rule"
        game = chess.pgn.Game.from_board(board)
        game.headers.update({"Event": f"{self.config.job_id} self-play", "Site": "chessbrain_jax",
                             "Date": time.strftime("%Y.%m.%d"), "Round": f"{slot}.{generation}",
                             "White": self.config.job_id, "Black": self.config.job_id, "Result": result,
                             "Episode": str(episode), "TerminationDetail": detail})
        descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(descriptor, (str(game) + "\n\n").encode())
        finally:
            os.close(descriptor)

    def keep_up_to(self, episode: int) -> int:
        """Drops games recorded after `episode` (they will be played again); returns how many were dropped."""
        if not os.path.exists(self.path):
            return 0
        with open(self.path, encoding="utf-8") as stream:
            text = stream.read()
        games = [chunk for chunk in re.split(r"\n\n(?=\[Event )", text.strip()) if chunk.strip()]
        kept = [game for game in games if (match := _EPISODE_HEADER.search(game)) and int(match[1]) <= episode]
        if len(kept) == len(games):
            return 0
        write_text_atomically(self.path, "".join(game + "\n\n" for game in kept))
        return len(games) - len(kept)
