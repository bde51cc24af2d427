"""The default comparison's rows: the baseline, every strategy's preset, TaylorSeer's tuned presets, and
the peers at their swept best settings where a sweep exists (their defaults elsewhere)."""

from diffaccel.compare import peer_settings
from diffaccel.compare.defaults import default_specs
from diffaccel.compare.specs import parse_spec


def _tags(specs):
    return [s.tag for s in specs]


def test_the_default_rows_hold_the_baseline_the_presets_and_the_tuned_presets():
    tags = _tags(default_specs(include_peers=False))
    assert tags[0] == "none"
    assert {"taylorseer", "taylorseer:preset=psnr35", "taylorseer:preset=psnr30", "hyca", "taocache"} <= set(tags)
    for spec in default_specs():  # every row parses back to itself (what --resume relies on)
        assert parse_spec(spec.tag) == spec


def test_peers_appear_at_their_swept_settings_where_a_sweep_exists(monkeypatch):
    monkeypatch.setitem(
        peer_settings.PEER_BEST,
        ("some-model", 20),
        {35.0: ("diffusers:fbc:threshold=0.1",), 30.0: ("diffusers:fbc:threshold=0.2", "diffusers:fbc:threshold=0.1")},
    )
    tags = _tags(default_specs(model="some-model", steps=20))
    peers = [t for t in tags if t.startswith("diffusers:")]
    assert peers == [
        "diffusers:fbc:threshold=0.1",
        "diffusers:fbc:threshold=0.2",
        "diffusers:pab",  # unsupported on two-call guidance: kept at its default so the table says why
        "diffusers:fastercache",
    ]
    assert "diffusers:fbc" not in tags  # the default that skips almost nothing is not a row
    elsewhere = _tags(default_specs(model="some-model", steps=50))
    assert {"diffusers:fbc", "diffusers:magcache", "diffusers:taylorseer"} <= set(elsewhere)


def test_every_recorded_peer_setting_parses():
    for table in peer_settings.PEER_BEST.values():
        for specs in table.values():
            for text in specs:
                assert parse_spec(text).is_peer
