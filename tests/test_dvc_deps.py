"""dvc.yaml is generated from src/vlprep/pipeline.py (`vlprep deps --write`), which lists for each stage
exactly the code it runs, found by walking its imports: a module a stage imports but does not list would
let `dvc repro` keep outputs that a fix to that module changes; a listed module it does not import would
rerun it for nothing."""
import shutil
import sys

from conftest import REPO, run
from vlprep.pipeline import imported_code


def test_dvc_yaml_is_what_the_code_generates():
    proc = run([sys.executable, "-m", "vlprep.cli", "deps", "--check"], REPO, check=False)
    assert proc.returncode == 0, proc.stderr


def test_the_check_names_a_stale_stage(tmp_path):
    from vlprep import pipeline

    for part in ("src", "stages"):  # check() renders from the code under its root
        shutil.copytree(REPO / part, tmp_path / part)
    (tmp_path / "dvc.yaml").write_text((REPO / "dvc.yaml").read_text().replace("    - src/vlprep/core/writers.py\n", "", 1))
    assert pipeline.check(tmp_path) == ["stage raw: differs (run `vlprep deps --write`)"]


def test_the_import_walk_follows_function_level_and_package_imports(tmp_path):
    script = tmp_path / "stage.py"
    script.write_text("from vlprep.engine import runner\n\ndef main():\n    from vlprep.prompting.tokens import load_tokenizer\n")
    found = {p.name for p in imported_code(script)}
    assert {"stage.py", "runner.py", "tokens.py", "executor.py"} <= found  # executor: runner's import


def test_each_target_stage_depends_on_its_own_module_only():
    import yaml

    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    from vlprep.core.targets import TARGETS

    for name in TARGETS:
        deps = stages[name]["do"]["deps"]
        others = [t for t in TARGETS if t != name and f"src/vlprep/targets/{t}.py" in deps]
        assert f"src/vlprep/targets/{name}.py" in deps and not others, (name, others)
