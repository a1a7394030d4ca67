"""Mutation check of the test suite (issue 14, items 19-22; issue 21: the "i21" bugs): plant one known bug at a
time in a scratch copy of the sources and run the tests that must catch it; prints CAUGHT (with the failing tests)
or SURVIVED.

    python scripts/plant_bugs.py                      # every bug (a few minutes)
    python scripts/plant_bugs.py "21 export gate compares PyTorch with itself"

Each bug is an exact text replacement; when the code it targets has changed, the script says so (update the
table then). The repository itself is never modified: sources, configs and tests are copied into a scratch folder,
where the tests run (so a test that starts a command runs the planted copy too).
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
        'engine/stages/real.py',
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
        'engine/stages/adobe.py',
        'fg_mask = (alpha > self.foreground_mask_alpha).float()',
        'fg_mask = (alpha <= self.foreground_mask_alpha).float()',
        ['tests/engine/test_stage_terms.py'],
    ),
    '20b adobe F mask >=': (
        'engine/stages/adobe.py',
        'fg_mask = (alpha > self.foreground_mask_alpha).float()',
        'fg_mask = (alpha >= self.foreground_mask_alpha).float()',
        ['tests/engine/test_stage_terms.py'],
    ),
    '20c real F mask inverted': (
        'engine/stages/real.py',
        'fg_mask = (teacher_alpha > alpha_threshold_raw(self.foreground_mask_alpha)).float()',
        'fg_mask = (teacher_alpha <= alpha_threshold_raw(self.foreground_mask_alpha)).float()',
        ['tests/engine/test_stage_terms.py'],
    ),
    '20d real F mask >=': (
        'engine/stages/real.py',
        'fg_mask = (teacher_alpha > alpha_threshold_raw(self.foreground_mask_alpha)).float()',
        'fg_mask = (teacher_alpha >= alpha_threshold_raw(self.foreground_mask_alpha)).float()',
        ['tests/engine/test_stage_terms.py'],
    ),
    '20e opaque-F replacement off (losses, both stages)': (
        'losses.py',
        '    return image * opaque + foreground * (1.0 - opaque)',
        '    return foreground',
        ['tests/engine/test_stage_terms.py'],
    ),
    '20f opaque-F replacement off (adobe composite only)': (
        'engine/stages/adobe.py',
        '        if self.compose_opaque_alpha is not None:',
        '        if False:',
        ['tests/engine/test_stage_terms.py'],
    ),
    '20g opaque-F replacement off (real fake only)': (
        'engine/stages/real.py',
        '        subject = losses.replace_opaque_foreground(fg_raw, image, alpha_raw, alpha_threshold_raw(0.975))',
        '        subject = fg_raw',
        ['tests/engine/test_stage_terms.py'],
    ),
    '21 export gate compares PyTorch with itself': (
        'inference/model_export.py',
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
        ['tests/data/test_clip_preparation.py'],
    ),
    '22d prepare_real --handheld aligned once': (
        'preprocess/capture.py',
        ['        if self.alignment == "per_frame":\n            return "aligned"',
         '        if state is not None and (self.alignment == "once" or registered):'],
        ['        if False:\n            return "aligned"',
         '        if state is not None:'],
        ['tests/data/test_clip_preparation.py'],
    ),
    # issue 21: the kinds an earlier mutation run found unguarded, and their near relatives
    'i21a temporal: moving average from the raw previous frame': (
        'inference/temporal.py',
        '(last.alpha, item.alpha, static)',
        '(self._last_raw.alpha, item.alpha, static)',
        ['tests/inference/test_temporal.py'],
    ),
    'i21a2 temporal: premultiplied F averaged with the raw previous frame': (
        'inference/temporal.py',
        '(last.premultiplied, item.premultiplied, static[:, :, None])',
        '(self._last_raw.premultiplied, item.premultiplied, static[:, :, None])',
        ['tests/inference/test_temporal.py'],
    ),
    'i21a3 temporal: OFD compares with the smoothed previous frame': (
        'inference/temporal.py',
        'one_frame_delay(self._last_raw, self._waiting[0]',
        'one_frame_delay(self._last, self._waiting[0]',
        ['tests/inference/test_temporal.py'],
    ),
    'i21b temporal: moving-average weights swapped (alpha and F)': (
        'inference/temporal.py',
        'cv2.addWeighted(past[box], w, present[box], 1.0 - w, 0.0)',
        'cv2.addWeighted(past[box], 1.0 - w, present[box], w, 0.0)',
        ['tests/inference/test_temporal.py'],
    ),
    'i21b3 temporal: OFD neighbours agree only below the threshold': (
        'inference/temporal.py',
        'np.abs(a0 - a2) <= threshold',
        'np.abs(a0 - a2) < threshold',
        ['tests/inference/test_temporal.py'],
    ),
    'i21b4 temporal: OFD flicker from the previous frame at the threshold': (
        'inference/temporal.py',
        'np.abs(a1 - a0) > threshold',
        'np.abs(a1 - a0) >= threshold',
        ['tests/inference/test_temporal.py'],
    ),
    'i21b5 temporal: OFD flicker from the next frame at the threshold': (
        'inference/temporal.py',
        'np.abs(a1 - a2) > threshold',
        'np.abs(a1 - a2) >= threshold',
        ['tests/inference/test_temporal.py'],
    ),
    'i21c adobe augment: flip misses alpha and F': (
        'data/augment.py',
        'fg, a, bg = cv2.flip(fg, 1), cv2.flip(a, 1), cv2.flip(bg, 1)',
        'fg, a, bg = fg, a, cv2.flip(bg, 1)',
        ['tests/data/test_augment.py'],
    ),
    'i21c2 adobe augment: flip misses alpha only': (
        'data/augment.py',
        'fg, a, bg = cv2.flip(fg, 1), cv2.flip(a, 1), cv2.flip(bg, 1)',
        'fg, a, bg = cv2.flip(fg, 1), a, cv2.flip(bg, 1)',
        ['tests/data/test_augment.py'],
    ),
    'i21c3 adobe augment: B resized whole, not cropped': (
        'data/augment.py',
        'bg = cut_and_resize(bg, window, out_hw)',
        'bg = resize(bg, out, out)',
        ['tests/data/test_augment.py'],
    ),
    'i21c4 adobe augment: F resized whole, not cropped': (
        'data/augment.py',
        'fg = cut_and_resize(fg, window, out_hw)',
        'fg = resize(fg, out, out)',
        ['tests/data/test_augment.py'],
    ),
    'i21c5 adobe augment: alpha resized whole, not cropped': (
        'data/augment.py',
        'a = cut_and_resize(a, window, out_hw)',
        'a = resize(a, out, out)',
        ['tests/data/test_augment.py'],
    ),
    'i21c6 adobe augment: trimap resized whole, not cropped': (
        'data/augment.py',
        'trimap = cut_and_resize(trimap, window, out_hw, nearest=True)',
        'trimap = resize(trimap, out, out, nearest=True)',
        ['tests/data/test_augment.py'],
    ),
    'i21d real captures: flip misses the ground truth': (
        'data/real.py',
        'maps = {k: v[:, ::-1] for k, v in maps.items()}',
        'maps = {k: v if k in ("alpha", "foreground") else v[:, ::-1] for k, v in maps.items()}',
        ['tests/data/test_real.py'],
    ),
    'i21d2 real captures: ground truth resized whole, not cropped': (
        'data/real.py',
        'maps = {k: cut_and_resize(v, window, out_hw) for k, v in maps.items()}',
        'maps = {k: cut_and_resize(v, window if k in SAMPLE_KEYS else (0, 0, *shape), out_hw) '
        'for k, v in maps.items()}',
        ['tests/data/test_real.py'],
    ),
    'i21e misalignment tolerance from the short side': (
        'preprocess/misalignment.py',
        'tolerance * max(shape)',
        'tolerance * min(shape)',
        ['tests/preprocess/test_capture.py'],
    ),
    'i21e2 misalignment tolerance without its one-pixel floor': (
        'preprocess/misalignment.py',
        'return max(1.0, tolerance * max(shape))',
        'return tolerance * max(shape)',
        ['tests/preprocess/test_capture.py'],
    ),
    'i21e3 misalignment at the tolerance counts as off': (
        'preprocess/misalignment.py',
        'self.pixels <= tolerance',
        'self.pixels < tolerance',
        ['tests/preprocess/test_capture.py'],
    ),
    'i21e4 plates ignore their tolerance option': (
        'preprocess/capture.py',
        'tolerance = tolerance_px(image.shape[:2], self.tolerance)',
        'tolerance = tolerance_px(image.shape[:2])',
        ['tests/preprocess/test_capture.py'],
    ),
    'i21f refiner thresholding >=': (
        'models/refiner.py',
        'selected = flat > threshold',
        'selected = flat >= threshold',
        ['tests/models/test_refiner.py'],
    ),
    'i21f2 generator opaque-F rule >=': (
        'models/generator.py',
        'opaque = alpha_raw > ALPHA_OPAQUE_RAW',
        'opaque = alpha_raw >= ALPHA_OPAQUE_RAW',
        ['tests/models/test_generator.py'],
    ),
    'i21f3 postprocess component mask >=': (
        'inference/postprocess.py',
        'largest_component_mask(alpha > threshold)',
        'largest_component_mask(alpha >= threshold)',
        ['tests/inference/test_infer_postprocess.py'],
    ),
    'i21f4 postprocess opaque F = I at 0.975': (
        'inference/postprocess.py',
        'where=(alpha > opaque_above)[..., None]',
        'where=(alpha >= opaque_above)[..., None]',
        ['tests/inference/test_infer_postprocess.py'],
    ),
    'i21f5 postprocess F kept at 0.01': (
        'inference/postprocess.py',
        '_zero_where(fg, alpha <= clear_at_or_below)',
        '_zero_where(fg, alpha < clear_at_or_below)',
        ['tests/inference/test_infer_postprocess.py'],
    ),
    'i21g batch augmentation: its random stream not restored on resume': (
        'engine/run_checkpoints.py',
        '        trainer.batch_rng.set_state(state["rng"][rank]["batch_transform"])',
        '        pass',
        ['tests/engine/test_resume.py'],
    ),
    'i21h validation in the training precision (best.pt not reproducible by evaluate)': (
        'engine/validation.py',
        '        values = self.score(for_inference(model, self.device))',
        '        values = self.score(model)',
        ['tests/engine/test_resume.py'],
    ),
}


def plant(name: str, scratch: Path) -> list[str]:
    """Copy the sources into ``scratch`` with bug ``name`` planted; returns the tests that must catch it."""
    path, old, new, tests = MUTATIONS[name]
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.copytree(REPO / "src", scratch / "src", symlinks=True)
    for folder in ("configs", "tests", "scripts", "docs", "data"):  # tests that start a command put their src/ first
        shutil.copytree(REPO / folder, scratch / folder, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "METRICS.md"):
        shutil.copyfile(REPO / name, scratch / name)
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
                                    cwd=scratch, env=env, capture_output=True, text=True)
            failed = re.findall(r"^FAILED (.+?)(?: - .*)?$", result.stdout, re.M)
            print(f"{name}: {'CAUGHT by' if failed else 'SURVIVED'}", *failed, sep="\n    ", flush=True)


if __name__ == "__main__":
    main()
