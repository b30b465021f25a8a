"""The package's shape: no import cycles, every module importable first, small modules, the
local server standing on the protocol alone, one meaning per name (no class or module name on
two sides), ``import rtwidget`` without the local server, tests that mirror the package, and the
module table of ``docs/architecture.md`` matching the tree."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "rtwidget"
MAX_LINES = 500


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports: at the top, in functions, and under
    ``TYPE_CHECKING`` alike, with the packages Python runs on the way to a submodule (but not
    the module's own parents, which are already running when it loads)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[:len(parts) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                       for a in node.names]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            pieces = target.split(".")
            for end in range(1, len(pieces) + 1):
                step = ".".join(pieces[:end])
                if step in known and step != name and not name.startswith(step + "."):
                    found.add(step)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_imports_another_in_a_cycle() -> None:
    assert cycles(graph()) == []


def test_the_local_server_imports_the_protocol_only() -> None:
    outside = {(name, dep) for name, deps in graph().items() if name.startswith("rtwidget.server")
               for dep in deps if dep != "rtwidget" and not dep.startswith(
                   ("rtwidget.server", "rtwidget.protocol", "rtwidget.aio"))}
    assert outside == set()


def test_the_protocol_does_no_io() -> None:
    io = re.compile(r"^\s*(import|from)\s+(socket|websockets|asyncio|threading|subprocess|"
                    r"urllib\.request|http\.client)\b", re.M)
    assert [n for n, p in modules().items() if n.startswith("rtwidget.protocol")
            and io.search(p.read_text())] == []


def test_every_module_is_small() -> None:
    """An alarm, not a target: a module past the cap is split by job (one module per thing it
    does), not squeezed under it with packed lines."""
    big = {n: lines for n, p in modules().items()
           if (lines := len(p.read_text().splitlines())) > MAX_LINES}
    assert big == {}, "split these by job"


def test_no_class_name_is_defined_twice() -> None:
    """One meaning per name: a class name names one class in the package (the server's carry
    their side: ``ServerProtocol``, ``ServerSession``, ``ServerItem``...)."""
    where: dict[str, list[str]] = {}
    for name, path in modules().items():
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                where.setdefault(node.name, []).append(name)
    assert {c: m for c, m in where.items() if len(m) > 1} == {}


def test_no_module_name_is_on_two_sides() -> None:
    """``client/``, ``server/`` and ``protocol/`` share no module name, so a module's name says
    which side it is on (``session.py`` is the client's, ``server_session.py`` the server's)."""
    sides = ("client", "server", "protocol", "notebook")
    names = {side: {p.stem for p in (PACKAGE / side).glob("*.py")} - {"__init__", "__main__"}
             for side in sides}
    shared = {(a, b): names[a] & names[b] for i, a in enumerate(sides) for b in sides[i + 1:]}
    assert {pair: both for pair, both in shared.items() if both} == {}


def test_importing_rtwidget_does_not_start_the_local_server_code() -> None:
    code = ("import sys, rtwidget; "
            "print(sorted(m for m in sys.modules if m.startswith('rtwidget.server')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout.strip()
    assert out == "[]"


def test_the_tests_mirror_the_package() -> None:
    """A module's tests are in the folder named like its package (``server/buffer.py``:
    ``tests/server/``); helpers in ``tests/support/``, browser tests in ``tests/e2e/``, tests
    of the whole (architecture, docs, secrets, load...) at the top."""
    tests = ROOT / "tests"
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    folders = {p.name for p in tests.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))}
    assert folders - {"support", "e2e", "fixtures"} == packages
    for folder in packages:
        assert list((tests / folder).glob("test_*.py")), folder


@pytest.mark.timeout(600)  # about 80 fresh interpreters: slow on a busy machine, not wrong
def test_every_module_can_be_imported_first() -> None:
    """Each module imported first in a fresh interpreter (a cycle hidden in a function would
    still pass the test above; this catches one at import time), a few at a time."""
    names = [n for n in modules() if n != "rtwidget.server.__main__"]
    failed = {}
    for start in range(0, len(names), 8):
        batch = names[start:start + 8]
        runs = {n: subprocess.Popen([sys.executable, "-c", f"import {n}"], cwd=ROOT,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                for n in batch}
        for n, run in runs.items():
            output, _ = run.communicate(timeout=120)
            if run.returncode:
                failed[n] = output[-400:]
    assert failed == {}


def _documented_modules() -> dict[str, set[str]]:
    """The module table of the architecture page: folder -> module names."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split("\n## Modules\n", 1)[1].split("\n## ", 1)[0]
    table = {}
    for folder, cell in re.findall(r"^\| `([\w/]+)/` \| ([^|]+) \|", section, re.M):
        table[folder] = set(re.findall(r"`(\w+)`", cell))
    return table


def test_the_architecture_page_module_table_matches_the_tree() -> None:
    tree: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        folder = path.parent.relative_to(ROOT).as_posix()
        key = "rtwidget" if folder == "rtwidget" else folder.removeprefix("rtwidget/")
        tree.setdefault(key, set()).add(path.stem)
    assert _documented_modules() == tree


def _documented_layers() -> list[tuple[str, set[str]]]:
    """The import table of the architecture page, in order: (package, the packages it
    imports), for the rows that name one package folder."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split("\n## What may import what\n", 1)[1].split("\n## ", 1)[0]
    return [(package, set(re.findall(r"`(\w+)/`", cell)))
            for package, cell in re.findall(r"^\| `(\w+)/` \| ([^|]+) \|", section, re.M)]


def test_each_package_imports_what_the_architecture_page_says_and_only_from_above() -> None:
    layers = _documented_layers()
    order = [package for package, _ in layers]
    found: dict[str, set[str]] = {package: set() for package in order}
    for name, deps in graph().items():
        parts = name.split(".")
        if len(parts) < 3 and not (PACKAGE / parts[-1]).is_dir():
            continue  # rtwidget/__init__ and rtwidget/testing stand on everything
        # a package's name in rtwidget ("rtwidget" for the root's own modules)
        found[parts[1]] |= {[*dep.split("."), "rtwidget"][1] for dep in deps} - {parts[1]}
    assert set(order) == {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert found == dict(layers)
    assert all(order.index(dep) < order.index(package) for package, deps in layers
               for dep in deps)


@pytest.mark.parametrize("folder", ["aio", "client", "data", "notebook", "protocol", "recording",
                                    "server", "tooling"])
def test_every_folder_says_what_it_holds(folder: str) -> None:
    assert ast.get_docstring(ast.parse((PACKAGE / folder / "__init__.py").read_text()))
