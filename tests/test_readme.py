"""The README's commands run as written: every ``python -m bgmatting.<command>`` line of its bash blocks is a command
line the command accepts (Hydra commands compose with its overrides, the others parse), the README stays a first
page (short), and its first example mattes a photo with no checkpoint, exactly as printed."""
from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest

from bgmatting import infer
from bgmatting.data.synthetic.capture_set import capture_dataset

README = Path(__file__).resolve().parents[1] / "README.md"
HYDRA_COMMANDS = {"train", "evaluate"}  # composed from configs/<name>.yaml; the others parse their arguments


def _commands() -> list[list[str]]:
    """Each ``python -m bgmatting.X ...`` command of the README's bash blocks (continuation lines joined)."""
    text = README.read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip()
            if line.startswith("python -m bgmatting."):
                commands.append(shlex.split(line))
    return commands


def test_the_readme_is_a_first_page():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 150, len(lines)
    assert (README.parent / "docs" / "images" / "captures.png").stat().st_size < 400 * 1024
    assert any("docs/images/captures.png" in line for line in lines[:20])  # the picture comes first


@pytest.mark.parametrize("command", _commands(), ids=lambda c: " ".join(c[2:])[:60])
def test_every_readme_command_is_one_the_command_accepts(command, compose_config):
    module = command[2].split(".", 1)[1]
    arguments = command[3:]
    if module in HYDRA_COMMANDS:
        compose_config(module, arguments)
        return
    parser = __import__(f"bgmatting.{module}", fromlist=["build_parser"]).build_parser()
    parser.parse_args(arguments)


def test_the_first_example_mattes_a_photo_with_the_starter_weights(tmp_path, monkeypatch, capsys):
    first = next(c for c in _commands() if c[2] == "bgmatting.infer")
    unit = capture_dataset(256, n_stills=1, n_clips=0, cache_dir=tmp_path / "cache", workers=1)[0]
    arguments = first[3:]
    for flag, source in (("--input", unit.input_path), ("--background", unit.plate_path)):
        shutil.copyfile(source, tmp_path / arguments[arguments.index(flag) + 1])
    monkeypatch.chdir(tmp_path)
    assert "--checkpoint" not in arguments and infer.main(arguments) == 0, capsys.readouterr().err
    output = tmp_path / arguments[arguments.index("--output") + 1]
    assert (output / "summary.json").is_file() and list((output / "alpha").iterdir())
