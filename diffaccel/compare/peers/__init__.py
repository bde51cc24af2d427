"""Peers in the comparison, each run through its own code: diffusers' built-in cache hooks
(`diffusers:<technique>`) and cache-dit (`cache-dit:<dbcache|taylorseer>`, an optional extra).

Peers are timed and scored exactly like diffaccel's strategies; since they report no statistics the
harness counts their work (see `diffaccel.compare.counting`). A peer that cannot run on a model becomes a
table row with the reason, never a crash. Each peer module registers itself in `diffaccel.compare.peer_table`
when imported; this package imports them all.
"""

from __future__ import annotations

from ..peer_table import describe_peers, make_peer_runner, peer_names, validate_peer_spec
from . import cache_dit, diffusers_hooks

__all__ = ["cache_dit", "describe_peers", "diffusers_hooks", "make_peer_runner", "peer_names", "validate_peer_spec"]
