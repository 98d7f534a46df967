"""Fixed input features computed from pgx's observation: the squares each piece type attacks.

A one-ply search sees a move's consequences only through the value head's opinion of the position after it, and a
small network that cannot tell that a piece is attacked by a cheaper one, or not defended, hangs pieces (session 19:
8% of its moves against a two-ply material search left a piece en prise). `attack_planes` hands it the attack maps
that a chess engine's move generator knows, so a 1x1 convolution can compare attackers and defenders of a square.
They are computed, not stored: the replay buffer keeps pgx's observation and the network derives them.

pgx shows the board from the side to move: cell (row, col) is file `col`, and the mover's pieces start at the bottom
(rows 6-7), so its pawns capture towards row 0 and the opponent's towards row 7. Planes 0-5 of the current position
are the mover's pawns, knights, bishops, rooks, queens and king; 6-11 the opponent's.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

ATTACK_PLANES = 12  # (mover, opponent) x (pawn, knight, bishop, rook, queen, king)
KNIGHT_STEPS = ((-2, -1), (-2, 1), (-1, -2), (-1, 2), (1, -2), (1, 2), (2, -1), (2, 1))
DIAGONALS = ((-1, -1), (-1, 1), (1, -1), (1, 1))
LINES = ((-1, 0), (1, 0), (0, -1), (0, 1))
KING_STEPS = DIAGONALS + LINES


def shift(planes: jax.Array, rows: int, cols: int) -> jax.Array:
    """`bool[B, 8, 8]` moved by (rows, cols) cells; what leaves the board is dropped and empty cells are False."""
    padded = jnp.pad(planes, ((0, 0), (2, 2), (2, 2)))
    return padded[:, 2 - rows:10 - rows, 2 - cols:10 - cols]


def _steps(pieces: jax.Array, steps) -> jax.Array:
    attacked = jnp.zeros_like(pieces)
    for rows, cols in steps:
        attacked |= shift(pieces, rows, cols)
    return attacked


def _rays(pieces: jax.Array, empty: jax.Array, directions) -> jax.Array:
    """Squares a slider attacks: along each direction up to and including the first occupied square."""
    attacked = jnp.zeros_like(pieces)
    for rows, cols in directions:
        frontier = pieces
        for _ in range(7):
            frontier = shift(frontier, rows, cols)
            attacked |= frontier
            frontier &= empty
    return attacked


def attack_planes(observation: jax.Array) -> jax.Array:
    """`f32[B, 8, 8, 119]` -> `f32[B, 8, 8, 12]` 0/1: for the mover, then the opponent, the squares attacked by its
    pawns, knights, bishops, rooks, queens and king in the current position (pins and checks ignored, as attack maps
    are; a square holding a piece of the attacking side counts as attacked, i.e. defended)."""
    pieces = observation[..., :12] > 0.5  # [B, 8, 8, 12]
    empty = ~pieces.any(axis=-1)
    planes = []
    for side, forward in ((0, -1), (6, 1)):
        piece = lambda kind: pieces[..., side + kind]  # noqa: E731
        planes += [
            _steps(piece(0), ((forward, -1), (forward, 1))),
            _steps(piece(1), KNIGHT_STEPS),
            _rays(piece(2), empty, DIAGONALS),
            _rays(piece(3), empty, LINES),
            _rays(piece(4), empty, DIAGONALS + LINES),
            _steps(piece(5), KING_STEPS),
        ]
    return jnp.stack(planes, axis=-1).astype(observation.dtype)
