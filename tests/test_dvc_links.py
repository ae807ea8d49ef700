"""The DVC cache links outputs into the workspace (.dvc/config: hardlink): a stage rerun after a linked
checkout must leave every cache object intact, and what was pushed must come back whole elsewhere."""
import hashlib
import json
import os

from conftest import git_commit_all, md5_tree, pushed_and_pulled, run, set_params


def _md5(path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def corrupt_cache_objects(cache) -> list[str]:
    """Cache objects whose content does not match their name (DVC names each by its md5). A directory
    object (.dir) lists its files: each must be in the cache too."""
    bad = []
    objects = [p for p in (cache / "files" / "md5").glob("*/*") if p.is_file()]
    assert objects, f"no objects in {cache}"
    for obj in objects:
        name = obj.parent.name + obj.name
        if name.endswith(".dir"):
            for entry in json.loads(obj.read_text()):
                listed = cache / "files" / "md5" / entry["md5"][:2] / entry["md5"][2:]
                if not listed.is_file():
                    bad.append(f"{name}: lists {entry['relpath']}, not in the cache")
        elif _md5(obj) != name:
            bad.append(name)
    return bad


def test_a_rerun_after_a_linked_checkout_leaves_the_cache_intact(committed_repo, tmp_path):
    repo = committed_repo
    cache = repo / ".dvc" / "cache"
    verl = repo / "data/verl/train/part-00000.parquet"
    hf_shard = next((repo / "data/hf_bytes/train").glob("data-*.arrow"))
    # A checkout from the cache links, whatever the repro before it did (scratch copies are plain files).
    run(["dvc", "checkout", "--relink"], repo)
    for out in (verl, hf_shard):
        assert out.stat().st_nlink == 2, f"{out} is not linked to the cache"
    before = md5_tree(repo / "data")
    linked_inode = verl.stat().st_ino

    set_params(repo, **{"verl.ability": "radiology_mcqa"})  # reruns verl@train and verl@test
    run(["dvc", "repro"], repo)
    assert verl.stat().st_ino != linked_inode  # replaced by a new file (rename), not written through the link
    assert corrupt_cache_objects(cache) == []
    git_commit_all(repo, "ability")

    # The first version is still whole in the cache: checking it out gives its exact bytes back.
    run(["git", "checkout", "-q", "HEAD~1", "--", "params.yaml", "dvc.lock"], repo)
    run(["dvc", "checkout"], repo)
    assert md5_tree(repo / "data") == before
    run(["git", "checkout", "-q", "HEAD", "--", "params.yaml", "dvc.lock"], repo)
    run(["dvc", "checkout"], repo)

    # Pushed and pulled into a fresh clone: the same files, and DVC finds nothing to do.
    clone = pushed_and_pulled(repo, tmp_path)
    assert corrupt_cache_objects(clone / ".dvc" / "cache") == []


def test_linked_outputs_are_read_only(committed_repo):
    """What keeps a user (not root) from editing the cache through a linked output by accident."""
    repo = committed_repo
    run(["dvc", "checkout", "--relink"], repo)
    out = repo / "data/trl/train/part-00000.parquet"
    assert out.stat().st_nlink == 2
    assert not out.stat().st_mode & 0o222
    if os.geteuid() != 0:  # root may write anyway: docs/dvc.md#linked-outputs says not to edit outputs in place
        try:
            open(out, "r+b").close()
        except PermissionError:
            pass
        else:
            raise AssertionError(f"{out} is writable")
