"""Players: something that picks moves, batched on the device where it can.

A `NetworkPlayer` wraps a network (from a checkpoint, or untrained) with mctx search or its raw policy;
`RandomPlayer` moves uniformly among legal moves. Both act on `[B]` batched pgx states in one jitted call, which is
what the arena and evaluation during training use; `NetworkPlayer.analyse(board)` answers for one python-chess
board with the search statistics a GUI or a person wants (value, visits, principal variation).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import chess
import jax
import jax.numpy as jnp
import numpy as np

from chessbrain_jax.config import Config, ConfigError
from chessbrain_jax.core import chess_env
from chessbrain_jax.core.search import make_search_fn, mask_illegal, principal_variation, to_actions
from chessbrain_jax.core.types import ApplyFn
from chessbrain_jax.play import notation

PV_LENGTH = 16  # plies of principal variation `analyse` reads from the tree


class Analysis(NamedTuple):
    """One searched position. Values are for the side to move, in [-1, 1]; `visits` counts simulations per move."""

    move: chess.Move
    value: float
    simulations: int
    visits: dict[chess.Move, int]
    policy: dict[chess.Move, float]
    prior: dict[chess.Move, float]
    pv: list[chess.Move]


def value_to_centipawns(value: float) -> int:
    """An expected score in [-1, 1] as UCI centipawns, with Leela Chess Zero's mapping `90 * tan(1.5637541897 q)`."""
    value = min(max(value, -0.9999), 0.9999)
    return int(round(90.0 * math.tan(1.5637541897 * value)))


class RandomPlayer:
    """Uniformly random legal moves."""

    name = "random"

    def __init__(self):
        self._act = jax.jit(lambda key, mask: jax.random.categorical(key, jnp.where(mask, 0.0, -jnp.inf)))

    def actions(self, key: jax.Array, states: chess_env.State) -> jax.Array:
        """`i32[B]` actions for `[B]` states."""
        return self._act(key, states.legal_action_mask).astype(jnp.int32)


class NetworkPlayer:
    """A network with search (`simulations > 0`) or its raw policy (`simulations == 0`: the most likely legal move).

    Search uses the network's own training settings (algorithm, c_puct, Gumbel's considered actions and c_scale)
    unless overridden (`search`, `considered`, `value_scale`, `moves_left_effect`, `mates`:
    `--play-searched-mates`), with
    no Dirichlet noise and no random exploration: both play `SearchOutput.best_action`, the most visited move (Gumbel:
    among the most visited, the one its improved policy rates highest, without the Gumbel noise of self-play's
    choice). Gumbel's root sampling still varies the tree, so games between Gumbel players vary.

    `trees > 1` searches that many independent trees of `simulations` from each position and plays the move their
    summed search policies (`action_weights`) rate highest: the UCI engine's search before it grew one tree, kept to
    measure what one tree of the same nodes buys. `analyse` always searches one tree.
    """

    def __init__(self, apply_fn: ApplyFn, params: Any, config: Config, simulations: int | None = None,
                 search: str | None = None, name: str = "network", considered: int | None = None, trees: int = 1,
                 value_scale: float | None = None, moves_left_effect: float | None = None,
                 mates: bool | None = None):
        simulations = config.mcts_simulations if simulations is None else simulations
        if simulations < 0:
            raise ConfigError(f"simulations must be >= 0, got {simulations}")
        if trees < 1:
            raise ConfigError(f"trees must be >= 1, got {trees}")
        overrides: dict[str, Any] = {"dirichlet_fraction": 0.0}
        if simulations:
            overrides["mcts_simulations"] = simulations
        if search is not None:
            if search not in ("gumbel", "puct"):
                raise ConfigError(f"search must be gumbel or puct, got {search!r}")
            overrides["search"] = search
        if considered is not None:
            if considered < 2:
                raise ConfigError(f"considered actions must be >= 2, got {considered}")
            overrides["gumbel_considered_actions"] = considered
        if value_scale is not None:
            if not value_scale >= 0:
                raise ConfigError(f"value scale must be >= 0, got {value_scale}")
            overrides["gumbel_value_scale"] = value_scale
        if moves_left_effect is not None:
            if not 0 <= moves_left_effect <= 1:
                raise ConfigError(f"moves-left effect must be in [0, 1], got {moves_left_effect}")
            overrides["moves_left_effect"] = moves_left_effect
        if mates is not None:
            overrides["play_searched_mates"] = bool(mates)
        self.config = dataclasses.replace(config, **overrides)
        self.apply_fn, self.params, self.simulations, self.name = apply_fn, params, simulations, name
        self.considered, self.trees, self.value_scale = considered, trees if simulations else 1, value_scale
        self._search = make_search_fn(self.config, apply_fn)
        self._actions = jax.jit(self._choose)
        self._analyse = jax.jit(self._analyse_one) if simulations else None

    @property
    def description(self) -> str:
        if not self.simulations:
            return f"{self.name} (raw policy)"
        gumbel = self.config.search == "gumbel"
        root = f", {self.considered} considered" if self.considered and gumbel else ""
        root += f", c_scale {self.value_scale:g}" if self.value_scale is not None and gumbel else ""
        if self.config.moves_left_weight > 0:
            root += f", moves-left effect {self.config.moves_left_effect:g}"
        root += ", plays searched mates" if self.config.play_searched_mates else ""
        trees = f" x {self.trees} trees" if self.trees > 1 else ""
        return f"{self.name} ({self.config.search}, {self.simulations} simulations{trees}{root})"

    def _choose(self, params, key: jax.Array, states: chess_env.State) -> jax.Array:
        if not self.simulations:
            logits, _ = self.apply_fn(params, states.observation)
            return jnp.argmax(mask_illegal(logits, states.legal_action_mask), axis=-1).astype(jnp.int32)
        if self.trees == 1:
            return self._search(params, key, states).best_action.astype(jnp.int32)
        batch = states.legal_action_mask.shape[0]
        roots = jax.tree.map(lambda leaf: jnp.repeat(leaf, self.trees, axis=0), states)  # [B * trees]
        weights = self._search(params, key, roots).action_weights.reshape(batch, self.trees, -1).sum(axis=1)
        return jnp.argmax(jnp.where(states.legal_action_mask, weights, -1.0), axis=-1).astype(jnp.int32)

    def actions(self, key: jax.Array, states: chess_env.State) -> jax.Array:
        """`i32[B]` moves for `[B]` pgx states (terminated states get an arbitrary action that pgx ignores)."""
        return self._actions(self.params, key, states)

    def _analyse_one(self, params, key: jax.Array, state: chess_env.State):
        states = jax.tree.map(lambda leaf: leaf[None], state)
        output = self._search(params, key, states)
        action = output.best_action[0]
        tree = jax.tree.map(lambda leaf: leaf[0], output.search_tree)
        visits = to_actions(tree.children_visits[:1, :], tree.embeddings.actions[:1])[0]
        prior = jax.nn.softmax(output.root_prior_logits[0])
        return (action, output.root_value[0], visits, output.action_weights[0], prior,
                principal_variation(tree, action, PV_LENGTH))

    def analyse(self, board: chess.Board | str, key: jax.Array | None = None,
                state: chess_env.State | None = None) -> Analysis:
        """Searches `board` (a python-chess board with its game, or a FEN; not game over). `state` (from
        `notation.board_to_state(board)`) saves rebuilding it. A bad FEN raises a one-line ValueError."""
        if isinstance(board, str):
            notation.from_fen(board)  # validates, with a one-line reason
            board = chess.Board(board)
        if board.is_game_over(claim_draw=False) or not any(board.legal_moves):
            raise ValueError(f"no move to search in {board.fen()}: the game is over")
        state = notation.board_to_state(board) if state is None else state
        key = jax.random.PRNGKey(0) if key is None else key
        legal = sorted(notation.legal_actions(board))
        if not self.simulations:
            logits, value = self.apply_fn(self.params, state.observation[None])
            prior = np.asarray(jax.nn.softmax(mask_illegal(logits, state.legal_action_mask[None]), axis=-1)[0])
            best = max(legal, key=lambda a: prior[a])
            move = notation.action_to_move(board, best)
            priors = {notation.action_to_move(board, a): float(prior[a]) for a in legal}
            return Analysis(move, float(value[0]), 0, {}, priors, priors, [move])
        action, root_value, visits, weights, prior, line = jax.device_get(self._analyse(self.params, key, state))
        to_move = lambda a: notation.action_to_move(board, int(a))  # noqa: E731
        return Analysis(
            move=to_move(action),
            value=float(root_value),
            simulations=self.simulations,
            visits={to_move(a): int(visits[a]) for a in legal if visits[a] > 0},
            policy={to_move(a): float(weights[a]) for a in legal},
            prior={to_move(a): float(prior[a]) for a in legal},
            pv=notation.line_to_moves(board, line),
        )



def untrained_player(config: Config, simulations: int | None = None, seed: int = 0, **options) -> NetworkPlayer:
    """An untrained network of `config`'s shape (uniform prior, value 0): the baseline a trained one must beat.
    `options`: `NetworkPlayer`'s search, considered, trees, value_scale, moves_left_effect, mates."""
    from chessbrain_jax.core import model

    network = model.make_network(config, "float32")
    params = model.init_params(network, jax.random.PRNGKey(seed))
    return NetworkPlayer(model.make_apply(network), params, config, simulations, name="untrained", **options)


def load_player(path: str, checkpoint_dir: str | None = None, simulations: int | None = None,
                **options) -> NetworkPlayer:
    """A player from a checkpoint step folder, or from the latest checkpoint of job `path` when `checkpoint_dir`
    is given; `options` are `NetworkPlayer`'s search, considered, trees, value_scale, moves_left_effect, mates. Raises
    `checkpoint.CheckpointError` (one line) for anything that is not a loadable checkpoint."""
    from chessbrain_jax.core import model
    from chessbrain_jax.storage import checkpoint

    loaded = checkpoint.load_network(path, checkpoint_dir=checkpoint_dir)
    name = f"{loaded.config.job_id}_step{loaded.step}"
    return NetworkPlayer(model.make_apply(loaded.network), loaded.params, loaded.config, simulations, name=name,
                         **options)
