"""dvc.yaml lists, for each stage, exactly the code it runs: a module a stage imports but does not list
would let `dvc repro` keep outputs that a fix to that module changes; a listed module it does not import
would rerun it for nothing."""
import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def module_file(module: str) -> Path | None:
    path = ROOT / "src" / (module.replace(".", "/") + ".py")
    return path if path.is_file() else None


def vlprep_code(entry: Path, seen: set[Path] | None = None) -> set[Path]:
    """The file and every vlprep module it imports, transitively, including imports inside functions."""
    seen = {entry} if seen is None else seen
    for node in ast.walk(ast.parse(entry.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "vlprep":
            # `from vlprep.x import y`: module vlprep.x; `from vlprep import x`: module vlprep.x too
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names if alias.name.split(".")[0] == "vlprep"]
        else:
            continue
        for path in filter(None, map(module_file, names)):
            if path not in seen:
                seen.add(path)
                vlprep_code(path, seen)
    return seen


def stage_entry(cmd: str) -> Path:
    args = cmd.split()
    return module_file(args[2]) if args[1] == "-m" else ROOT / args[1]


@pytest.mark.parametrize("name", sorted(STAGES))
def test_each_stage_lists_exactly_the_code_it_imports(name):
    stage = STAGES[name].get("do", STAGES[name])  # foreach stages keep their body under `do`
    listed = {ROOT / d for d in stage["deps"] if d.startswith(("src/", "stages/"))}
    imported = vlprep_code(stage_entry(stage["cmd"]))
    assert {p.relative_to(ROOT).as_posix() for p in imported - listed} == set(), "imported, not in deps"
    assert {p.relative_to(ROOT).as_posix() for p in listed - imported} == set(), "in deps, never imported"


def test_the_import_walk_follows_function_level_and_package_imports(tmp_path):
    script = tmp_path / "stage.py"
    script.write_text("from vlprep.engine import runner\n\ndef main():\n    from vlprep.prompting.tokens import load_tokenizer\n")
    found = {p.name for p in vlprep_code(script)}
    assert {"stage.py", "runner.py", "tokens.py", "executor.py"} <= found  # executor: runner's import
