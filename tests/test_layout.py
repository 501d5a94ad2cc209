"""The package layout stays true: no import cycles, and data flows one way between the rooms.

Every import of every module of causalgen and cina (module level and inside functions) is read
with `ast`, resolved to the module it names, and checked against the rooms' rules:

    causalgen:  prior -> store -> hub -> causalgen (the top) -> causalgen.cli
    cina:       core, data -> train, eval -> cina (the top) -> cina.cli

A room imports only the rooms before it (and `causalgen._version`); cina reads causalgen only
through ``causalgen`` and ``causalgen.store``; causalgen never imports cina.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("causalgen", "cina")

#: room -> the rooms its modules may import (besides their own room)
ALLOWED = {
    "causalgen._version": set(),
    "causalgen.prior": {"causalgen._version"},
    "causalgen.store": {"causalgen._version", "causalgen.prior"},
    "causalgen.hub": {"causalgen._version", "causalgen.prior", "causalgen.store"},
    "causalgen": {"causalgen._version", "causalgen.prior", "causalgen.store", "causalgen.hub"},
    "causalgen.cli": {"causalgen._version", "causalgen.prior", "causalgen.store", "causalgen.hub", "causalgen"},
    "cina.core": set(),
    "cina.data": {"causalgen", "causalgen.store"},
    "cina.train": {"cina.core", "cina.data", "causalgen", "causalgen.store"},
    "cina.eval": {"cina.core", "causalgen", "causalgen.store"},
    "cina": {"cina.core", "cina.data", "causalgen", "causalgen.store"},
    "cina.cli": {"cina.core", "cina.data", "cina.train", "cina.eval", "causalgen", "causalgen.store"},
}


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _is_package(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


def _imports(module: str) -> list[tuple[int, str]]:
    """(line, imported module) for every import in `module` that names one of ours."""
    tree = ast.parse(MODULES[module].read_text(), str(MODULES[module]))
    package = module if _is_package(module) else module.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            for alias in node.names:
                # `from pkg import sub` imports the submodule pkg.sub when there is one
                sub = f"{target}.{alias.name}"
                out.append((node.lineno, sub if sub in MODULES else target))
    return [(line, name) for line, name in out if name.split(".")[0] in PACKAGES]


def _room(module: str) -> str:
    """The room a module belongs to: the longest key of ALLOWED that is it or its package."""
    parts = module.split(".")
    for k in range(len(parts), 0, -1):
        candidate = ".".join(parts[:k])
        if candidate in ALLOWED:
            return candidate
    raise AssertionError(f"{module}: not in any room of tests/test_layout.py's ALLOWED (add it there)")


def _graph() -> nx.DiGraph:
    g = nx.DiGraph()
    g.add_nodes_from(MODULES)
    for module in MODULES:
        for line, target in _imports(module):
            assert target in MODULES, f"{MODULES[module]}:{line}: imports {target}, which does not exist"
            g.add_edge(module, target, line=line)
    return g


def test_every_module_belongs_to_a_room():
    for module in MODULES:
        _room(module)


def test_no_module_imports_one_that_imports_it_back():
    g = _graph()
    cycles = [sorted(c) for c in nx.strongly_connected_components(g) if len(c) > 1]
    assert not cycles, f"import cycles: {cycles}"


def _violation(module: str, line: int, target: str) -> str | None:
    """Why `module` may not import `target` (None when it may)."""
    room, target_room = _room(module), _room(target)
    where = f"{MODULES.get(module, module)}:{line}"
    if target_room == room:
        return None
    if room.startswith("cina") and target.startswith("causalgen"):
        if target not in ("causalgen", "causalgen.store"):
            return f"{where}: imports {target}; cina may use `causalgen` and `causalgen.store` only"
        return None
    if target_room not in ALLOWED[room]:
        return (f"{where}: {room} may not import {target} (room {target_room}); "
                f"it may import {sorted(ALLOWED[room]) or 'nothing outside itself'}")
    return None


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_follow_the_flow(module):
    problems = [v for line, target in _imports(module) if (v := _violation(module, line, target))]
    assert not problems, "\n".join(problems)


def test_the_checker_sees_violations():
    """The rules bite: imports against the flow are reported, imports with it are not."""
    assert _violation("causalgen.store.corpus", 1, "causalgen.hub.reader")  # store -> hub
    assert _violation("causalgen.prior.sampler", 1, "causalgen.store.shard")  # prior -> store
    assert _violation("causalgen.prior.sampler", 1, "causalgen")  # a room -> the top that imports it
    assert _violation("cina.data.stream", 1, "causalgen.store.shard")  # past causalgen.store's public names
    assert _violation("cina.core.model", 1, "cina.data.stream")  # the core reaching into data
    assert _violation("cina.eval.evaluate", 1, "cina.cli")
    assert _violation("causalgen.hub.reader", 1, "causalgen.store.corpus") is None
    assert _violation("cina.train", 1, "cina.core.model") is None
    # and the reader sees function-level imports
    assert any(t == "causalgen.store.corpus" for _, t in _imports("causalgen.hub.reader"))


def test_every_room_says_what_it_holds():
    for module in MODULES:
        if _is_package(module):
            doc = ast.get_docstring(ast.parse(MODULES[module].read_text()))
            assert doc and len(doc.split()) > 15, f"{MODULES[module]}: the room's docstring should say what it holds"
