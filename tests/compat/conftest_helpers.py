"""Trainer virtualenvs for the compatibility tests, built on demand and cached.

`trainer_python(name)` returns the python of a virtualenv holding exactly the packages
pinned in `tests/compat/requirements-<name>.txt` (verl + TRL + torch, several GB, so it
lives outside the repo). It is cached in
`${VLPREP_VENV_CACHE:-~/.cache/vlprep/venvs}/<name>-<hash>`, the hash covering the
requirements file and the base interpreter, so editing the lock file builds a new one.

A venv is built under a temporary name and renamed into place only once `pip install`
has succeeded, so a killed or failed install is never reused; a file lock makes
concurrent test processes wait for one build instead of racing.
"""

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

COMPAT_DIR = Path(__file__).resolve().parent


def venv_cache_dir():
    return Path(os.environ.get("VLPREP_VENV_CACHE") or "~/.cache/vlprep/venvs").expanduser()


def requirements_file(name):
    return COMPAT_DIR / f"requirements-{name}.txt"


def venv_key(name):
    """<name>-<hash of the lock file and the interpreter the venv is made from>."""
    h = hashlib.sha256()
    h.update(requirements_file(name).read_bytes())
    # A venv is bound to its base interpreter: a different Python means a different venv.
    h.update(f"\0{sys.base_prefix}\0{sys.version}".encode())
    return f"{name}-{h.hexdigest()[:16]}"


def _relocate_scripts(venv, old, new):
    """Point bin/ scripts (pip, activate, ...) at the venv's final path after the rename.

    bin/python itself is a symlink to the base interpreter and finds its site-packages
    through pyvenv.cfg beside it, so it needs nothing; console scripts and activate carry
    the build path in their text."""
    for script in (venv / "bin").iterdir():
        if script.is_symlink() or not script.is_file() or script.stat().st_size > 1_000_000:
            continue
        try:
            text = script.read_text()
        except (UnicodeDecodeError, OSError):
            continue  # a binary
        if old in text:
            script.write_text(text.replace(old, new))


def trainer_python(name="trainers"):
    """Path to the python of the cached trainer venv `name`, building it if needed."""
    req = requirements_file(name)
    if not req.is_file():
        raise FileNotFoundError(req)
    cache = venv_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    key = venv_key(name)
    final = cache / key
    python = final / "bin" / "python"
    if python.exists():
        return python

    with open(cache / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building it right now
        if python.exists():
            return python
        # Leftovers of killed builds of this key (only the lock holder builds, so any
        # temporary dir for this key is dead).
        for stale in cache.glob(f".{key}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)

        tmp = cache / f".{key}.tmp-{os.getpid()}"
        log = cache / f"{key}.install.log"
        t0 = time.monotonic()
        try:
            subprocess.run([sys.executable, "-m", "venv", str(tmp)], check=True)
            # The lock lists every package (pip freeze); --no-deps installs exactly that set
            # and nothing unpinned, `pip check` then proves the set is complete and consistent.
            # pip's own config applies (this machine's local wheels for torch).
            with open(log, "w") as out:
                for cmd in (
                    ["-m", "pip", "install", "--no-input", "--disable-pip-version-check", "--no-deps", "-r", str(req)],
                    ["-m", "pip", "check"],
                ):
                    subprocess.run(
                        [str(tmp / "bin" / "python"), *cmd], check=True, stdout=out, stderr=subprocess.STDOUT
                    )
        except subprocess.CalledProcessError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            tail = log.read_text()[-5000:] if log.exists() else ""
            raise RuntimeError(f"building the {name} venv failed ({e}); end of {log}:\n{tail}") from e
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _relocate_scripts(tmp, str(tmp), str(final))
        tmp.rename(final)
        print(f"built {final} in {time.monotonic() - t0:.0f}s", file=sys.stderr)
    return python


if __name__ == "__main__":
    # `python tests/compat/conftest_helpers.py [NAME]`: build (or find) the venv, print its python.
    print(trainer_python(sys.argv[1] if len(sys.argv) > 1 else "trainers"))
