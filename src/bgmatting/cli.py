"""What the commands share about failing: bad input is one line on stderr naming the file or value, and exit
status 2 (no traceback); and a Hydra callback that checks, before Hydra creates the run folder, that it can be
written (Hydra itself would end in a traceback)."""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any, NoReturn

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

#: Exit status of a command refusing its input.
BAD_INPUT = 2


def one_line(error: BaseException | str) -> str:
    """An error's message on one line (a multi-line message keeps its first line)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def report(command: str, error: BaseException | str, status: int = BAD_INPUT) -> int:
    """Print ``<command>: error: <message>`` on stderr; returns ``status`` (for ``main`` functions that return it)."""
    print(f"{command}: error: {one_line(error)}", file=sys.stderr, flush=True)
    return status


def fail(command: str, error: BaseException | str, status: int = BAD_INPUT) -> NoReturn:
    """:func:`report`, then exit with ``status``."""
    sys.exit(report(command, error, status))


def require_writable_folder(folder: str | Path) -> None:
    """Create ``folder`` (and its parents) and write a scratch file in it; OSError when it cannot be written
    (a read-only file system, a missing permission, a file where a folder should be)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=folder):
        pass


class CheckRunFolder(Callback):
    """Hydra callback (``hydra.callbacks`` in the command's config): before Hydra creates the run folder
    ``hydra.run.dir``, check that its parent can be written, else :func:`fail` naming it."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        run_dir = Path(str(config.hydra.run.dir))
        try:
            require_writable_folder(run_dir.parent)
        except OSError as error:
            fail(str(config.hydra.job.name), f"cannot write the run folder {run_dir}: {error.strerror or error}")
