"""It learns: search finds mates in one, the pipeline turns them into policy and value targets, and training on
them makes the raw policy (no search) play the mate and the value head favour the side to move, for both colours."""

from __future__ import annotations

import chess
import jax
import jax.numpy as jnp
import numpy as np

from chessbrain_jax.core import learner, model, replay, selfplay
from chessbrain_jax.play import notation
from tests.conftest import make_config

MATES_IN_ONE = [
    "6k1/5ppp/8/8/8/8/5PPP/R5K1 w - - 0 1",  # Ra8#
    "r5k1/5ppp/8/8/8/8/5PPP/6K1 b - - 0 1",  # ...Ra1#
    "7k/6pp/8/8/8/8/8/1Q4K1 w - - 0 1",  # Qb8#
    "1q4k1/8/8/8/8/8/6PP/7K b - - 0 1",  # ...Qb1#
    "r1bqkb1r/pppp1ppp/2n2n2/4p2Q/2B1P3/8/PPPP1PPP/RNB1K1NR w KQkq - 4 4",  # Qxf7#
    "rnbqkbnr/pppp1ppp/8/4p3/6P1/5P2/PPPPP2P/RNBQKBNR b KQkq - 0 2",  # ...Qh4#
    "k7/8/1K6/8/8/8/8/7R w - - 0 1",  # Rh8#
    "7K/8/6k1/8/8/8/8/r7 b - - 0 1",  # ...Ra8#
]


def _mates(board: chess.Board, action: int) -> bool:
    board = board.copy()
    board.push(notation.action_to_move(board, action))
    return board.is_checkmate()


def test_training_on_searched_mates_teaches_the_raw_policy_to_mate():
    config = make_config(selfplay_batch=len(MATES_IN_ONE), plies_per_episode=1, mcts_simulations=64,
                         gumbel_considered_actions=64, exploration_rate=0.0, batch_size=8, replay_capacity=8,
                         learning_rate=3e-3, l2_weight=0.0, channels=16, blocks=1)
    boards = [chess.Board(fen) for fen in MATES_IN_ONE]
    network = model.make_network(config)
    params = model.init_params(network, jax.random.PRNGKey(0))
    apply_fn = model.make_apply(network)
    start = notation.stack_states([notation.from_fen(fen) for fen in MATES_IN_ONE])

    # One self-play ply from each position: the search's policy target, and the game's result as value target.
    play = jax.jit(selfplay.make_play_episode(config, apply_fn))
    final, trajectory, _ = play(params, selfplay.init_selfplay(config, start), jax.random.PRNGKey(0))
    buffer = replay.add(replay.init_replay(config), trajectory, final)
    targets = jax.device_get(trajectory.position)
    for slot, board in enumerate(boards):
        legal, policy = targets.legal_actions[0, slot], targets.policy[0, slot]
        assert _mates(board, int(legal[np.argmax(policy)]))  # the policy target's favourite move mates

    def raw_choices(params):
        logits, value = apply_fn(params, start.observation)
        return np.asarray(jnp.argmax(jnp.where(start.legal_action_mask, logits, -jnp.inf), axis=-1)), np.asarray(value)

    before, _ = raw_choices(params)
    assert sum(_mates(board, int(a)) for board, a in zip(boards, before)) <= 2  # untrained: near-uniform prior

    optimizer = learner.make_optimizer(config)
    state = learner.init_train_state(params, optimizer)
    train_step = jax.jit(learner.make_train_step(config, apply_fn, optimizer))
    sample = jax.jit(lambda buffer, key: replay.sample(buffer, key, config.batch_size))
    key = jax.random.PRNGKey(1)
    for _ in range(150):
        key, subkey = jax.random.split(key)
        state, metrics = train_step(state, sample(buffer, subkey))

    after, value = raw_choices(state.params)
    assert all(_mates(board, int(a)) for board, a in zip(boards, after)), [
        board.san(notation.action_to_move(board, int(a))) for board, a in zip(boards, after)]
    # Self-play plays Gumbel's sampled move, which can miss a mate: only games that ended have a value target.
    _, known = (np.asarray(x) for x in replay.value_targets(
        buffer, jnp.zeros(len(MATES_IN_ONE), jnp.int32), jnp.arange(len(MATES_IN_ONE))))
    mated = [board.turn for board, ended in zip(boards, known) if ended]
    assert len(mated) >= 6 and chess.WHITE in mated and chess.BLACK in mated
    # The mover mates: its value, from the mover's view, is high whether white or black is to move.
    assert np.all(value[known] > 0.5), value
