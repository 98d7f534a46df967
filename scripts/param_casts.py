"""Where a bfloat16 self-play episode casts the network's float32 parameters: once, in the program's entry
computation, or inside the search's while loops (once per simulation). Compiles one small episode on the present
backend and prints, for each cast of a conv kernel, the computation that holds it.

    python scripts/param_casts.py
"""

from __future__ import annotations

import re

import jax

from chessbrain_jax.config import load_config
from chessbrain_jax.core import model, selfplay

KERNEL_CAST = re.compile(r"bf16\[3,3,32,32\]\{[^}]*\} convert\(")


def computations(hlo: str) -> dict[str, str]:
    """Optimized HLO text split into its computations, by name; the entry's name starts with 'ENTRY '."""
    out = {}
    for text in re.split(r"\n(?=\S.*\{\n)", hlo):
        header = text.split("\n", 1)[0]
        name = re.match(r"(ENTRY )?%?(\S+)", header)
        out[(name.group(1) or "") + name.group(2)] = text
    return out


def caller(comps: dict[str, str], name: str) -> str | None:
    bare = name.removeprefix("ENTRY ")
    for other, text in comps.items():
        if other != name and re.search(rf"(calls|body|condition|to_apply)=%{re.escape(bare)}\b", text):
            return other
    return None


def main() -> None:
    config = load_config(["--selfplay-batch", "8", "--plies-per-episode", "4", "--mcts-simulations", "8",
                          "--channels", "32", "--blocks", "2"], environ={})[0]
    network = model.make_network(config, "bfloat16")
    params = model.init_params(network, jax.random.PRNGKey(0))
    play = selfplay.make_play_episode(config, model.make_apply(network))
    hlo = jax.jit(play).lower(params, selfplay.init_selfplay(config), jax.random.PRNGKey(1)).compile().as_text()
    comps = computations(hlo)
    for name, text in comps.items():
        if KERNEL_CAST.search(text):
            chain = [name]
            while (up := caller(comps, chain[-1])) is not None:
                chain.append(up)
            inside = any(re.search(r"body=%" + re.escape(c.removeprefix("ENTRY ")), t)
                         for c in chain for t in comps.values())
            print(f"{'in a while body' if inside else 'outside every loop'}: {' <- '.join(chain)}")


if __name__ == "__main__":
    main()
