"""What the commands share about failing: bad input is one line on stderr naming the file or value, and exit
status 2 (no traceback); for the Hydra commands, a check of the command line's overrides before Hydra runs (Hydra
reports a mistyped key in several lines), and a Hydra callback that checks, before Hydra creates the run folder,
that it can be written (Hydra itself would end in a traceback)."""
from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from hydra import compose, initialize_config_module
from hydra.errors import HydraException
from hydra.experimental.callback import Callback
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

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


def check_overrides(command: str, config_name: str, argv: Sequence[str], renamed: Mapping[str, str] = {}) -> None:
    """Compose ``configs/<config_name>.yaml`` with the command line's overrides before Hydra runs; :func:`fail`
    with one line for a key that is not an option (or was ``renamed``: the hint says to what), an unknown group
    option or a malformed override. Command lines with flags (``--help``, ``--cfg``, ``-m`` ...) are Hydra's."""
    if any(arg.startswith("-") for arg in argv):
        return
    for arg in argv:
        key = arg.lstrip("+~").split("=", 1)[0]
        if key in renamed:
            fail(command, f"{arg}: {key} {renamed[key]}")
    try:
        with initialize_config_module(config_module="bgmatting.configs", version_base="1.3", job_name=command):
            compose(config_name=config_name, overrides=list(argv), return_hydra_config=True)
    except (HydraException, OmegaConfBaseException) as error:
        fail(command, f"{_composition_problem(error)} (python -m bgmatting.{command} --help lists the options)")


def _composition_problem(error: BaseException) -> str:
    """Hydra's multi-line composition error as one line: its first line, its cause, the available options."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = (lines[0] if lines else type(error).__name__).rstrip(".")
    if any(line.startswith("Available options") for line in lines):
        start = next(i for i, line in enumerate(lines) if line.startswith("Available options")) + 1
        options = [line for line in lines[start:] if not line.startswith("Config search path")]
        options = options[:options.index(next((o for o in options if o.startswith("provider=")), None))] \
            if any(o.startswith("provider=") for o in options) else options
        text += f"; choose one of {', '.join(options)}"
    cause = error.__cause__
    if cause is not None and one_line(cause) not in text:
        text += f": {one_line(cause)}"
    return text


#: What Hydra writes into a run folder before the command's own code runs.
HYDRA_FILES = (".hydra",)


def discard_unused_run_folder(run_dir: str | Path, log_name: str) -> None:
    """Remove the run folder Hydra made for a launch that was refused before writing anything of its own (it holds
    only Hydra's ``.hydra/`` and the ``<log_name>`` log file): a refused command leaves nothing behind."""
    run_dir = Path(run_dir)
    if run_dir.is_dir() and {p.name for p in run_dir.iterdir()} <= {*HYDRA_FILES, log_name}:
        shutil.rmtree(run_dir, ignore_errors=True)
