"""chessbrain_jax: AlphaZero-style chess training by self-play in JAX.

The few names a script needs, loaded on first use (so `import chessbrain_jax.config` stays free of JAX):

    Config, load_config      the typed settings, filled from flags, a YAML file and the environment
    load_network             a checkpoint's network: `load_network(path).apply(observation)`
    load_player, parse_player a network player with search (`.analyse(board)`), or any arena player by spec
    make_search_fn           the batched mctx search over pgx states
    make_play_episode        the jitted self-play chunk
    play_match, summarise    a match between two players, and its score with Elo

The folders show the layers (docs/architecture.md): `core` (the hot path), `scale`, `storage`, `play`, `run`.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Config": "chessbrain_jax.config",
    "load_config": "chessbrain_jax.config",
    "load_network": "chessbrain_jax.storage.checkpoint",
    "load_player": "chessbrain_jax.play.player",
    "parse_player": "chessbrain_jax.play.arena",
    "make_search_fn": "chessbrain_jax.core.search",
    "make_play_episode": "chessbrain_jax.core.selfplay",
    "play_match": "chessbrain_jax.play.arena",
    "summarise": "chessbrain_jax.play.arena",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'chessbrain_jax' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
