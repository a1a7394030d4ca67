"""The on-disk cache of generated data: location, keys, and atomic (all-or-nothing) generation.

A generated set lives in ``<cache root>/<kind>/<key>/``; the key spells out every generation parameter and
the generator version, so changing either makes a new folder. Generation writes into a temporary sibling
folder (``bgmatting.io.atomic_path``, tagged with host and process) and renames it into place only when
complete, with a ``COMPLETE.json`` marker written last inside it: an interrupted run leaves only a temporary
folder, which is never taken for a finished set (and is removed by the next run on the same host once its
process is gone).
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path

from bgmatting.io import TEMP_SUFFIX, atomic_path, temporary_prefix

CACHE_ENV = "BGMATTING_CACHE"
MARKER = "COMPLETE.json"


def cache_root() -> Path:
    """``$BGMATTING_CACHE`` if set, else ``~/.cache/bgmatting``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "bgmatting"


def parameter_key(**params) -> str:
    """A readable folder name from parameters, e.g. ``n_fg48-size256-seed0``."""
    def fmt(v) -> str:
        if isinstance(v, (tuple, list)):
            return "x".join(fmt(x) for x in v)
        if isinstance(v, float):
            return f"{v:g}"
        return str(v)
    return "-".join(f"{k}{fmt(v)}" for k, v in params.items())


def is_complete(folder: Path) -> bool:
    return (folder / MARKER).is_file()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner() -> str:
    """``<host>-<pid>``: who writes a temporary folder, so that stale ones can be recognised."""
    return f"{socket.gethostname()}-{os.getpid()}"


def _remove_stale_temporaries(final: Path) -> None:
    """Remove temporaries of ``final`` left by processes of this host that no longer run (interrupted
    generations). Temporaries of other hosts (a shared cache folder) are left alone."""
    prefix = temporary_prefix(final)  # ".<key>.", then "<host>-<pid>.<random>.tmp"
    for tmp in final.parent.glob(f"{glob.escape(prefix)}*{TEMP_SUFFIX}"):
        try:
            owner = tmp.name[len(prefix):-len(TEMP_SUFFIX)].rsplit(".", 1)[0]
            host, pid = owner.rsplit("-", 1)
            pid_number = int(pid)
        except ValueError:
            continue
        if host == socket.gethostname() and not _pid_alive(pid_number):
            shutil.rmtree(tmp, ignore_errors=True)


def build_atomically(final: Path, generate: Callable[[Path], dict]) -> tuple[Path, bool]:
    """Return ``final`` if complete; else run ``generate(tmp_dir) -> info`` and move the result into place.

    Returns (final, generated_now). ``info`` (JSON-serialisable) is stored in the completion marker along with
    the generation time. If another process finished the same set first, its copy is kept and ours dropped.
    """
    final = Path(final)
    if is_complete(final):
        return final, False
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(final)
    try:
        with atomic_path(final, directory=True, owner=_owner()) as tmp:
            start = time.perf_counter()
            info = dict(generate(tmp) or {})
            info["seconds"] = round(time.perf_counter() - start, 3)
            (tmp / MARKER).write_text(json.dumps(info, indent=2, sort_keys=True), encoding="utf-8")
            if final.exists() and not is_complete(final):
                shutil.rmtree(final, ignore_errors=True)  # an incomplete folder left by an older layout
    except OSError:
        if not is_complete(final):
            raise
        return final, False  # lost a race: another process completed it (our temporary is gone)
    return final, True


def read_info(folder: Path) -> dict:
    """The info dict stored in a complete set's marker."""
    return json.loads((Path(folder) / MARKER).read_text(encoding="utf-8"))
