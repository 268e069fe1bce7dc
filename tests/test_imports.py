"""The layering holds, checked from the source (every ``import`` statement, including those
under ``if TYPE_CHECKING:`` and inside functions, since each is a dependency a reader must
follow):

* the sans-I/O core imports nothing that does I/O or reads a clock, nor any layer above it;
* ``udptcp`` has no import cycle: every module can be read after the ones it imports.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "udptcp"

#: What ``udptcp.core`` must not import: I/O, the event loop, the clock, the layers above.
CORE_FORBIDDEN = (
    "asyncio",
    "selectors",
    "socket",
    "ssl",
    "subprocess",
    "threading",
    "time",
    "uvloop",
    "udptcp.aio",
    "udptcp.cli",
    "udptcp.nat",
    "udptcp.tools",
)


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()
#: Compiled extension modules, named by their C sources (``udptcp/core/_speedups.c``).
EXTENSIONS = {
    ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    for path in PACKAGE.rglob("*.c")
}


def _imports(name: str) -> Iterator[tuple[int, str]]:
    """(line, imported module) for every import in module ``name``; ``from x import y``
    counts as ``x.y`` when that is a module of the package, else as ``x``."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                if full in EXTENSIONS:
                    continue  # a compiled module (C source) imports nothing of ours
                yield node.lineno, full if full in MODULES else base


def _internal(imported: str) -> str | None:
    """The package module an import names (its nearest enclosing module), or None."""
    while imported and imported not in MODULES:
        imported = imported.rpartition(".")[0]
    return imported or None


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name in MODULES:
        deps = {_internal(imported) for _, imported in _imports(name)}
        graph[name] = {d for d in deps if d is not None and d != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm,
    iterative), each as a list of module names."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_checker_sees_the_package():
    assert "udptcp.core.connection" in MODULES and "udptcp.aio.endpoint" in MODULES
    graph = _graph()
    assert "udptcp.aio.transport" in graph["udptcp.aio.endpoint"]
    assert "udptcp.core.segment" in graph["udptcp.core.connection"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("name", [n for n in MODULES if n.startswith("udptcp.core")])
def test_the_core_imports_no_io_no_clock_and_no_layer_above(name):
    bad = [
        f"{MODULES[name].name}:{line}: import {imported}"
        for line, imported in _imports(name)
        if imported == "udptcp"  # the package's __init__ is the asyncio API
        or any(imported == f or imported.startswith(f + ".") for f in CORE_FORBIDDEN)
    ]
    assert not bad, "the sans-I/O core must not import these:\n" + "\n".join(bad)


def test_udptcp_has_no_import_cycle():
    graph = _graph()
    cycles = _cycles(graph)
    assert not cycles, "modules that import each other in a circle:\n" + "\n".join(
        " <-> ".join(c)
        + "\n    "
        + "\n    ".join(f"{m} imports {sorted(graph[m] & set(c))}" for m in c)
        for c in cycles
    )


#: The endpoint's modules: ``Endpoint`` and the parts it is built from (``endpointbase.py``).
ENDPOINT_PARTS = (
    "udptcp.aio.endpoint",
    "udptcp.aio.endpointbase",
    "udptcp.aio.sockio",
    "udptcp.aio.deadlines",
    "udptcp.aio.routing",
    "udptcp.aio.passive",
    "udptcp.aio.connections",
    "udptcp.aio.limits",
)


def test_the_endpoint_and_the_simulator_share_one_demultiplexer_and_timer_heap():
    """One set of routing rules and one timer structure: the simulator's matrix runs the
    endpoint's. (The simulator's own heap is its network's event queue.)"""
    # The simulator is simnet (network, clock) with its hosts in simhost; the endpoint is
    # endpoint.py and the parts it is assembled from.
    for names in (ENDPOINT_PARTS, ("udptcp.tools.simnet", "udptcp.tools.simhost")):
        imported = {_internal(module) or module for name in names for _, module in _imports(name)}
        assert {"udptcp.core.demux", "udptcp.core.timerheap"} <= imported, names
    endpoint = {module for name in ENDPOINT_PARTS for _, module in _imports(name)}
    assert "heapq" not in endpoint, "the endpoint keeps a timer heap of its own"
