"""Trainer virtualenvs for the compatibility tests, built on demand and cached.

`trainer_python(name)` returns the python of a virtualenv holding exactly the packages
pinned in `tests/compat/requirements-<name>.txt` (verl + TRL + torch, several GB, so it
lives outside the repo). It is cached in
`${VLPREP_VENV_CACHE:-~/.cache/vlprep/venvs}/<name>-<hash>`, the hash covering the
requirements file, the base interpreter and the build recipe, so editing the lock file
builds a new one.

The venvs are built with uv (`uv venv` + `uv pip install --link-mode=hardlink`) from one
uv cache beside them (`<cache>/uv-cache`): a package that several venvs pin at the same
version (torch, triton, the CUDA libraries: ~5 GB) is unpacked once into that cache and
hard-linked into each venv, so it takes its disk space once, not once per venv. uv does
not read pip's configuration; the package sources pip is configured with (find-links
directories and extra indexes, e.g. a machine's local torch wheels) are passed to it.

A venv is built under a temporary name and renamed into place only once the install
and `uv pip check` have succeeded, so a killed or failed install is never reused; a file
lock makes concurrent test processes (pytest-xdist workers, other checkouts) wait for one
build instead of racing. `start_builds` starts builds in background threads, so the
venvs are ready by the time the trainer tests need them (tests/conftest.py calls it when
the session has collected trainer tests).
"""

import atexit
import fcntl
import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import Future
from pathlib import Path

COMPAT_DIR = Path(__file__).resolve().parent
# Part of every venv's hash: a change in how venvs are built builds new ones.
RECIPE = "uv venv; uv pip install --no-deps --link-mode=hardlink; uv pip check"


def venv_cache_dir():
    return Path(os.environ.get("VLPREP_VENV_CACHE") or "~/.cache/vlprep/venvs").expanduser()


def uv_cache_dir():
    """Shared by every venv of the cache dir, and on its file system: hard links need that."""
    return venv_cache_dir() / "uv-cache"


def requirements_file(name):
    return COMPAT_DIR / f"requirements-{name}.txt"


def venv_key(name):
    """<name>-<hash of the lock file, the interpreter the venv is made from and the recipe>."""
    h = hashlib.sha256()
    h.update(requirements_file(name).read_bytes())
    # A venv is bound to its base interpreter: a different Python means a different venv.
    h.update(f"\0{sys.base_prefix}\0{sys.version}\0{RECIPE}".encode())
    return f"{name}-{h.hexdigest()[:16]}"


def uv_bin():
    """The uv of the test extra (`pip install -e '.[test]'` installs it beside this python)."""
    try:
        from uv import find_uv_bin
    except ImportError:
        found = shutil.which("uv")
        if found is None:
            raise RuntimeError("uv not found: pip install -c requirements.lock -e '.[test,ray]'") from None
        return found
    return find_uv_bin()


def pip_sources():
    """uv options for the package sources pip is configured with here (pip's config files and
    PIP_* variables): its find-links directories and its index URLs. On a machine whose pip looks
    in local wheel directories (torch, the CUDA libraries), uv then takes those files instead of
    downloading them. Sources that do not exist on this machine are left out."""
    try:
        listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
                                timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        listed = ""
    found = {}  # key -> value; environment variables (":env:") override config files, as in pip
    for line in listed.splitlines():
        where, _, value = line.partition("=")
        scope, _, key = where.rpartition(".")
        if scope not in (":env:", "global", "install") or key not in ("index-url", "extra-index-url", "find-links"):
            continue
        value = value.strip().strip("'\"")
        if scope == ":env:" or key not in found or found[key][0] != ":env:":
            found[key] = (scope, value)

    def usable(location):
        if location.startswith("file://"):
            return Path(location[len("file://"):]).exists()
        if "://" not in location:
            return Path(location).exists()
        return True

    args = []
    for key, (_, value) in sorted(found.items()):
        for location in shlex.split(value):
            if usable(location):
                args += [f"--{key}", location]
    # pip takes the best match over all its indexes; uv, by default, only the first index that has
    # the package (a local index with an older CUDA library would hide PyPI's pinned one).
    return args + ["--index-strategy", "unsafe-best-match"]


def _relocate_scripts(venv, old, new):
    """Point bin/ scripts (activate, console scripts, ...) at the venv's final path after the rename.

    bin/python itself is a symlink to the base interpreter and finds its site-packages
    through pyvenv.cfg beside it, so it needs nothing; console scripts and activate carry
    the build path in their text. A script is replaced by a new file, never rewritten in
    place: a file hard-linked from the uv cache is shared with other venvs."""
    for script in (venv / "bin").iterdir():
        if script.is_symlink() or not script.is_file() or script.stat().st_size > 1_000_000:
            continue
        try:
            text = script.read_text()
        except (UnicodeDecodeError, OSError):
            continue  # a binary
        if old in text:
            fresh = script.with_name(f".{script.name}.relocated")
            fresh.write_text(text.replace(old, new))
            shutil.copymode(script, fresh)
            os.replace(fresh, script)


def _build(name, req, tmp, log):
    env = {**os.environ, "UV_CACHE_DIR": str(uv_cache_dir()), "UV_NO_PROGRESS": "1", "UV_PYTHON_DOWNLOADS": "never"}
    env.pop("VIRTUAL_ENV", None)  # the project venv: uv must act on the new venv only
    uv = uv_bin()
    python = str(tmp / "bin" / "python")
    # The lock lists every package (pip freeze); --no-deps installs exactly that set and nothing
    # unpinned, `uv pip check` then proves the set is complete and consistent.
    cmds = [
        [uv, "venv", "--quiet", "--python", sys.executable, str(tmp)],
        [uv, "pip", "install", "--python", python, "--no-deps", "--link-mode=hardlink", *pip_sources(),
         "-r", str(req)],
        [uv, "pip", "check", "--python", python],
    ]
    with open(log, "w") as out:
        for cmd in cmds:
            out.write(f"$ {shlex.join(cmd)}\n")
            out.flush()
            if "install" in cmd:
                # One install at a time per uv cache: uv installs running at once each download and unpack
                # a wheel they both miss (pyarrow, ray, ...) into the cache, so it would be stored twice.
                with open(venv_cache_dir() / "uv-install.lock", "w") as lock:
                    fcntl.flock(lock, fcntl.LOCK_EX)
                    _run(cmd, out, env)
            else:
                _run(cmd, out, env)


def _run(cmd, out, env):
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL)
    with _lock:
        _running.add(proc)
    try:
        if proc.wait() != 0:
            raise subprocess.CalledProcessError(proc.returncode, cmd)
    finally:
        with _lock:
            _running.discard(proc)


def trainer_python(name="trainers"):
    """Path to the python of the cached trainer venv `name`, building it if needed (or waiting for the
    build that `start_builds` started in this process)."""
    with _lock:
        future = _builds.get(name)
    if future is not None:
        return future.result()[0]
    return _trainer_python(name)[0]


def _trainer_python(name):
    """(python, seconds spent building or None when it was already there)."""
    req = requirements_file(name)
    if not req.is_file():
        raise FileNotFoundError(req)
    cache = venv_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    key = venv_key(name)
    final = cache / key
    python = final / "bin" / "python"
    if python.exists():
        return python, None

    with open(cache / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building it right now
        if python.exists():
            return python, None
        # Leftovers of killed builds of this key (only the lock holder builds, so any
        # temporary dir for this key is dead).
        for stale in cache.glob(f".{key}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)

        tmp = cache / f".{key}.tmp-{os.getpid()}-{threading.get_ident()}"
        log = cache / f"{key}.install.log"
        t0 = time.monotonic()
        try:
            _build(name, req, tmp, log)
        except subprocess.CalledProcessError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            tail = log.read_text()[-5000:] if log.exists() else ""
            raise RuntimeError(f"building the {name} venv failed ({e}); end of {log}:\n{tail}") from e
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _relocate_scripts(tmp, str(tmp), str(final))
        tmp.rename(final)
    return python, time.monotonic() - t0


_lock = threading.Lock()
_builds = {}  # name -> Future of (python, seconds or None), builds started in this process
_running = set()  # uv processes of builds in this process


@atexit.register
def _stop_unfinished_builds():
    """A session that ends (or is interrupted) while a background build runs stops its uv, so nothing
    goes on writing into the temporary venv (the next build removes it)."""
    with _lock:
        procs = list(_running)
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def start_builds(names, report=print):
    """Build (or find) the venvs `names` in background threads, all at once; `report(line)` is called
    from those threads with one line per venv when it is ready or failed. A failure is raised again
    by trainer_python(name), i.e. in the test that needs the venv."""
    for name in names:
        with _lock:
            if name in _builds:
                continue
            future = _builds[name] = Future()

        def build(name=name, future=future):
            t0 = time.monotonic()
            try:
                python, seconds = _trainer_python(name)
            except BaseException as e:  # noqa: BLE001  (handed to the test that needs the venv)
                report(f"trainer venv {name}: build FAILED after {time.monotonic() - t0:.0f}s "
                       f"({str(e).splitlines()[0]})")
                future.set_exception(e)
                return
            venv = python.parent.parent
            if seconds is None:
                waited = time.monotonic() - t0
                how = "cached" if waited < 1 else f"built by another process (waited {waited:.0f}s)"
                report(f"trainer venv {name}: {how}: {venv}")
            else:
                report(f"trainer venv {name}: built in {seconds:.0f}s with uv (hard links from {uv_cache_dir()}): {venv}")
            future.set_result((python, seconds))

        threading.Thread(target=build, name=f"venv-{name}", daemon=True).start()


if __name__ == "__main__":
    # `python tests/compat/conftest_helpers.py [NAME ...]`: build (or find) the venvs in parallel,
    # print their pythons.
    wanted = sys.argv[1:] or ["trainers"]
    start_builds(wanted, report=lambda line: print(line, file=sys.stderr))
    for n in wanted:
        print(trainer_python(n))
