"""Every value-target rule in one place: how a ply ends a game (result, truncation, material adjudication), how
results are kept per game, and what value a stored position trains towards (its game's result, discounted per ply).

Results are kept from white's view in a `[B, H]` table per self-play slot (game (slot, g) at `[slot, g % H]`), NaN
while the game runs and for a cut game without a verdict. A position d plies before its game's end trains towards
`result x discount^(d - 1)` from the mover's view; the search discounts its values by the same factor per ply
(`edge_discount`), so its values and the value head's targets mean the same thing.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from chessbrain_jax.config import PGX_MAX_PLIES, Config
from chessbrain_jax.core import chess_env


class PlyOutcome(NamedTuple):
    """How one ply left each of `B` games: `done` `bool[B]` the game ended or was cut; `truncated` `bool[B]` cut
    (at `max_plies`, or pgx's 512-ply draw) without a natural end; `white_result` `f32[B]` the natural result from
    white's view (0 while running); `cut_result` `f32[B]` the material verdict of a cut game (NaN without
    `adjudicate_material`); `outcome` `f32[B]` what the results table records; `ply` `i32[B]` plies played."""

    done: jax.Array
    truncated: jax.Array
    white_result: jax.Array
    cut_result: jax.Array
    outcome: jax.Array
    ply: jax.Array


def adjudicate(balance: jax.Array, threshold: int) -> jax.Array:
    """`f32[...]` white's result for a game cut at the ply cap: +1 / -1 when `balance` (white minus black, pawns)
    is at least `threshold` either way, else 0 (a draw)."""
    return jnp.where(balance >= threshold, 1.0, jnp.where(balance <= -threshold, -1.0, 0.0)).astype(jnp.float32)


DRAWN_AHEAD_PAWNS = 5  # a draw with one side this much material ahead is a won position not converted


def drawn_ahead(white_result: jax.Array, natural_end: jax.Array, balance: jax.Array) -> jax.Array:
    """`bool[B]` games drawn by the rules with one side `DRAWN_AHEAD_PAWNS` or more ahead (`balance` `i32[B]`,
    white minus black, pawns)."""
    return natural_end & (white_result == 0) & (jnp.abs(balance) >= DRAWN_AHEAD_PAWNS)


def ply_outcome(config: Config, state: chess_env.State, next_state: chess_env.State) -> PlyOutcome:
    """The outcome of the move from `[B]` `state` to `next_state`. The results table records `outcome`: the
    natural result, the material verdict of a cut game, or `value_drawn_ahead` for the leader of a draw while far
    ahead (`drawn_ahead`)."""
    reward = chess_env.mover_reward(state, next_state)
    ply = chess_env.plies(next_state)
    at_cap = ply >= config.max_plies
    # pgx ends games at 512 plies as draws; that, like our own cap, is a truncation, not a result.
    natural_end = next_state.terminated & ((reward != 0) | (ply < PGX_MAX_PLIES))
    truncated = at_cap & ~natural_end
    white_result = jnp.where(chess_env.white_to_move(state), reward, -reward)
    balance = chess_env.material_balance(next_state)
    if config.adjudicate_material:
        cut_result = adjudicate(balance, config.adjudicate_material)
    else:
        cut_result = jnp.full_like(white_result, jnp.nan)
    outcome = jnp.where(truncated, cut_result, white_result)
    if config.value_drawn_ahead:
        leader_result = jnp.float32(config.value_drawn_ahead) * jnp.sign(balance).astype(jnp.float32)
        outcome = jnp.where(drawn_ahead(white_result, natural_end, balance), leader_result, outcome)
    return PlyOutcome(next_state.terminated | at_cap, truncated, white_result, cut_result, outcome, ply)


def record(results: jax.Array, result_plies: jax.Array, generation: jax.Array,
           ended: PlyOutcome) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Writes the outcome and length of every game that `ended` into the `f32[B, H]` / `i32[B, H]` tables, starts
    the slot's next game (generation + 1, its entry reset to NaN); returns (results, result_plies, generation)."""
    slots = jnp.arange(results.shape[0])
    history = results.shape[1]
    done = ended.done
    entry = generation % history
    results = results.at[slots, entry].set(jnp.where(done, ended.outcome, results[slots, entry]))
    result_plies = result_plies.at[slots, entry].set(jnp.where(done, ended.ply, result_plies[slots, entry]))
    generation = generation + done.astype(jnp.int32)
    entry = generation % history
    results = results.at[slots, entry].set(jnp.where(done, jnp.nan, results[slots, entry]))
    return results, result_plies, generation


def discounted(value: jax.Array, plies_to_end: jax.Array, discount: float) -> jax.Array:
    """`value x discount^(plies_to_end - 1)`: what a result is worth `plies_to_end` plies before it (the mating
    move's position, 1 ply before the end, gets the full result)."""
    if discount == 1.0:
        return value
    return value * jnp.float32(discount) ** jnp.maximum(plies_to_end - 1, 0).astype(jnp.float32)


def lookup(results: jax.Array, result_plies: jax.Array, slot_generation: jax.Array, column: jax.Array,
           generation: jax.Array, white_to_move: jax.Array, plies_before: jax.Array,
           discount: float = 1.0) -> tuple[jax.Array, jax.Array]:
    """(`f32[n]` value target from the mover's view, `bool[n]` known) for `n` positions of games (`column`,
    `generation`) `i32[n]`, with `plies_before` `i32[n]` plies played before each position.

    Unknown (target 0): games still running, cut without a verdict, or so old that their results-table entry has
    been reused (`slot_generation` `i32[B]`, the slots' current games)."""
    history = results.shape[1]
    white_result = results[column, generation % history]
    known = jnp.isfinite(white_result) & (slot_generation[column] - generation < history)
    value = jnp.where(white_to_move, white_result, -white_result)
    value = discounted(value, result_plies[column, generation % history] - plies_before, discount)
    return jnp.where(known, value, 0.0), known


def plies_left(result_plies: jax.Array, column: jax.Array, generation: jax.Array,
               plies_before: jax.Array) -> jax.Array:
    """`f32[n]` plies from each position to its game's end (the moves-left head's target; meaningful where the
    game's result is known, `lookup`)."""
    history = result_plies.shape[1]
    return jnp.maximum(result_plies[column, generation % history] - plies_before, 0).astype(jnp.float32)


def edge_discount(terminal: jax.Array, discount: float) -> jax.Array:
    """mctx's per-edge discount: `-discount` between plies (the value changes sides and loses the per-ply factor
    the value targets lose), 0 after a terminal state (its result is the edge's reward)."""
    return jnp.where(terminal, 0.0, -discount)


class ValueMix(NamedTuple):
    """What the value target mixes into game results (`mix`): `material_weight` of tanh(material lead / 3) read
    `material_plies` plies ahead in the same game, and `root_weight` of the search's root value. Zero weights (the
    default) keep results alone."""

    material_weight: float = 0.0
    material_plies: int = 4
    root_weight: float = 0.0

    @classmethod
    def of(cls, config: Config) -> ValueMix:
        return cls(config.value_material_weight, config.value_material_plies, config.value_root_weight)


RESULTS_ONLY = ValueMix()
MATERIAL_SCALE = 3.0  # pawns: a piece up is worth tanh(1) = 0.76 of a win


def material_value(lead: jax.Array) -> jax.Array:
    """`f32[...]` the value of a material lead (pawns, the mover's view): tanh(lead / MATERIAL_SCALE)."""
    return jnp.tanh(lead.astype(jnp.float32) / MATERIAL_SCALE)


def mix(result: jax.Array, known: jax.Array, material: jax.Array, root_value: jax.Array,
        weights: ValueMix) -> tuple[jax.Array, jax.Array]:
    """(`f32[n]` target, `bool[n]` known): `(1 - wm - wr) x result + wm x material + wr x root_value` where the
    result is known; where it is not, the mixed-in terms alone, in proportion (wm x material + wr x root) /
    (wm + wr). All `[n]`, from the mover's view; `material` is already a value (`material_value`)."""
    extra = weights.material_weight + weights.root_weight
    if extra == 0.0:
        return result, known
    mixed_in = (weights.material_weight * material + weights.root_weight * root_value) / extra
    value = jnp.where(known, (1.0 - extra) * result + extra * mixed_in, mixed_in)
    return value, jnp.ones_like(known)
