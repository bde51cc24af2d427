"""The table that peers register into: family name (`diffusers`, `cache-dit`) → how to check a spec, build its
runner, and list and describe its techniques.

Specs and runners read the table; each peer module adds its row when imported (`diffaccel.compare.peers`
imports them all), so the parsing and running code never imports a peer. A new peer is one module in
`compare/peers/` that ends with `register_peer(...)`, plus its import in `compare/peers/__init__.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Peer:
    """One peer family. `validate(spec)` checks technique and option names without importing the peer's
    library and returns the spec with the canonical technique name; `make_runner(spec)` builds its runner."""

    family: str
    validate: Callable[[Any], Any]
    make_runner: Callable[[Any], Any]
    names: Callable[[], list[str]]
    describe: Callable[[], list[tuple[str, str]]]


_PEERS: dict[str, Peer] = {}


def register_peer(family: str, *, validate, make_runner, names, describe) -> Peer:
    peer = Peer(family, validate, make_runner, names, describe)
    _PEERS[family] = peer
    return peer


def peer_families() -> tuple[str, ...]:
    return tuple(_PEERS)


def validate_peer_spec(spec):
    """Check a peer spec's technique and option names; returns it with the technique's canonical name."""
    return _PEERS[spec.family].validate(spec)


def make_peer_runner(spec):
    return _PEERS[spec.family].make_runner(spec)


def peer_names() -> list[str]:
    """Every peer spec name, e.g. `diffusers:fbc`."""
    return [f"{family}:{name}" for family, peer in _PEERS.items() for name in peer.names()]


def describe_peers() -> list[tuple[str, str]]:
    return [(f"{family}:{name}", text) for family, peer in _PEERS.items() for name, text in peer.describe()]
