"""Every catalogued user mistake gets a clear error at the door, and a refused wrap attaches nothing."""

from __future__ import annotations

import re

import pytest

from diffaccel.testing.bad_inputs import BAD_INPUTS, CLEAR_ERRORS, make_objects


@pytest.fixture(scope="module")
def objects():
    return make_objects()


def _hooks(module):
    registry = getattr(module, "_diffusers_hook", None)
    return [] if registry is None else list(registry.hooks)


@pytest.mark.parametrize("label,action,pattern", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_gets_a_clear_error(objects, label, action, pattern):
    with pytest.raises(CLEAR_ERRORS) as info:
        action(objects)
    assert re.search(pattern, str(info.value)), str(info.value)
    assert getattr(objects.model, "_diffaccel", None) is None and getattr(objects.dllm, "_diffaccel", None) is None
    assert not [h for h in _hooks(objects.model) + _hooks(objects.dllm.model) if h.startswith("diffaccel")]
