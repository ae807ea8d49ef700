"""How a stage run ends when it cannot finish: one line naming the stage, the file and what to do, and a
non-zero exit code; never a traceback for a problem that is the user's to fix (bad params, bad inputs).
Bugs still end in a traceback: they are ours to fix."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

from vlprep.params import ParamsError


class InputError(Exception):
    """A structural problem with the inputs (no files, unreadable file, missing column): stops the stage."""


def stage_main(body: Callable[[], object]) -> None:
    """Run a stage script's body, turning the user's problems into one line on stderr."""
    name = Path(sys.argv[0]).stem
    try:
        body()
    except (ParamsError, InputError) as e:
        sys.exit(f"{name}: {e}")
