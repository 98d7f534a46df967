"""Self-play start pools (`--selfplay-starts`): the file is checked line by line, the pool slots are the ones the
formula names, their games restart from pool positions (replayed legal through python-chess, results right) and
the pool counters match the replay; scripts/endgame_starts.py writes legal, won, reproducible positions."""

from __future__ import annotations

import importlib.util

import chess
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from chessbrain_jax.config import ConfigError
from chessbrain_jax.core import selfplay, starts
from chessbrain_jax.play import notation
from tests.conftest import make_config
from tests.test_selfplay import MAX_PLIES, PLIES, STARTS, _result_of, _table

POOL = ["6k1/5ppp/8/8/8/8/5PPP/R5K1 w - - 0 1",  # white mates in one
        "8/8/8/4k3/8/8/8/R3K3 w - - 98 80"]  # drawn by the fifty-move rule after two plies


def _pool_file(tmp_path, lines) -> str:
    path = tmp_path / "pool.fen"
    path.write_text("".join(line + "\n" for line in lines))
    return str(path)


@pytest.mark.parametrize("share, recorded, expected", [
    (0.25, 4, [7, 11, 15]), (1.0, 4, list(range(4, 16))), (0.5, 0, [1, 3, 5, 7, 9, 11, 13, 15]), (0.0, 0, [])])
def test_pool_slots_skip_the_recorded_ones_and_spread_evenly(share, recorded, expected):
    config = make_config(selfplay_batch=16, selfplay_pgn_games=recorded, selfplay_start_share=share,
                         selfplay_starts="pool.fen")
    assert np.flatnonzero(np.asarray(starts.pool_slots(config, jnp.arange(16)))).tolist() == expected


def test_pool_positions_become_the_states_from_fen(tmp_path):
    fens = ["r3k2r/8/8/8/4Pp2/8/8/R3K2R b KQkq e3 0 1", POOL[0]]
    pool = notation.read_start_pool(_pool_file(tmp_path, ["# comment", "", *fens]))
    assert pool.board.dtype == np.int8 and pool.board.shape == (2, 64)
    drawn = jax.jit(lambda k: starts.fresh_states(pool, k, jnp.array([True, False, True, True])))
    seen = set()
    for seed in range(8):
        states = drawn(jax.random.PRNGKey(seed))
        found = [notation.state_to_fen(jax.tree.map(lambda x, i=i: x[i], states)) for i in range(4)]
        assert found[1] == chess.STARTING_FEN
        seen.update(found[0:1] + found[2:])
        for i in (0, 2, 3):  # the same state pgx builds from the FEN, legal moves included
            expected = notation.from_fen(found[i])
            np.testing.assert_array_equal(states.legal_action_mask[i], expected.legal_action_mask)
            np.testing.assert_array_equal(states._x.board[i], expected._x.board)
    assert seen == set(fens)


@pytest.mark.parametrize("text, fragment", [
    ("8/8/8/4k3/8/8/8/R3K3 w - - 0 1\nnot a position\n", ":2: not a FEN or EPD position"),
    ("8/8/8/8/8/8/8/8 w - - 0 1\n", ":1: not a legal position (no white king"),
    ("7k/6Q1/6K1/8/8/8/8/8 b - - 0 1\n", ":1: the game is already over"),
    ("# only a comment\n", "has no positions"),
])
def test_bad_pool_files_are_named_with_their_line(tmp_path, text, fragment):
    path = tmp_path / "bad.fen"
    path.write_text(text)
    with pytest.raises(ConfigError, match="--selfplay-starts: ") as error:
        notation.read_start_pool(str(path))
    assert fragment in str(error.value)


def test_pool_games_restart_from_the_pool_and_are_counted(tiny_network, tmp_path):
    """Every slot is a pool slot: after its first game (from STARTS) its games start from POOL positions; the
    replay identifies each by its legal moves, checks every move and result, and recounts the pool counters."""
    _, params, apply_fn = tiny_network
    config = make_config(selfplay_batch=4, plies_per_episode=PLIES, mcts_simulations=8,
                         gumbel_considered_actions=8, max_plies=MAX_PLIES, exploration_rate=0.0,
                         selfplay_starts=_pool_file(tmp_path, POOL), selfplay_start_share=1.0)
    start = notation.stack_states([notation.from_fen(fen) for fen, _ in STARTS])
    with pytest.raises(ValueError, match="needs the start pool"):
        selfplay.make_play_episode(config, apply_fn)
    pool = notation.read_start_pool(config.selfplay_starts)
    play = jax.jit(selfplay.make_play_episode(config, apply_fn, pool))
    final, trajectory, stats = jax.device_get(play(params, selfplay.init_selfplay(config, start),
                                                   jax.random.PRNGKey(0)))
    results, history = np.asarray(final.results), final.results.shape[1]
    position = trajectory.position
    finished = decisive = 0
    for slot, (fen, _) in enumerate(STARTS):
        board, generation = chess.Board(fen), 0
        for t in range(PLIES):
            if position.generation[t, slot] != generation:
                result = _result_of(board, generation)
                assert result == _table(results, slot, generation, history)
                if generation > 0 and result is not None:
                    finished, decisive = finished + 1, decisive + (result != 0)
                legal = {int(a) for a in position.legal_actions[t, slot] if a >= 0}
                [board] = [chess.Board(f) for f in POOL if notation.legal_actions(chess.Board(f)) == legal]
                generation += 1
            move = notation.action_to_move(board, int(trajectory.action[t, slot]))
            assert move in board.legal_moves
            board.push(move)
        if int(final.generation[slot]) != generation and generation > 0:  # ended at the episode's last ply
            result = _result_of(board, generation)
            finished, decisive = finished + (result is not None), decisive + bool(result)
    assert finished >= 2  # the fifty-move draw ends at its second ply
    assert (int(stats["pool_finished"]), int(stats["pool_decisive"])) == (finished, decisive)


def _script():
    spec = importlib.util.spec_from_file_location("endgame_starts", "scripts/endgame_starts.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def test_endgame_script_writes_legal_won_reproducible_positions(tmp_path):
    script = _script()
    out = tmp_path / "endgames.fen"
    assert script.main(["--out", str(out), "--positions", "300", "--seed", "3"]) == 0
    fens = [line for line in out.read_text().splitlines() if not line.startswith("#")]
    assert fens == script.positions(300, 3) and fens != script.positions(300, 4)
    values = {chess.PAWN: 1, chess.KNIGHT: 3, chess.BISHOP: 3, chess.ROOK: 5, chess.QUEEN: 9, chess.KING: 0}
    for fen in fens:
        board = chess.Board(fen)
        assert board.is_valid() and not board.is_game_over()
        lead = sum(values[p.piece_type] * (1 if p.color else -1) for p in board.piece_map().values())
        assert abs(lead) >= script.MIN_LEAD
        assert all(1 <= chess.square_rank(s) <= 6 for s in board.pieces(chess.PAWN, chess.WHITE) |
                   board.pieces(chess.PAWN, chess.BLACK))
    assert notation.read_start_pool(str(out)).board.shape == (300, 64)
    assert script.main(["--out", str(out), "--material", "KR/KR"]) == 2


def test_share_without_a_file_is_a_config_error():
    with pytest.raises(ConfigError, match="needs --selfplay-starts FILE"):
        make_config(selfplay_start_share=0.5)


def test_conversion_script_counts_each_players_results_as_the_stronger_side(tmp_path):
    spec = importlib.util.spec_from_file_location("conversion", "scripts/conversion.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    games = [("8/8/8/4k3/8/8/8/4K2Q w - - 0 1", "net", "greedy", "1-0", "checkmate"),
             ("8/8/8/4k3/8/8/8/4K2Q w - - 0 1", "greedy", "net", "1/2-1/2", "insufficient material"),
             ("4k2q/8/8/8/8/8/8/4K3 w - - 0 1", "net", "greedy", "1/2-1/2", "fifty-move rule"),
             (chess.STARTING_FEN, "net", "greedy", "0-1", "checkmate")]  # level: not counted
    text = "".join(f'[White "{white}"]\n[Black "{black}"]\n[Result "{result}"]\n[FEN "{fen}"]\n[SetUp "1"]\n'
                   f'[TerminationDetail "{detail}"]\n\n{result}\n\n' for fen, white, black, result, detail in games)
    (tmp_path / "games.pgn").write_text(text)
    assert script.main([str(tmp_path), "--json", str(tmp_path / "table.json")]) == 0
    assert script.conversion(str(tmp_path / "games.pgn")) == {
        "net": {"games": 1, "won": 1, "drawn": 0, "lost": 0, "draws_by": {}},
        "greedy": {"games": 2, "won": 0, "drawn": 2, "lost": 0,
                   "draws_by": {"insufficient material": 1, "fifty-move rule": 1}}}
