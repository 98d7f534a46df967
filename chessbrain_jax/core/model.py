"""The AlphaZero-style residual network: pgx observation -> (policy logits over 4672 moves, value in [-1, 1]).

Normalisation is per sample (GroupNorm with one group, i.e. LayerNorm over H, W, C) rather than BatchNorm: the
network has no mutable batch statistics, self-play and training see the same function, and gradient accumulation over
k micro-batches equals one step on the k-times larger batch. The policy head is convolutional like AlphaZero's: 73
move planes per square, reordered to pgx's action index `from_square * 73 + plane`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from chessbrain_jax.config import Config
from chessbrain_jax.core import features
from chessbrain_jax.core.types import MOVE_PLANES, OBSERVATION_SHAPE

MOVES_LEFT_SCALE = 20.0  # plies: the moves-left head predicts softplus(output) x this (Leela Chess Zero's unit)
HISTORY_STEPS, PLANES_PER_STEP = 8, 14  # pgx: 8 positions x (12 piece + 2 repetition planes), then 7 scalar planes


def observation_to_action_order(planes: jax.Array) -> jax.Array:
    """Reorders per-square planes `[B, 8, 8, P]` laid out like pgx's observation to `[B, 64 * P]` in pgx square order.

    pgx's observation cell (row, col) shows square `col * 8 + (7 - row)` (file-major, rank 0 at the bottom row), so
    flipping rows and swapping the two spatial axes gives index `square * P + plane`.
    """
    batch, _, _, num_planes = planes.shape
    return jnp.transpose(planes[:, ::-1, :, :], (0, 2, 1, 3)).reshape(batch, 64 * num_planes)


def input_planes(observation: jax.Array, history_steps: int) -> jax.Array:
    """`f32[B, 8, 8, 119]` -> `[B, 8, 8, 14 x history_steps + 7]`: pgx's planes of the newest `history_steps`
    positions (14 each: 12 pieces, 2 repetition; the current position first) and its 7 scalar planes."""
    if history_steps == HISTORY_STEPS:
        return observation
    return jnp.concatenate([observation[..., :PLANES_PER_STEP * history_steps],
                            observation[..., PLANES_PER_STEP * HISTORY_STEPS:]], axis=-1)


class ResidualBlock(nn.Module):
    channels: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = lambda: nn.Conv(self.channels, (3, 3), use_bias=False, dtype=self.dtype)  # noqa: E731
        y = nn.relu(nn.GroupNorm(num_groups=1, dtype=self.dtype)(conv()(x)))
        # The block's last scale starts at zero, so every block starts as the identity (stable deep towers).
        y = nn.GroupNorm(num_groups=1, dtype=self.dtype, scale_init=nn.initializers.zeros)(conv()(y))
        return nn.relu(x + y)


class ChessNet(nn.Module):
    """`__call__(observation f32[B, 8, 8, 119]) -> (logits f32[B, 4672], value f32[B])`; compute in `dtype`, the
    output layers in float32. `__call__(observation, heads=True)` adds a dict of the extra heads' outputs (for the
    loss, and for the search's moves-left utility): `value_head="wdl"` makes value = P(win) - P(loss) of a softmax
    over win/draw/loss and adds those `f32[B, 3]` logits as "wdl"; `moves_left=True` adds "moves_left", `f32[B]`
    the predicted plies to the game's end (>= 0). `history_steps < 8` reads only the newest positions of the
    observation (`input_planes`); `attack_planes` adds 12 computed planes of attacked squares
    (`features.attack_planes`)."""

    channels: int = 64
    blocks: int = 6
    dtype: jnp.dtype = jnp.float32
    value_channels: int = 8
    value_hidden: int = 128
    value_head: str = "scalar"
    history_steps: int = HISTORY_STEPS
    attack_planes: bool = False
    moves_left: bool = False
    moves_left_hidden: int = 32

    @nn.compact
    def __call__(self, observation: jax.Array, heads: bool = False):
        x = input_planes(observation, self.history_steps)
        if self.attack_planes:
            x = jnp.concatenate([x, features.attack_planes(observation)], axis=-1)
        x = x.astype(self.dtype)
        x = nn.Conv(self.channels, (3, 3), use_bias=False, dtype=self.dtype, name="stem")(x)
        x = nn.relu(nn.GroupNorm(num_groups=1, dtype=self.dtype)(x))
        for index in range(self.blocks):
            x = ResidualBlock(self.channels, self.dtype, name=f"block_{index}")(x)

        p = nn.Conv(self.channels, (3, 3), use_bias=False, dtype=self.dtype, name="policy_conv")(x)
        p = nn.relu(nn.GroupNorm(num_groups=1, dtype=self.dtype)(p))
        # Zero-initialised output layers: an untrained network has a uniform prior and value 0, so search starts
        # unbiased (a random, peaked prior would hide moves from PUCT at low simulation counts).
        # The output layers compute in float32 whatever `dtype` is: bfloat16 logits would be quantised to 8 bits of
        # mantissa (steps of 1/16 near 10), blurring the prior the search reads.
        p = nn.Conv(MOVE_PLANES, (1, 1), dtype=jnp.float32, kernel_init=nn.initializers.zeros,
                    name="policy_planes")(p.astype(jnp.float32))
        logits = observation_to_action_order(p)

        extras = {}
        v = self._head_features(x, self.value_channels, self.value_hidden, "value")
        if self.value_head == "wdl":
            wdl_logits = nn.Dense(3, dtype=jnp.float32, kernel_init=nn.initializers.zeros,
                                  name="value_wdl")(v.astype(jnp.float32))
            probabilities = jax.nn.softmax(wdl_logits, axis=-1)
            value = probabilities[:, 0] - probabilities[:, 2]
            extras["wdl"] = wdl_logits
        else:
            v = nn.Dense(1, dtype=jnp.float32, kernel_init=nn.initializers.zeros,
                         name="value_out")(v.astype(jnp.float32))
            value = jnp.tanh(v)[:, 0]
        if self.moves_left:
            m = self._head_features(x, self.value_channels, self.moves_left_hidden, "moves_left")
            m = nn.Dense(1, dtype=jnp.float32, kernel_init=nn.initializers.zeros,
                         name="moves_left_out")(m.astype(jnp.float32))
            extras["moves_left"] = MOVES_LEFT_SCALE * jax.nn.softplus(m[:, 0])
        return (logits, value, extras) if heads else (logits, value)

    def _head_features(self, x: jax.Array, channels: int, hidden: int, name: str) -> jax.Array:
        """A scalar head's trunk: 1x1 convolution to `channels`, norm, ReLU, flattened, a ReLU dense layer of
        `hidden`: `[B, hidden]`. (The value head's layer names are those of earlier checkpoints.)"""
        h = nn.Conv(channels, (1, 1), use_bias=False, dtype=self.dtype, name=f"{name}_conv")(x)
        norm = None if name == "value" else f"{name}_norm"  # the value head's norm keeps its automatic name
        h = nn.relu(nn.GroupNorm(num_groups=1, dtype=self.dtype, name=norm)(h))
        h = h.reshape(h.shape[0], -1)
        return nn.relu(nn.Dense(hidden, dtype=self.dtype, name=f"{name}_hidden")(h))


def make_network(config: Config, dtype: str = "float32") -> ChessNet:
    return ChessNet(channels=config.channels, blocks=config.blocks, dtype=jnp.dtype(dtype),
                    value_head=config.value_head, history_steps=config.history_steps,
                    attack_planes=config.attack_planes, moves_left=config.moves_left_weight > 0)


def make_apply(network: ChessNet):
    """`apply(params, observation, heads=False) -> (logits, value[, extras])`: the pure function search,
    self-play and training call (`heads=True`: the extra heads' outputs too, `ChessNet`)."""
    return lambda params, observation, heads=False: network.apply({"params": params}, observation, heads)


def init_params(network: ChessNet, key: jax.Array):
    """Float32 parameters for `network` (master weights, whatever the compute dtype)."""
    return jax.jit(lambda k: network.init(k, jnp.zeros((1, *OBSERVATION_SHAPE), jnp.float32))["params"])(key)


def matmul_flops_per_position(channels: int, blocks: int, value_channels: int = 8, value_hidden: int = 128,
                              history_steps: int = HISTORY_STEPS, attack_planes: bool = False) -> int:
    """Multiply-add FLOPs (2 per MAC) of `ChessNet`'s convolutions and dense layers for one position, counted by
    hand: the stem and the tower's 3x3 convolutions dominate. A 3x3 'SAME' convolution over 8x8 squares has
    (2 + 6 x 3)^2 = 484 kernel taps on the board (not 64 x 9 = 576: edge squares miss the padding), so it costs
    2 x 484 x C_in x C_out. Norms and activations, a few percent, are left out."""
    squares = 64
    planes = OBSERVATION_SHAPE[-1] - PLANES_PER_STEP * (HISTORY_STEPS - history_steps)
    planes += features.ATTACK_PLANES if attack_planes else 0
    conv3 = lambda cin, cout: 2 * 484 * cin * cout  # noqa: E731
    return (conv3(planes, channels) + 2 * blocks * conv3(channels, channels) + conv3(channels, channels)
            + 2 * squares * channels * MOVE_PLANES + 2 * squares * channels * value_channels
            + 2 * squares * value_channels * value_hidden + 2 * value_hidden)
