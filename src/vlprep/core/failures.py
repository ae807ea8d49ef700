"""How a stage run ends when it cannot finish: one line naming the stage, the file and what to do, a
non-zero exit code, nothing published, and no leftovers the next run does not clean. Bugs in our code
still end in a traceback: they are ours to fix."""
from __future__ import annotations

import errno
import shutil
import signal
import sys
from pathlib import Path
from typing import Callable

from vlprep.core.params import ParamsError
from vlprep.core.writers import sweep_leftovers


class InputError(Exception):
    """A structural problem with the inputs (no files, unreadable file, missing column, an input changed
    while the stage read it): stops the stage."""


class WorkerDied(Exception):
    """A worker process ended abruptly (killed, out of memory): its unit's result is lost."""


class ClusterUnreachable(Exception):
    """engine: ray and the Ray cluster does not answer (checked before anything is written)."""


class Terminated(BaseException):
    """SIGTERM, raised in the main thread like KeyboardInterrupt, so the same cleanup runs."""


def _terminate(signum, frame):
    raise Terminated()


def stage_name(argv: list[str]) -> str:
    """`hf_bytes[train]` for `stages/hf_bytes.py train ...`, `verl[train]` for `stages/target.py verl train`;
    the script's name alone for stages without a split."""
    name, args = Path(argv[0]).stem, argv[1:]
    if name == "target" and len(args) >= 2:
        name, args = args[0], args[1:]
        return f"{name}[{args[0]}]"
    return f"{name}[{args[0]}]" if len(args) > 1 and not args[0].startswith("-") else name


def _gb(n: int) -> str:
    return f"{n / 1e9:.1f} GB"


def explain_os_error(e: OSError) -> str | None:
    """One line for the OS errors a user can fix (disk full, no permission); None for anything else.
    writers.atomic_path marks an error raised while writing an output with `output` and `written`."""
    target = getattr(e, "output", None) or Path(e.filename or ".")
    if e.errno == errno.ENOSPC:
        free = shutil.disk_usage(Path(target).parent if Path(target).parent.exists() else ".").free
        written = getattr(e, "written", 0)
        return (f"disk full writing {target} ({_gb(written)} written when the disk filled, {_gb(free)} free now); "
                f"the output needs about as much space as its input: free space and rerun")
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot write {e.filename or target}: {e.strerror.lower()}; make the output directory writable and rerun"
    return None


def _interruption(e: BaseException) -> BaseException | None:
    """The Ctrl-C or SIGTERM that `e` was raised while handling, if any: cleanup that fails on the way
    down (a Ray worker or raylet already gone, say) still ends as the interruption it was cleaning up
    after, not in a traceback."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, (KeyboardInterrupt, Terminated)):
            return e
        seen.add(id(e))
        e = e.__context__
    return None


def stage_main(body: Callable[[], object]) -> None:
    """Run a stage script's body; every failure the user can act on ends in one line on stderr."""
    name = stage_name(sys.argv)
    signal.signal(signal.SIGTERM, _terminate)
    sweep_leftovers()  # what killed runs left, whichever stage they were
    try:
        try:
            body()
        except (KeyboardInterrupt, Terminated):
            raise
        except BaseException as e:
            interruption = _interruption(e)
            if interruption is None:
                raise
            raise interruption from None
    except (ParamsError, InputError, WorkerDied, ClusterUnreachable) as e:
        sys.exit(f"{name}: {e}")
    except KeyboardInterrupt:
        print(f"{name}: interrupted (Ctrl-C); nothing was published; rerun to build it", file=sys.stderr)
        sys.exit(130)
    except Terminated:
        print(f"{name}: terminated (SIGTERM); nothing was published; rerun to build it", file=sys.stderr)
        sys.exit(143)
    except OSError as e:
        line = explain_os_error(e)
        if line is None:
            raise
        sys.exit(f"{name}: {line}")
