"""The package's layers (docs/architecture.md): each subpackage of src/vlprep imports only packages on a
lower floor, never a package of its own floor or above; no import cycle between modules; `__init__.py`
files hold no code (stage deps are computed per module file, see vlprep.pipeline)."""
import ast
import shutil
from pathlib import Path

from conftest import REPO

# The floors, lowest first: the one place the order is written (docs/architecture.md explains it).
LAYERS = [
    ["core"],
    ["io", "prompting"],
    ["engine", "products", "scoring"],
    ["ingest", "curation"],
    ["targets"],
    ["pipeline"],  # the stages as data (dvc.yaml's source)
    ["cli"],  # the `vlprep` command
]
FLOOR = {package: floor for floor, packages in enumerate(LAYERS) for package in packages}


def module_name(path: Path, src: Path) -> str:
    rel = path.relative_to(src).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every vlprep import in the file, function-level ones included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "vlprep":
            found += [(node.lineno, node.module)]
            found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "vlprep"]
    return found


def violations(src: Path) -> list[str]:
    modules = {module_name(p, src): p for p in src.rglob("*.py")}
    problems, graph = [], {}
    for name, path in sorted(modules.items()):
        if path.name == "__init__.py":
            body = ast.parse(path.read_text()).body
            if [n for n in body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]:
                problems.append(f"{path.relative_to(src)}: __init__.py must hold no code (docstring only)")
            continue
        package = name.split(".")[1]
        if package not in FLOOR:
            problems.append(f"{path.relative_to(src)}: package {package} has no floor in LAYERS")
            continue
        graph[name] = set()
        for line, target in imports(path):
            if target not in modules or target.count(".") < 1 or modules[target].name == "__init__.py":
                continue  # a name, not a module (from vlprep.x import y), or an empty package
            graph[name].add(target)
            other = target.split(".")[1]
            if other != package and FLOOR.get(other, 99) >= FLOOR[package]:
                problems.append(f"{path.relative_to(src)}:{line}: {package} (floor {FLOOR[package]}) imports "
                                f"{target} (floor {FLOOR.get(other)}): only lower floors may be imported")
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                problems.append("import cycle: " + " -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return problems


def test_every_module_imports_only_lower_layers_and_no_cycle():
    assert violations(REPO / "src") == []


def test_a_planted_upward_import_or_cycle_is_named(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(REPO / "src" / "vlprep", src / "vlprep")
    writers = src / "vlprep/core/writers.py"
    writers.write_text(writers.read_text() + "\nfrom vlprep.targets.base import Config\n")
    sources = src / "vlprep/io/sources.py"
    sources.write_text(sources.read_text() + "\ndef f():\n    from vlprep.io.images import probe\n")
    images = src / "vlprep/io/images.py"
    images.write_text(images.read_text() + "\nfrom vlprep.io import sources\n")  # a cycle (images -> sources -> images?)
    problems = violations(src)
    assert any(p.startswith("vlprep/core/writers.py:") and "imports vlprep.targets.base" in p for p in problems), problems
    assert any(p.startswith("import cycle:") and "vlprep.io.images" in p and "vlprep.io.sources" in p for p in problems), problems


def test_layers_name_every_package():
    packages = {p.name for p in (REPO / "src/vlprep").iterdir() if p.is_dir() and p.name != "__pycache__"}
    modules = {p.stem for p in (REPO / "src/vlprep").glob("*.py") if p.stem != "__init__"}
    assert packages | modules == set(FLOOR)
