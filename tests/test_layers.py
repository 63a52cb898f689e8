"""The package's floors (docs/DESIGN.md, "Layers"): a module imports only its own floor and
the floors below it, the command line sits on top where nothing imports it, and no import
cycle appears. Read from the source with ``ast``, imports inside functions included, so
that no import can hide from the rule; imports under ``if TYPE_CHECKING:`` are type
annotations, not dependencies, and are left out."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "aflab"

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundations", ("aflab", "aflab.errors", "aflab.providers", "aflab.templating", "aflab.parsing", "aflab.metrics")),
    ("vocabulary", ("aflab.cues", "aflab.formatting", "aflab.files", "aflab.grammar", "aflab.decision")),
    ("content", ("aflab.settings", "aflab.variations", "aflab.condition", "aflab.classifiers",
                 "aflab.classifiers.screen", "aflab.prices", "aflab.figures")),
    ("inspect", ("aflab.dataset", "aflab.solvers", "aflab.scorers", "aflab.tasks", "aflab.providers.*",
                 "aflab._registry")),
    ("runs", ("aflab.experiment", "aflab.report", "aflab.compare", "aflab.sweep", "aflab.estimate",
              "aflab.classifiers.validate")),
    ("studies", ("aflab.probes", "aflab.probes.*", "aflab.training", "aflab.training.*", "aflab.synthdocs",
                 "aflab.synthdocs.*")),
    ("command line", ("aflab.cli", "aflab.cli.*", "aflab.__main__")),
]
"""Floor by floor, bottom up: module names, or ``package.*`` for a package's modules."""


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def floor(module: str) -> int:
    """The floor of ``module``: its own entry, else its package's ``package.*``."""
    for number, (_, names) in enumerate(LAYERS):
        if module in names:
            return number
    for number, (_, names) in enumerate(LAYERS):
        if any(name.endswith(".*") and module.startswith(name[:-1]) for name in names):
            return number
    raise AssertionError(f"{module} is on no floor: add it to LAYERS here and to docs/DESIGN.md")


def _resolve(name: str) -> str | None:
    """The aflab module an import of ``name`` loads (``aflab.x.Y`` → ``aflab.x``)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports(module: str) -> set[str]:
    """The aflab modules ``module`` imports, at any depth of its code, type-only ones aside;
    a module inside a package also imports that package (Python runs its ``__init__``)."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                found.update(filter(None, (_resolve(a.name) for a in child.names if a.name.startswith("aflab"))))
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - child.level + 1] + ([base] if base else []))
                if base.startswith("aflab"):
                    found.update(filter(None, (_resolve(f"{base}.{a.name}") for a in child.names)))
            visit(child)

    visit(tree)
    parts = module.split(".")
    found.update(".".join(parts[:i]) for i in range(1, len(parts)))
    return found - {module}


GRAPH = {module: imports(module) for module in MODULES}


def test_every_module_is_on_a_floor():
    for module in MODULES:
        floor(module)


def from_above(module: str, graph: dict[str, set[str]]) -> list[str]:
    """What ``module`` imports from a floor above its own."""
    return sorted(m for m in graph[module] if floor(m) > floor(module))


@pytest.mark.parametrize("module", sorted(MODULES))
def test_a_module_imports_only_its_floor_and_those_below(module):
    above = from_above(module, GRAPH)
    assert not above, (f"{module} ({LAYERS[floor(module)][0]}) imports {', '.join(above)} from a floor above: "
                       "move the shared piece down, or the module up (docs/DESIGN.md, Layers)")


def test_nothing_below_the_command_line_imports_it():
    importers = sorted(m for m, found in GRAPH.items() if not (m == "aflab.cli" or m.startswith(("aflab.cli.", "aflab.__main__")))
                       and any(f == "aflab.cli" or f.startswith("aflab.cli.") for f in found))
    assert not importers, f"library modules import the command line: {importers}"


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components: any with two or more modules is a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            connect(module)
    return found


def test_no_import_cycle():
    assert not cycles(GRAPH), f"import cycles: {cycles(GRAPH)}"


def test_the_checks_can_fail():
    """The graph is read as Python reads the code, and a step down or a loop is caught."""
    assert {"aflab.tasks", "aflab.cli.output", "aflab.cli"} <= GRAPH["aflab.cli.run"]  # a package's __init__ too
    assert "aflab.providers.weights" in GRAPH["aflab.training.common"]
    broken = {**GRAPH, "aflab.settings": GRAPH["aflab.settings"] | {"aflab.dataset"}}
    assert from_above("aflab.settings", broken) == ["aflab.dataset"]
    assert any({"aflab.settings", "aflab.dataset"} <= set(c) for c in cycles(broken))


def test_reading_a_report_loads_neither_the_tasks_nor_the_command_line():
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, aflab.report; print(' '.join(m for m in sys.modules if m.startswith('aflab')))"],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    assert "aflab.report" in loaded
    assert not [m for m in loaded if m in ("aflab.tasks", "aflab.scorers", "aflab.estimate") or m.startswith("aflab.cli")]
