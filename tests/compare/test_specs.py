"""Strategy specs as the CLI takes them: splitting, canonical tags, validation, the baseline first."""

from __future__ import annotations

import pytest

from diffaccel.compare.specs import BASELINE, make_spec, parse_spec, parse_spec_list, split_spec_list
from diffaccel.core.errors import UnknownStrategyError


def test_split_keeps_option_items_with_their_spec():
    assert split_spec_list("taylorseer:interval=2,order=2,none") == ["taylorseer:interval=2,order=2", "none"]
    assert split_spec_list(["taylorseer:interval=2 taylorseer:interval=3", "diffusers:fbc:threshold=0.1"]) == [
        "taylorseer:interval=2",
        "taylorseer:interval=3",
        "diffusers:fbc:threshold=0.1",
    ]
    # an option item after a bare name attaches with a colon
    assert split_spec_list("taylorseer,interval=4") == ["taylorseer:interval=4"]
    with pytest.raises(UnknownStrategyError, match="before any strategy"):
        split_spec_list("interval=4")


def test_parse_types_and_canonical_tag():
    spec = parse_spec("taylorseer:order=2,interval=4")
    assert spec.family == "diffaccel" and spec.name == "taylorseer"
    assert spec.options_dict == {"interval": 4, "order": 2}
    assert isinstance(spec.options_dict["interval"], int)
    # options sorted: the same run written two ways has one tag
    assert spec.tag == "taylorseer:interval=4,order=2" == parse_spec("taylorseer:interval=4,order=2").tag
    assert parse_spec(spec.tag) == spec
    peer = parse_spec("diffusers:fbc:threshold=0.1")
    assert (peer.family, peer.name, peer.options_dict, peer.strategy) == (
        "diffusers",
        "fbc",
        {"threshold": 0.1},
        "diffusers:fbc",
    )
    assert parse_spec("diffusers:first-block-cache") == make_spec("diffusers", "fbc")
    assert parse_spec("cache-dit:taylorseer:taylorseer_order=2").options_dict == {"taylorseer_order": 2}


def test_baseline_first_and_deduplicated():
    specs = parse_spec_list(["taylorseer:interval=3", "taylorseer:interval=3,none", "diffusers:pab"])
    assert [s.tag for s in specs] == ["none", "taylorseer:interval=3", "diffusers:pab"]
    assert specs[0] is BASELINE
    assert parse_spec("baseline") == BASELINE


@pytest.mark.parametrize(
    "text, message",
    [
        ("nosuch", "Unknown strategy 'nosuch'"),
        ("taylorseer:nosuch=1", "Unknown option"),
        ("taylorseer:interval=0", "interval must be >= 1"),
        ("diffusers:nosuch", "unknown diffusers technique"),
        ("diffusers:fbc:nosuch=1", "unknown option 'nosuch' for diffusers:fbc"),
        ("diffusers:pab:current_timestep_callback=1", "set by the harness"),
        ("cache-dit:nosuch", "unknown cache-dit technique"),
        ("cache-dit:dbcache:taylorseer_order=1", "unknown option 'taylorseer_order'"),
        ("diffusers", "names no technique"),
        ("none:interval=2", "takes no options"),
    ],
)
def test_bad_specs_are_clear_errors(text, message):
    with pytest.raises((UnknownStrategyError, ValueError, TypeError), match=message):
        parse_spec(text)


def test_compositions_keep_options_per_part_and_round_trip():
    from diffaccel.compare.specs import parse_spec, parse_spec_list

    spec = parse_spec("taylorseer:interval=4,order=2+taocache:max_skips=1")
    assert spec.name == "taylorseer+taocache"
    assert spec.parts == ["taylorseer:interval=4,order=2", "taocache:max_skips=1"]
    assert parse_spec(spec.tag) == spec
    listed = parse_spec_list("taylorseer:interval=4,order=2+taocache none")
    assert [s.tag for s in listed] == ["none", "taylorseer:interval=4,order=2+taocache"]
