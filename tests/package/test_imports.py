"""The package's import structure: no cycles, a core that knows no domain, no private names across modules.

Read statically from the source (`import_graph`), imports inside functions included: a lazy import still ties
two modules together.
"""

from __future__ import annotations

import ast
import subprocess
import sys

from tests.package.import_graph import PACKAGE_ROOT, cycles, import_graph, module_name

#: the library's core: what every domain builds on
CORE = (
    "diffaccel.core",
    "diffaccel.api",
    "diffaccel.strategies.registry",
    "diffaccel.strategies.base",
    "diffaccel.adapters",
    "diffaccel.forecast",
)
#: domains and tools built on the core (a domain registers its strategies with the core on import)
DOMAINS = (
    "diffaccel.dllm",
    "diffaccel.policy",
    "diffaccel.compare",
    "diffaccel.zoo",
    "diffaccel.generate",
    "diffaccel.strategies.taylorseer",
    "diffaccel.strategies.hyca",
    "diffaccel.strategies.taocache",
    "diffaccel.hyca",
    "diffaccel.taocache",
)


def _under(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_no_import_cycle():
    assert cycles(import_graph()) == []


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_core_imports_no_domain():
    graph = import_graph()
    offending = {m: sorted(t for t in targets if _under(t, DOMAINS)) for m, targets in graph.items() if _under(m, CORE)}
    assert {m: t for m, t in offending.items() if t} == {}


def test_no_private_name_is_imported_from_another_module():
    found = []
    for path in PACKAGE_ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("diffaccel")):
                private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
                if private:
                    found.append((module_name(path), node.module, private))
    assert found == []


def test_import_diffaccel_is_light_and_subpackages_are_attributes():
    code = (
        "import sys, diffaccel; heavy = sorted(m for m in ('diffaccel.zoo', 'diffaccel.dllm', 'diffaccel.compare', "
        "'matplotlib', 'skimage', 'rich', 'imageio') if m in sys.modules); print(heavy); "
        "print(diffaccel.zoo.names()[0], diffaccel.dllm.dllm_strategies()[0], callable(diffaccel.hyca.profile), "
        "callable(diffaccel.taocache.calibrate))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out == ["[]", "flux-photos dkv-cache True True"]


def test_unknown_attribute_is_an_attribute_error():
    import diffaccel

    try:
        diffaccel.no_such_thing  # noqa: B018
    except AttributeError as error:
        assert "no_such_thing" in str(error)
    else:
        raise AssertionError("expected AttributeError")
