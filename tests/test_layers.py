"""The import graph: no cycles (imports inside functions included) and clean floors.

Floors, bottom to top: ``onceonly`` shared pieces → ``onceonly.broker`` and ``onceonly.providers``
(neither imports the other) → ``onceonly.consumers``, whose ``cli`` is the composition root.
The public facades (``onceonly.client``, ``onceonly.provider_sdk``) and ``onceonly.__main__``
re-export from above by design.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import onceonly

ROOT = Path(onceonly.__file__).resolve().parent
FACADES = {"onceonly.client", "onceonly.provider_sdk", "onceonly.__main__"}


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    paths = [
        Path(folder) / name
        for folder, _, files in os.walk(ROOT, followlinks=True)  # through broker/, providers/, consumers/
        for name in files
        if name.endswith(".py")
    ]
    for path in sorted(paths):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[0] == "v1" or "migrations" in parts:
            continue
        name = ".".join(("onceonly", *parts)).removesuffix(".__init__")
        found[name] = path
    return found


MODULES = _modules()


def _imports(path: Path) -> set[str]:
    """Every onceonly module ``path`` imports, at any depth of the code."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("onceonly"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("onceonly"):
            assert node.level == 0, f"{path}: relative import"
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                out.add(child if child in MODULES else node.module)
    return {m for m in out if m in MODULES}


GRAPH = {name: _imports(path) for name, path in MODULES.items()}


def _floor(module: str) -> str:
    for package in ("broker", "providers", "consumers"):
        if module == f"onceonly.{package}" or module.startswith(f"onceonly.{package}."):
            return package
    return "shared"


def test_the_graph_is_not_empty() -> None:
    assert len(GRAPH) > 40 and GRAPH["onceonly.consumers.cli"]


def test_no_module_imports_its_way_back_to_itself() -> None:
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str], on_stack: set[str], done: set[str]) -> None:
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(GRAPH[node]):
            if nxt in on_stack:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in done:
                visit(nxt, stack, on_stack, done)
        on_stack.discard(node)
        stack.pop()
        done.add(node)

    done: set[str] = set()
    for start in sorted(GRAPH):
        if start not in done:
            visit(start, [], set(), done)
    assert cycles == []


def test_floors_are_clean() -> None:
    allowed = {
        "shared": {"shared"},
        "broker": {"shared", "broker"},
        "providers": {"shared", "providers"},
        "consumers": {"shared", "broker", "providers", "consumers"},
    }
    wrong = sorted(
        f"{module} → {target}"
        for module, targets in GRAPH.items()
        if module not in FACADES
        for target in targets
        if _floor(target) not in allowed[_floor(module)]
    )
    assert wrong == []


def test_only_the_entry_point_imports_the_composition_root() -> None:
    assert sorted(m for m, targets in GRAPH.items() if "onceonly.consumers.cli" in targets) == [
        "onceonly.__main__"
    ]


CORE = [
    "onceonly.errors",
    "onceonly.vocabulary",
    "onceonly.broker.domain",
    "onceonly.broker.errors",
    "onceonly.broker.ports",
    "onceonly.broker.policy",
    "onceonly.broker.service",
    "onceonly.broker.idempotency",
    "onceonly.broker.contracts",
    "onceonly.broker.records",
    "onceonly.broker.traces",
    "onceonly.broker.oversight",
]


def test_the_core_knows_nothing_of_grpc() -> None:
    """The core raises domain errors; only the edge (servicers, interceptors, onceonly.status) knows gRPC."""
    transport = ("grpc", "grpc_status", "google.rpc", "onceonly.v1", "onceonly.status")
    offenders = []
    for module in CORE:
        tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            offenders += [f"{module} → {n}" for n in names if n.split(".")[0] in transport or n in transport]
    assert offenders == []
