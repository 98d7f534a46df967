"""Self-play on the device: `selfplay_batch` games advance `plies_per_episode` moves in one jitted `lax.scan`.

A game is identified by (slot, generation): slot is its index among the parallel games, generation counts the games
that slot has started. When a game ends (or reaches `max_plies`), its result from white's view goes to
`results[slot, generation % H]` (the rules, cut games and adjudication included, are `targets`') and the slot
restarts from the initial position; unfinished games carry over to the next episode. Positions are recorded with
their game id, so the replay buffer reads value targets from the results table when it samples: no host round trip
and no wait for games to finish before their positions can be stored.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from chessbrain_jax.config import Config
from chessbrain_jax.core import chess_env, encoding, starts, targets
from chessbrain_jax.core.search import make_search_fn
from chessbrain_jax.core.types import ApplyFn, Position, Trajectory


class SelfPlayState(NamedTuple):
    """Carried across episodes.

    env: pgx chess `State` `[B, ...]` of the games in progress (never terminal).
    generation: `i32[B]` games started so far in each slot; the game in progress is (slot, generation).
    results: `f32[B, H]` white's result (+1, 0, -1) of game (slot, g) at `[slot, g % H]`; NaN while the game is
      running and for truncated games.
    result_plies: `i32[B, H]` the ply count at which game (slot, g) ended (its length from the start position),
      beside its result; what `--value-discount` measures the distance to the end from.
    """

    env: chess_env.State
    generation: jax.Array
    results: jax.Array
    result_plies: jax.Array


EPISODE_STATS = ("games_finished", "white_wins", "black_wins", "draws", "truncated", "adjudicated_wins",
                 "drawn_ahead", "ended_game_plies", "pool_finished", "pool_decisive", "mates_played")


def result_history_length(config: Config) -> int:
    """H, the results kept per slot: enough that no position still in the replay buffer outlives its game's result.

    A slot adds one position per ply and a game from the initial position lasts at least 4 plies (fool's mate), so
    the buffer holds positions from at most capacity / (4 * B) + 2 games per slot.
    """
    return math.ceil(config.replay_capacity / (4 * config.selfplay_batch)) + 2


def init_selfplay(config: Config, start: chess_env.State | None = None) -> SelfPlayState:
    """All games at the initial position, or at the given `[B]` start states (e.g. from FEN, for tests)."""
    batch, history = config.selfplay_batch, result_history_length(config)
    env = chess_env.initial_states(batch) if start is None else start
    return SelfPlayState(
        env=env,
        generation=jnp.zeros(batch, jnp.int32),
        results=jnp.full((batch, history), jnp.nan, jnp.float32),
        result_plies=jnp.zeros((batch, history), jnp.int32),
    )


def choose_action(config: Config, env: chess_env.State, output, key_explore: jax.Array,
                  key_random: jax.Array) -> jax.Array:
    """`i32[B]` the move each game plays: the search's choice (PUCT: sampled by visits for the first
    `temperature_plies` plies, then the most visited; Gumbel: its sampled choice, for the first
    `gumbel_sample_plies` plies when that is set, then its best move), replaced with probability `exploration_rate`
    by a uniformly random legal move (only in the first `exploration_plies` plies of a game, when that is set)."""
    action = output.action
    if config.search == "puct":
        action = jnp.where(chess_env.plies(env) < config.temperature_plies, action, output.best_action)
    elif config.gumbel_sample_plies:
        action = jnp.where(chess_env.plies(env) < config.gumbel_sample_plies, action, output.best_action)
    explore = jax.random.bernoulli(key_explore, config.exploration_rate, action.shape)
    if config.exploration_plies:
        explore &= chess_env.plies(env) < config.exploration_plies
    random_action = jax.random.categorical(key_random, jnp.where(env.legal_action_mask, 0.0, -jnp.inf))
    return jnp.where(explore, random_action, action).astype(jnp.int32)


def make_capped_search(config: Config, apply_fn: ApplyFn):
    """Returns `search(params, key, env) -> (SearchOutput without its tree, full)`: playout-cap randomisation.

    With `playout_cap_fraction < 1` one draw per ply, for the whole batch (a `lax.cond`: only the chosen search
    runs), picks the full search (`mcts_simulations`) with that probability, else the cheap one
    (`cheap_simulations`); `full` is that `bool[]` choice. Otherwise every ply is a full search, with the same
    random numbers as before the option existed."""
    def treeless(simulations: int | None = None):  # both branches of the cond must return the same shapes
        search = make_search_fn(config, apply_fn, simulations)
        return lambda params, key, env: search(params, key, env)._replace(search_tree=None)

    full_search = treeless()
    if config.playout_cap_fraction >= 1:
        return lambda params, key, env: (full_search(params, key, env), jnp.bool_(True))
    cheap_search = treeless(config.cheap_simulations)

    def search(params, key: jax.Array, env: chess_env.State):
        key_cap, key_search = jax.random.split(key)
        full = jax.random.bernoulli(key_cap, config.playout_cap_fraction)
        output = jax.lax.cond(full, lambda: full_search(params, key_search, env),
                              lambda: cheap_search(params, key_search, env))
        return output, full

    return search


def ply_stats(ended: targets.PlyOutcome, balance: jax.Array, from_pool: jax.Array,
              mate_played: jax.Array) -> dict[str, jax.Array]:
    """One ply's `EPISODE_STATS` counts (`i32[]` each) from how it left the games, `i32[B]` their material
    balance after it (pawns), `bool[B]` which games started from the `--selfplay-starts` pool and `bool[B]` which
    played a mate in one their search found (`--play-searched-mates`)."""
    finished = ended.done & ~ended.truncated
    pool_finished = finished & from_pool
    return dict(
        games_finished=finished.sum(),
        white_wins=(finished & (ended.white_result > 0)).sum(),
        black_wins=(finished & (ended.white_result < 0)).sum(),
        draws=(finished & (ended.white_result == 0)).sum(),
        truncated=ended.truncated.sum(),
        adjudicated_wins=(ended.truncated & (ended.cut_result != 0) & jnp.isfinite(ended.cut_result)).sum(),
        drawn_ahead=targets.drawn_ahead(ended.white_result, finished, balance).sum(),
        ended_game_plies=jnp.where(ended.done, ended.ply, 0).sum(),
        pool_finished=pool_finished.sum(),
        pool_decisive=(pool_finished & (ended.white_result != 0)).sum(),
        mates_played=mate_played.sum(),
    )


def make_play_episode(config: Config, apply_fn: ApplyFn, pool: starts.StartPool | None = None):
    """Returns the pure `play_episode(params, selfplay_state, key, first_slot=0) -> (selfplay_state, Trajectory,
    stats)` for `config.selfplay_batch` games; `first_slot` numbers them in the trajectory (a device's share of the
    games under data parallelism starts at its offset).

    `stats` maps the names in `EPISODE_STATS` to `i32[]` totals over the episode: games_finished counts games that
    ended with a result (white_wins + black_wins + draws), truncated those cut at `max_plies` (their value target is
    NaN, or with `adjudicate_material` the material verdict: adjudicated_wins counts the decisive ones),
    drawn_ahead the draws with one side `targets.DRAWN_AHEAD_PAWNS` or more ahead (won positions not converted),
    ended_game_plies the plies of both, pool_finished and pool_decisive the finished games that started from the
    `--selfplay-starts` pool and those of them won by either side, mates_played the plies that played a mate in one
    the search found (`--play-searched-mates`; 0 without it). Jit it.

    With `--selfplay-start-share` the `pool` (`notation.read_start_pool`) is needed: the pool slots' games after
    their first start from a position drawn from it once per episode and slot (an extra key split: without a pool
    the random numbers are unchanged).
    """
    if config.selfplay_start_share > 0 and pool is None:
        raise ValueError("--selfplay-start-share needs the start pool (notation.read_start_pool)")
    pool = pool if config.selfplay_start_share > 0 else None
    search = make_capped_search(config, apply_fn)
    batch = config.selfplay_batch
    slots = jnp.arange(batch)

    def play_move(params, fresh: chess_env.State, in_pool, first_slot, carry: SelfPlayState, key: jax.Array):
        env, generation, results, result_plies = carry
        key_search, key_explore, key_random = jax.random.split(key, 3)
        with jax.named_scope("search"):
            output, full = search(params, key_search, env)
        action = choose_action(config, env, output, key_explore, key_random)
        legal_actions, policy = jax.vmap(encoding.compact_policy)(env.legal_action_mask, output.action_weights)
        target = full | (config.playout_cap_mate_targets & output.mate_found)  # [B]
        policy = jnp.where(target[:, None], policy, 0.0)  # a cheap search's policy is no target: all zeros
        record = Trajectory(
            position=Position(
                observation=encoding.pack_observation(env.observation),
                legal_actions=legal_actions,
                policy=policy,
                white_to_move=chess_env.white_to_move(env),
                slot=first_slot + slots,
                generation=generation,
                material=chess_env.material_balance(env).astype(jnp.int8),
                root_value=output.root_value.astype(jnp.float32),
            ),
            action=action,
        )

        with jax.named_scope("env_step"):
            next_env = chess_env.step(env, action)
        ended = targets.ply_outcome(config, env, next_env)
        mate_played = output.mate_found & (action == output.action)  # not replaced by a random move
        stats = ply_stats(ended, chess_env.material_balance(next_env), in_pool & (generation > 0), mate_played)
        results, result_plies, generation = targets.record(results, result_plies, generation, ended)
        done = ended.done
        next_env = jax.tree.map(
            lambda new, reset: jnp.where(done.reshape(-1, *([1] * (new.ndim - 1))), reset, new), next_env, fresh)

        return SelfPlayState(next_env, generation, results, result_plies), (record, stats)

    def play_episode(params, state: SelfPlayState, key: jax.Array, first_slot: int | jax.Array = 0):
        in_pool = jnp.zeros(batch, bool)
        fresh = chess_env.initial_states(batch)  # built inside the trace: a broadcast, not a [B]-sized constant
        if pool is not None:
            key, key_starts = jax.random.split(key)
            in_pool = starts.pool_slots(config, first_slot + slots)
            fresh = starts.fresh_states(pool, key_starts, in_pool)
        keys = jax.random.split(key, config.plies_per_episode)
        with jax.named_scope("selfplay"):
            state, (trajectory, stats) = jax.lax.scan(
                lambda carry, k: play_move(params, fresh, in_pool, first_slot, carry, k), state, keys)
        return state, trajectory, {name: value.sum().astype(jnp.int32) for name, value in stats.items()}

    return play_episode
