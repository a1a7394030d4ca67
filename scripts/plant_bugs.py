"""Mutation check of the test suite (issue 14, items 19-22): plant one known bug at a time in a scratch copy of
the sources and run the tests that must catch it; prints CAUGHT (with the failing tests) or SURVIVED.

    python scripts/plant_bugs.py                      # every bug (a few minutes)
    python scripts/plant_bugs.py "21 export gate compares PyTorch with itself"

Each bug is an exact text replacement; when the code it targets has changed, the script says so (update the
table then). The repository itself is never modified.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: name -> (file under src/bgmatting, text to replace (or a list), replacement (or a list), tests that must fail)
MUTATIONS = {
    '19a loss sign flipped (gradient ascent)': (
        'engine/loop.py',
        'scaler.scale(total).backward()',
        'scaler.scale(-total).backward()',
        ['tests/engine/test_learning.py'],
    ),
    '19b real stage: generator GAN target inverted': (
        'engine/stages.py',
        'terms["gan"] = LossTerm(losses.lsgan_loss(score, True), self.weights["gan"])',
        'terms["gan"] = LossTerm(losses.lsgan_loss(score, False), self.weights["gan"])',
        ['tests/engine/test_learning.py', 'tests/engine/test_stage_terms.py'],
    ),
    '19c discriminator real/fake labels swapped': (
        'losses.py',
        '    real = lsgan_loss(real_predictions, True)\n    fake = lsgan_loss(fake_predictions, False)',
        '    real = lsgan_loss(real_predictions, False)\n    fake = lsgan_loss(fake_predictions, True)',
        ['tests/engine/test_learning.py', 'tests/engine/test_stage_terms.py'],
    ),
    '20a adobe F mask inverted': (
        'engine/stages.py',
        'fg_mask = (alpha > self.foreground_mask_alpha).float()',
        'fg_mask = (alpha <= self.foreground_mask_alpha).float()',
        ['tests/engine/test_stage_terms.py'],
    ),
    '20b adobe F mask >=': (
        'engine/stages.py',
        'fg_mask = (alpha > self.foreground_mask_alpha).float()',
        'fg_mask = (alpha >= self.foreground_mask_alpha).float()',
        ['tests/engine/test_stage_terms.py'],
    ),
    '20c real F mask inverted': (
        'engine/stages.py',
        'fg_mask = (teacher_alpha > _alpha_threshold_raw(self.foreground_mask_alpha)).float()',
        'fg_mask = (teacher_alpha <= _alpha_threshold_raw(self.foreground_mask_alpha)).float()',
        ['tests/engine/test_stage_terms.py'],
    ),
    '20d real F mask >=': (
        'engine/stages.py',
        'fg_mask = (teacher_alpha > _alpha_threshold_raw(self.foreground_mask_alpha)).float()',
        'fg_mask = (teacher_alpha >= _alpha_threshold_raw(self.foreground_mask_alpha)).float()',
        ['tests/engine/test_stage_terms.py'],
    ),
    '20e opaque-F replacement off (losses, both stages)': (
        'losses.py',
        '    return image * opaque + foreground * (1.0 - opaque)',
        '    return foreground',
        ['tests/engine/test_stage_terms.py'],
    ),
    '20f opaque-F replacement off (adobe composite only)': (
        'engine/stages.py',
        '        if self.compose_opaque_alpha is not None:',
        '        if False:',
        ['tests/engine/test_stage_terms.py'],
    ),
    '20g opaque-F replacement off (real fake only)': (
        'engine/stages.py',
        '        subject = losses.replace_opaque_foreground(fg_raw, image, alpha_raw, _alpha_threshold_raw(0.975))',
        '        subject = fg_raw',
        ['tests/engine/test_stage_terms.py'],
    ),
    '21 export gate compares PyTorch with itself': (
        'inference/export.py',
        '        alpha, foreground = run(inputs)',
        '        alpha, foreground = alpha_ref, fg_ref',
        ['tests/test_export.py'],
    ),
    '22a align: degeneracy gate removed': (
        'preprocess/align.py',
        '    if problem:\n        raise _FallBack(f"degenerate homography: {problem}")',
        '    if False:\n        raise _FallBack(f"degenerate homography: {problem}")',
        ['tests/preprocess/test_align.py'],
    ),
    '22b align: inlier-ratio test removed': (
        'preprocess/align.py',
        'if report.inliers < max(options.min_inliers, options.min_inlier_ratio * len(kept)):',
        'if report.inliers < options.min_inliers:',
        ['tests/preprocess/test_align.py'],
    ),
    '22c prepare_real --handheld without alignment': (
        'preprocess/capture.py',
        '        if self.alignment == "none":\n',
        '        if self.alignment in ("none", "per_frame"):\n',
        ['tests/data/test_prepare_real.py'],
    ),
    '22d prepare_real --handheld aligned once': (
        'preprocess/capture.py',
        ['        if self.alignment == "per_frame":\n            return "aligned"',
         '        if state is not None and (self.alignment == "once" or registered):'],
        ['        if False:\n            return "aligned"',
         '        if state is not None:'],
        ['tests/data/test_prepare_real.py'],
    ),
}


def plant(name: str, scratch: Path) -> list[str]:
    """Copy the sources into ``scratch`` with bug ``name`` planted; returns the tests that must catch it."""
    path, old, new, tests = MUTATIONS[name]
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.copytree(REPO / "src", scratch / "src", symlinks=True)
    shutil.copytree(REPO / "configs", scratch / "configs")
    target = scratch / "src" / "bgmatting" / path
    text = target.read_text()
    for o, n in zip(*((old, new) if isinstance(old, list) else ([old], [new]))):
        if text.count(o) != 1:
            sys.exit(f"{name}: the code to change is not (once) in {target.relative_to(scratch)} any more: {o!r}")
        text = text.replace(o, n)
    target.write_text(text)
    return tests


def main() -> None:
    if {"-h", "--help"} & set(sys.argv[1:]):
        print(__doc__, "\nBugs:", *MUTATIONS, sep="\n  ")
        return
    with tempfile.TemporaryDirectory() as scratch:
        for name in sys.argv[1:] or list(MUTATIONS):
            tests = plant(name, Path(scratch))
            env = {**os.environ, "PYTHONPATH": str(Path(scratch) / "src")}
            result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
                                    cwd=REPO, env=env, capture_output=True, text=True)
            failed = re.findall(r"^FAILED (.+?)(?: - .*)?$", result.stdout, re.M)
            print(f"{name}: {'CAUGHT by' if failed else 'SURVIVED'}", *failed, sep="\n    ", flush=True)


if __name__ == "__main__":
    main()
