"""The DVC workflows users rely on, driven through the real `dvc` CLI in a git copy of the project."""
import json
import re
import shlex

import pytest
import yaml

from conftest import git_commit_all, md5_tree, pushed_and_pulled, run, set_params
from test_dvc_reruns import DOC, REPORTS, TARGETS_TRAIN, repro_ran


def test_experiments_compare_params_and_metrics(committed_repo):
    repo = committed_repo
    run(["dvc", "exp", "run", "-n", "k2", "-S", "hf_bytes.keep_first_k_images=2"], repo)
    params = json.loads(run(["dvc", "params", "diff", "--json"], repo).stdout)
    assert params["params.yaml"]["hf_bytes.keep_first_k_images"] == {"old": 6, "new": 2, "diff": -4}
    metrics = json.loads(run(["dvc", "metrics", "diff", "--json"], repo).stdout)
    hf = metrics["metrics/hf_bytes/train.json"]
    assert hf["images_per_row.max"] == {"old": 6, "new": 2, "diff": -4}
    assert hf["images_truncated_by_k"]["new"] > hf["images_truncated_by_k"]["old"]
    assert "metrics/verl/train.json" in metrics and "metrics/trl/train.json" in metrics

    run(["git", "checkout", "--", "."], repo)  # back to the baseline before the next experiment
    run(["dvc", "checkout", "--force"], repo)
    run(["dvc", "exp", "run", "-n", "budget", "-S", "trl.max_total_tokens=200", "-S", "model.min_pixels=12544"], repo)
    shown = json.loads(run(["dvc", "exp", "show", "--json"], repo).stdout)
    exps = {e["name"]: e for rev in shown for e in (rev.get("experiments") or []) for e in e["revs"]}
    assert {"k2", "budget"} <= set(exps)
    k2 = exps["k2"]["data"]
    assert k2["params"]["params.yaml"]["data"]["hf_bytes"]["keep_first_k_images"] == 2
    assert k2["metrics"]["metrics/hf_bytes/train.json"]["data"]["images_per_row"]["max"] == 2
    budget = exps["budget"]["data"]["metrics"]["metrics/trl/train.json"]["data"]
    assert budget["dropped"]["over_max_total_tokens"] > 0 and budget["total_tokens"]["max"] <= 200

    table = run(["dvc", "exp", "show", "--no-pager", "--md"], repo).stdout
    assert "k2" in table and "budget" in table and "keep_first_k_images" in table

    html_dir = repo / "plots_diff"
    run(["dvc", "plots", "diff", "k2", "budget", "-o", str(html_dir)], repo)
    html = (html_dir / "index.html").read_text()
    assert "Images per row (verl)" in html and "k2" in html and "budget" in html


def test_push_then_pull_in_a_fresh_clone_local_remote(committed_repo, tmp_path):
    pushed_and_pulled(committed_repo, tmp_path)


def test_older_versions_and_import_into_another_repo(committed_repo, tmp_path):
    repo = committed_repo
    run(["dvc", "remote", "add", "-d", "shared", str(tmp_path / "remote")], repo)
    git_commit_all(repo, "remote")
    v1 = md5_tree(repo / "data")
    run(["git", "tag", "v1"], repo)
    run(["dvc", "push"], repo)
    set_params(repo, **{"hf_bytes.keep_first_k_images": 2})
    run(["dvc", "repro"], repo)
    git_commit_all(repo, "k=2")
    run(["dvc", "push"], repo)
    assert md5_tree(repo / "data") != v1

    # the dataset of an older commit
    run(["git", "checkout", "-q", "v1"], repo)
    run(["dvc", "checkout"], repo)
    assert md5_tree(repo / "data") == v1
    run(["git", "checkout", "-q", "main"], repo)
    run(["dvc", "checkout"], repo)

    # a built dataset imported into another project, pinned to a version
    consumer = tmp_path / "consumer"
    consumer.mkdir()
    run(["git", "init", "-q"], consumer)
    run(["dvc", "init", "-q"], consumer)
    run(["dvc", "import", str(repo), "data/verl/train", "-o", "verl_train", "--rev", "v1"], consumer)
    assert md5_tree(consumer)["verl_train/part-00000.parquet"] == v1["verl/train/part-00000.parquet"]
    assert "rev: v1" in (consumer / "verl_train.dvc").read_text()


@pytest.mark.s3
def test_push_pull_over_a_real_s3_remote_survives_an_outage(committed_repo, tmp_path):
    from s3server import dvc_env, s3_server

    repo = committed_repo
    with s3_server(tmp_path / "s3") as ep:
        env = dvc_env(ep)
        # Only the bucket URL is committed; endpoint and credentials come from the environment.
        run(["dvc", "remote", "add", "-d", "s3", f"s3://{ep.bucket}/vlprep"], repo)
        git_commit_all(repo, "s3 remote")
        config = (repo / ".dvc/config").read_text()
        assert ep.access_key not in config and ep.secret_key not in config and "127.0.0.1" not in config

        ep.stop()
        failed = run(["dvc", "push"], repo, check=False, env=env)
        assert failed.returncode != 0
        assert "Could not connect to the endpoint URL" in failed.stderr + failed.stdout

        ep.start()
        run(["dvc", "push"], repo, env=env)
        clone = tmp_path / "clone"
        run(["git", "clone", "-q", str(repo), str(clone)], tmp_path)
        run(["dvc", "pull"], clone, env=env)
        assert md5_tree(clone / "data") == md5_tree(repo / "data")
        assert "up to date" in run(["dvc", "status"], clone).stdout
        status = run(["dvc", "status", "--cloud"], repo, env=env).stdout
        assert "up to date" in status.lower() or "cache and remote" in status.lower()


@pytest.mark.s3
def test_s3_wrong_credentials_and_missing_bucket_fail_clearly(committed_repo, tmp_path):
    from s3server import dvc_env, s3_server

    repo = committed_repo
    with s3_server(tmp_path / "s3") as ep:
        run(["dvc", "remote", "add", "-d", "s3", f"s3://{ep.bucket}/vlprep"], repo)
        wrong = {**dvc_env(ep), "AWS_SECRET_ACCESS_KEY": "not-the-secret"}
        failed = run(["dvc", "push"], repo, check=False, env=wrong)
        # What the user sees (docs/failures.md#when-a-run-fails): DVC's own one-line error, nothing pushed.
        assert failed.returncode != 0
        assert "ERROR: unexpected error - Forbidden: An error occurred (403)" in failed.stderr

        run(["dvc", "remote", "modify", "s3", "url", "s3://no-such-bucket-vlprep/vlprep"], repo)
        missing = run(["dvc", "push"], repo, check=False, env=dvc_env(ep))
        assert missing.returncode != 0
        assert "ERROR: unexpected error - The specified bucket does not exist" in missing.stderr


def exp_view() -> list[str]:
    """The experiments view docs/dvc.md#comparing-experiments documents, as argv."""
    text = DOC.read_text()
    block = text[text.index("<!-- exp-view"):text.index("<!-- end exp-view -->")]
    command = re.search(r"```bash\n(.*?)```", block, re.S).group(1)
    return shlex.split(command.replace("\\\n", " "))


def test_the_documented_exp_view_fits_120_columns_and_always_shows_the_headline(committed_repo):
    repo = committed_repo
    # A user's inputs: a list of entries (a long value), committed as the baseline.
    entry = {"path": "data/raw/train", "preset": "reference", "name": "sample"}
    set_params(repo, **{"inputs.train": [entry, {**entry, "path": "data/raw/train/part-000.parquet"}]})
    run(["dvc", "repro"], repo)
    git_commit_all(repo, "list-valued inputs")
    run(["dvc", "exp", "run", "-n", "tight", "-S", "verl.max_prompt_tokens=120"], repo)
    run(["git", "checkout", "--", "."], repo)  # back to the baseline before the next experiment
    run(["dvc", "checkout", "--force"], repo)
    run(["dvc", "exp", "run", "-n", "k2", "-S", "hf_bytes.keep_first_k_images=2"], repo)
    view = exp_view()
    assert "--no-pager" in view and not any(a.startswith("inputs") for a in view)
    shown = run(view, repo, env={"COLUMNS": "120"}).stdout
    lines = shown.splitlines()
    assert max(map(len, lines)) <= 120, shown
    header = next(line for line in lines if "Experiment" in line).split()
    # the rows each trainer target kept, changed or not, come first; then the changed params that fit
    assert header[:4] == ["Experiment", "kept.test.verl", "kept.train.trl", "kept.train.verl"], shown
    assert header[4] == "hf_bytes.keep_first_k_images", shown
    assert not any(h.startswith("inputs.") for h in header), shown
    kept = {}  # experiment -> kept.train.verl
    for line in lines:
        words = line.split()
        named = [i for i, w in enumerate(words) if w.startswith("[")]
        if named:
            kept[words[named[0]].strip("[]")] = int(words[named[0] + 3])
    baseline = json.loads((repo / "summary.json").read_text())["kept"]["train.verl"]
    assert kept.keys() == {"tight", "k2"} and kept["k2"] == baseline > kept["tight"], shown
    wide = run(view, repo, env={"COLUMNS": "200"}).stdout
    assert "verl.max_prompt_tokens" in wide, wide
    everything = run(["dvc", "exp", "show", "--csv"], repo).stdout.splitlines()[0].split(",")
    assert len(everything) > 100  # the detailed metrics are all still there
    print(shown)


def test_a_split_mapping_is_a_param_of_that_split_only(scratch_repo):
    """inputs.<split> in list form (entries with a preset or columns) is a param of hf_bytes@<split> only:
    changing one split's mapping reruns that split's hf_bytes and what follows, nothing else."""
    from vlprep.ingest.presets import PRESETS

    columns = {k: v for k, v in PRESETS["reference"]["columns"].items() if k != "dataset_name"}
    columns["optional"] = [c for c in columns["optional"] if c != "dataset_name"]
    entry = {"path": "data/raw/train", "columns": columns, "name": "renamed"}
    # what follows the train split: its verl/trl, the train-vs-test audit, and the reports (which show
    # inputs), and summary (it reads the splits' names from inputs; the same headline file comes out)
    follows = {"hf_bytes@train", *TARGETS_TRAIN, "audit", "select", "summary", *REPORTS}
    set_params(scratch_repo, **{"inputs.train": [entry]})
    assert repro_ran(scratch_repo) == follows
    assert json.loads((scratch_repo / "metrics/hf_bytes/train.json").read_text())["rows_out"] == 140
    set_params(scratch_repo, **{"inputs.train": [{**entry, "name": "renamed_again"}]})
    assert repro_ran(scratch_repo) == follows
    assert repro_ran(scratch_repo) == set()
    assert "up to date" in run(["dvc", "status"], scratch_repo).stdout
    # the test split's inputs are untouched (and hf_bytes@test's lock entry names only its own params)
    lock = yaml.safe_load((scratch_repo / "dvc.lock").read_text())["stages"]
    assert "renamed_again" in str(lock["hf_bytes@train"]) and "renamed_again" not in str(lock["hf_bytes@test"])
