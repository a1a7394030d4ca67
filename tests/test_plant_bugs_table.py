"""scripts/plant_bugs.py stays usable: every planted bug's target text is in the sources exactly once (so a
refactor that moves it makes this fail, not the mutation check months later)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("plant_bugs", REPO / "scripts" / "plant_bugs.py")
plant_bugs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(plant_bugs)


@pytest.mark.parametrize("name", list(plant_bugs.MUTATIONS))
def test_each_planted_bug_targets_code_that_exists_once(name):
    path, old, new, tests = plant_bugs.MUTATIONS[name]
    text = (REPO / "src" / "bgmatting" / path).read_text()
    for target, replacement in zip(*((old, new) if isinstance(old, list) else ([old], [new]))):
        assert text.count(target) == 1, (name, target)
        assert replacement != target
    assert tests and all((REPO / t).is_file() for t in tests)
