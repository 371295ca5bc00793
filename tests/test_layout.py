"""The package's layout holds: the module map in ``orchestrator/__init__.py`` matches the tree,
no import goes against its arrows, no two modules import each other, private names stay private.

Imports are read with ``ast`` from the source (every import: top level, inside functions, and
under ``TYPE_CHECKING``, since a cycle for types is still a cycle), so nothing is executed.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

import orchestrator

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "orchestrator"
#: Third-party libraries only the front layer may import (STYLE: nothing below cli uses them).
FRONT_ONLY = ("click", "rich")


def module_name(path: Path) -> str:
    """``orchestrator/ledger/store.py`` -> ``orchestrator.ledger.store``; a package is its name."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, source: str) -> set[str]:
    """The modules of ours that ``name``'s source imports (a package counts as its ``__init__``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(name, node)
            for alias in node.names:
                child = f"{base}.{alias.name}"
                found.add(child if child in MODULES else base)
    return {m for m in found if m in MODULES and m != name}


def _absolute(name: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    is_package = MODULES[name].name == "__init__.py"
    parts = name.split(".")[: None if is_package else -1]
    parts = parts[: len(parts) - node.level + 1]
    return ".".join([*parts, *([node.module] if node.module else [])])


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of ours it imports, for the whole tree."""
    return {name: imports_of(name, path.read_text()) for name, path in MODULES.items()}


def reachable(graph: Mapping[str, Iterable[str]], start: str) -> set[str]:
    """Every module ``start`` imports, directly or through others (itself only around a loop)."""
    seen: set[str] = set()
    todo = list(graph.get(start, ()))
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo += graph.get(node, ())
    return seen


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Every group of modules that import each other, directly or around a loop."""
    reach = {node: reachable(graph, node) for node in graph}
    groups = {
        tuple(sorted(other for other in reach[node] if node in reach.get(other, ())))
        for node in graph
        if node in reach[node]
    }
    return sorted(list(group) for group in groups)


# -- the map, read from the package docstring -----------------------------------------------------


@dataclass(frozen=True)
class ModuleMap:
    """The layers with their arrows, and where each map entry sits."""

    arrows: dict[str, set[str]]
    entries: dict[str, str]  #: ``runner`` or ``ledger/`` -> its layer
    descriptions: dict[str, str]  #: the same keys -> the text that says what it owns

    def reach(self, layer: str) -> set[str]:
        """The layers ``layer`` may import: itself and everything its arrows lead to."""
        seen, todo = {layer}, [layer]
        while todo:
            for target in self.arrows[todo.pop()]:
                if target not in seen:
                    seen.add(target)
                    todo.append(target)
        return seen

    def layer_of(self, module: str) -> str | None:
        """The layer of a module of the tree (a package's modules are in the package's)."""
        short = module.removeprefix("orchestrator.")
        top = short.split(".")[0]
        if "." in short or f"{top}/" in self.entries:
            return self.entries.get(f"{top}/")
        return self.entries.get(short)


ARROW = re.compile(r"^(\w+) +-> (.+)$")
LAYER = re.compile(r"^(\w+)$")
ENTRY = re.compile(r"^  (\S+) +(.+)$")
MORE = re.compile(r"^ {16}(.+)$")


def map_blocks(docstring: str) -> tuple[list[str], list[str]]:
    """The map's two literal blocks (layers with arrows; modules), without their indent."""
    layers, modules = docstring.split("Layers::", 1)[1].split("Modules (", 1)
    modules = modules.split("::", 1)[1]

    def lines(text: str) -> list[str]:
        return [line[4:] for line in text.splitlines() if line.startswith("    ")]

    return lines(layers), lines(modules)


def read_map(docstring: str) -> ModuleMap:
    """Parse the map of the package docstring (format: see ``orchestrator/__init__.py``)."""
    arrows: dict[str, set[str]] = {}
    entries: dict[str, str] = {}
    descriptions: dict[str, str] = {}
    layer_lines, module_lines = map_blocks(docstring)
    for line in layer_lines:
        m = ARROW.match(line)
        assert m, f"not a layer line: {line!r}"
        targets = m.group(2).strip()
        arrows[m.group(1)] = set() if targets == "(nothing)" else set(targets.split(", "))
    layer, last = None, None
    for line in module_lines:
        if m := LAYER.match(line):
            layer = m.group(1)
        elif (m := ENTRY.match(line)) and layer is not None:
            last = m.group(1)
            entries[last] = layer
            descriptions[last] = m.group(2)
        elif (m := MORE.match(line)) and last is not None:
            descriptions[last] += " " + m.group(1)
        else:
            raise AssertionError(f"not a map line: {line!r}")
    return ModuleMap(arrows, entries, descriptions)


MAP = read_map(orchestrator.__doc__ or "")


# -- the checker can fail -------------------------------------------------------------------------


def test_cycle_finder_reports_loops_and_passes_chains() -> None:
    """The cycle check finds a pair, a longer loop and a self-import, and nothing in a DAG."""
    assert cycles({"a": {"b"}, "b": {"a"}}) == [["a", "b"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"a"}}) == [["a"]]
    assert cycles({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


def test_import_reader_sees_every_kind_of_import() -> None:
    """Function-local, TYPE_CHECKING and `from package import module` imports all count."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "from orchestrator import errors\n"
        "from orchestrator.money import reports\n"
        "if TYPE_CHECKING:\n    from orchestrator.runner import RunSummary\n"
        "def f():\n    import orchestrator.ledger.store\n"
    )
    assert imports_of("orchestrator.jobs", source) == {
        "orchestrator.errors",
        "orchestrator.money.reports",
        "orchestrator.runner",
        "orchestrator.ledger.store",
    }


def test_layer_rules_refuse_an_upward_import() -> None:
    """The arrows allow downward imports and refuse upward and sideways ones."""
    assert "base" in MAP.reach("front")
    assert "money" in MAP.reach("stages")
    assert "runner" not in MAP.reach("stages")
    assert "services" not in MAP.reach("simulator")
    assert MAP.layer_of("orchestrator.ledger.store") == "services"
    assert MAP.layer_of("orchestrator.cli.progress") == "front"


# -- the tree against the map ---------------------------------------------------------------------


def test_every_module_is_in_the_map_and_every_entry_exists() -> None:
    """Each root module has a line; each package's line names every module in it."""
    missing, stale = [], []
    for name in MODULES:
        short = name.removeprefix("orchestrator").lstrip(".")
        if not short:
            continue
        top, _, rest = short.partition(".")
        if f"{top}/" in MAP.entries:
            words = set(re.findall(r"\w+", MAP.descriptions[f"{top}/"]))
            if rest and rest not in words:
                missing.append(name)
        elif short not in MAP.entries:
            missing.append(name)
    for entry in MAP.entries:
        path = PACKAGE / entry if entry.endswith("/") else PACKAGE / f"{entry}.py"
        if not path.exists():
            stale.append(entry)
    assert not missing, f"modules not in the map in orchestrator/__init__.py: {missing}"
    assert not stale, f"map entries with no module: {stale}"
    assert set(MAP.entries.values()) == set(MAP.arrows), "every layer has modules and an arrow"


def test_no_import_cycles() -> None:
    """No two modules import each other, directly or around a loop, not even for types."""
    assert cycles(import_graph()) == []


def test_no_import_goes_against_the_arrows() -> None:
    """Every import of ours goes to the importer's own layer or one its arrows reach."""
    wrong = []
    for source, targets in import_graph().items():
        if source == "orchestrator":
            continue  # the facade: its imports are lazy (see the test below)
        layer = MAP.layer_of(source)
        assert layer is not None, source
        allowed = MAP.reach(layer)
        wrong += [
            f"{source} ({layer}) imports {target} ({MAP.layer_of(target)})"
            for target in sorted(targets)
            if MAP.layer_of(target) not in allowed
        ]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("library", FRONT_ONLY)
def test_only_the_front_imports_the_terminal_libraries(library: str) -> None:
    """click and rich stay in the front layer (cli/), so the library runs without a terminal."""
    users = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if any(n.split(".")[0] == library for n in names) and MAP.layer_of(name) != "front":
                users.append(name)
    assert not users


def test_importing_the_package_loads_nothing_else() -> None:
    """`import orchestrator` is cheap: public names load on first use, and still work."""
    code = (
        "import sys, orchestrator\n"
        "print(sorted(m for m in sys.modules if m.startswith('orchestrator')))\n"
        "from orchestrator.runner import RunSummary\n"
        "print(callable(orchestrator.jobs), orchestrator.RunSummary is RunSummary)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out == ["['orchestrator', 'orchestrator.jobs']", "True True"]


def test_the_command_line_loads_no_http_or_sqlite_until_a_command_runs() -> None:
    """`orchestrator --help` pays for click alone: aiohttp, aiosqlite and jsonschema load later."""
    code = (
        "import sys\n"
        "from orchestrator.cli.cli import main\n"
        "heavy = ('aiohttp', 'aiosqlite', 'jsonschema', 'rich')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "[]"


# -- names: private stays private, public is documented -------------------------------------------


def _used_names(path: Path) -> Iterable[tuple[str, str]]:
    """(module, name) pairs that ``path`` takes from a module of ours: imports and attributes."""
    tree = ast.parse(path.read_text())
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("orchestrator"):
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                if child in MODULES:
                    aliases[alias.asname or alias.name] = child
                else:
                    yield node.module or "", alias.name
    for node in ast.walk(tree):
        value = node.value if isinstance(node, ast.Attribute) else None
        if isinstance(value, ast.Name) and value.id in aliases:
            assert isinstance(node, ast.Attribute)
            yield aliases[value.id], node.attr


def _definitions(path: Path) -> dict[str, bool]:
    """Top-level functions and classes of a module -> whether each has a docstring."""
    body = ast.parse(path.read_text()).body
    return {
        node.name: ast.get_docstring(node) is not None
        for node in body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
    }


def _package(module: str) -> str:
    return module if MODULES[module].name == "__init__.py" else module.rsplit(".", 1)[0]


def test_no_module_uses_another_modules_private_names() -> None:
    """A name starting with `_` is used only in its own module (tests included)."""
    users = [
        p for d in ("orchestrator", "tests", "bench", "scripts") for p in (ROOT / d).rglob("*.py")
    ]
    leaks = [
        f"{path.relative_to(ROOT)} uses {module}.{name}"
        for path in users
        for module, name in _used_names(path)
        if name.startswith("_") and not name.startswith("__") and module_name(path) != module
    ]
    assert not leaks, "\n".join(leaks)


def test_names_used_by_another_package_have_docstrings() -> None:
    """A function or class another package imports is public and says what it is for."""
    definitions = {name: _definitions(path) for name, path in MODULES.items()}
    undocumented = set()
    for name, path in MODULES.items():
        for module, used in _used_names(path):
            documented = definitions.get(module, {}).get(used)
            if documented is False and _package(module) != _package(name):
                undocumented.add(f"{module}.{used} (used by {name})")
    assert not undocumented, sorted(undocumented)


def test_readme_shows_the_same_map() -> None:
    """The README's Development section carries the package docstring's map, line for line."""
    readme = (ROOT / "README.md").read_text()
    development = readme[readme.index("## Development") :]
    for block in map_blocks(orchestrator.__doc__ or ""):
        assert "```\n" + "\n".join(block) + "\n```" in development
