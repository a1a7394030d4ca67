"""Shared checks of the commands' bad-input tables: exit status 2, one line on stderr naming the file or value,
no traceback, nothing written outside the allowed folders and nothing there before changed or lost."""
from __future__ import annotations

import hashlib
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path


def files_under(root: Path) -> dict[str, str]:
    """relative path -> SHA-1 of every file below ``root`` (the state "nothing lost" compares)."""
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def run_argparse_main(main: Callable[[list[str]], int], argv: list[str]) -> int:
    """A command's ``main(argv)`` as ``python -m`` runs it: its return value, or argparse's SystemExit code."""
    try:
        return main(argv)
    except SystemExit as exit_info:
        return int(exit_info.code or 0)


def run_hydra_main(main: Callable[[], None], argv: list[str], monkeypatch) -> int:
    """A Hydra command's entry point in this process with ``argv``; its exit status."""
    monkeypatch.setattr(sys, "argv", ["bgmatting", *argv])
    try:
        main()
    except SystemExit as exit_info:
        return int(exit_info.code or 0)
    return 0


def assert_refused(code: int, err: str, expected: str, root: Path, before: dict[str, str],
                   allowed: Iterable[Path] = (), argparse_usage: bool = False) -> None:
    """Exit status 2 and a last stderr line matching ``expected`` (argparse prints its usage above it; every other
    refusal is that one line); no traceback; the files below ``root`` that existed are unchanged, and new ones lie
    only in ``allowed`` folders."""
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert code == 2, (code, err)
    assert lines and (argparse_usage or len(lines) == 1), err
    assert re.search(expected, lines[-1]), (expected, lines[-1])
    after = files_under(root)
    changed = [name for name, digest in before.items() if after.get(name) != digest]
    assert not changed, f"changed or lost: {changed}"
    allowed = [Path(a).resolve() for a in allowed]
    new = [name for name in after if name not in before]
    escaped = [n for n in new
               if not any(a == (root / n).resolve() or a in (root / n).resolve().parents for a in allowed)]
    assert not escaped, f"written outside the allowed folders: {escaped}"


def check_argparse_refusal(main: Callable[[list[str]], int], arguments: list[str], defaults: dict[str, str | None],
                           root: Path, capsys, expected: str, allowed: Iterable[Path] = ()) -> None:
    """Run ``main`` with ``arguments`` (``{tmp}`` = ``root``) plus the ``defaults`` they do not give (a value of
    None: a flag), and :func:`assert_refused` (argparse's own errors print their usage line first)."""
    given = {a for a in arguments if a.startswith("--")}
    argv = [a.format(tmp=root) for a in arguments]
    for key, value in defaults.items():
        if key not in given:
            argv += [key] if value is None else [key, value]
    capsys.readouterr()
    before = files_under(root)
    code = run_argparse_main(main, argv)
    err = capsys.readouterr().err
    assert_refused(code, err, expected, root, before, allowed, argparse_usage=err.startswith("usage:"))
