"""The zoo registry: listing, registering (callable and lazy string loaders), and clear errors."""

from __future__ import annotations

import pytest
import torch

from diffaccel import zoo
from diffaccel.zoo import registry


def test_builtin_models_are_listed_with_the_default_first():
    assert zoo.names()[:3] == ["flux-photos", "dit-digits", "unet-photos"]
    assert zoo.DEFAULT_MODEL == "flux-photos"
    assert all(zoo.entry(name).kind == "image" for name in zoo.names()[:3])


def test_register_callable_and_string_loaders():
    calls = []

    def loader(device="cpu", dtype=torch.float32):
        calls.append((device, dtype))
        return "pipeline"

    try:
        zoo.register_zoo_model("test-callable", loader, "a test entry", kind="dllm")
        zoo.register_zoo_model("test-string", "math:hypot", "resolved lazily")
        assert "test-callable" in zoo.names() and "test-string" in zoo.names()
        assert zoo.load("test-callable", device="cpu", dtype=torch.float64) == "pipeline"
        assert calls == [("cpu", torch.float64)]
        assert zoo.entry("test-callable").kind == "dllm"
        import math

        assert zoo.entry("test-string").resolve_loader() is math.hypot
    finally:
        zoo.unregister_zoo_model("test-callable")
        zoo.unregister_zoo_model("test-string")
    assert "test-callable" not in zoo.names()


def test_registry_errors():
    with pytest.raises(KeyError, match="available: flux-photos"):
        zoo.load("no-such-model")
    with pytest.raises(ValueError, match="already registered"):
        zoo.register_zoo_model("dit-digits", lambda **kw: None, "duplicate")
    with pytest.raises(TypeError, match="module:function"):
        zoo.register_zoo_model("bad", "not-a-path", "no colon")
    entry = registry.ZooEntry("x", "nomodule:", "broken")
    with pytest.raises(ValueError, match="module:function"):
        entry.resolve_loader()
