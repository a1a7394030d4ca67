"""bgmatting.evaluation (library) and ``python -m bgmatting.evaluate`` (command) on tiny folders."""
from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from bgmatting import evaluation as E
from bgmatting import metrics as M
from bgmatting.io import DataError, read_alpha, read_image, read_trimap, write_alpha, write_image
from bgmatting.models import Generator, MattingModel, load_matting_model

REPO_ROOT = Path(__file__).resolve().parents[1]
H, W = 18, 22  # not multiples of 4: the generator input is padded and the output cropped back


def _matte(index: int) -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    return np.clip(1.6 - np.hypot(yy - 9, xx - 10 - index) / 3.5, 0, 1)


@pytest.fixture
def test_set(tmp_path, rng):
    """A folder test set (image/background/alpha/trimap/foreground/segmentation) and a folder of predictions."""
    root, preds = tmp_path / "set", tmp_path / "pred"
    for i in range(3):
        alpha = _matte(i)
        fg, bg = rng.random((H, W, 3)), rng.random((H, W, 3))
        trimap = np.full((H, W), 128, np.uint8)
        trimap[alpha == 0] = 0
        trimap[alpha == 1] = 255
        trimap[0, 0] = 255  # a known-foreground pixel whose ground truth says 0: must not count
        name = f"img{i}"
        write_image(root / "image" / f"{name}.png", alpha[..., None] * fg + (1 - alpha[..., None]) * bg)
        write_image(root / "background" / f"{name}.png", bg)
        write_image(root / "foreground" / f"{name}.png", fg)
        write_alpha(root / "alpha" / f"{name}.png", alpha)
        write_alpha(root / "trimap" / f"{name}.png", trimap)
        write_alpha(root / "segmentation" / f"{name}.png", cv2.GaussianBlur((alpha > 0.5).astype(np.float32), (5, 5), 0))
        write_alpha(preds / f"{name}.png", np.clip(alpha + rng.normal(0, 0.1, alpha.shape), 0, 1))
    return root, preds


@pytest.fixture
def checkpoint(tmp_path):
    generator = Generator(ngf=4, nf_part=4, n_blocks1=1, n_blocks2=1)
    path = tmp_path / "tiny.pt"
    torch.save({"generator": generator.state_dict(), "model_config": generator.config}, path)
    return path


def _expected_folder_rows(root: Path, preds: Path) -> dict[str, dict]:
    out = {}
    for p in sorted(preds.iterdir()):
        pred, gt = read_alpha(p), read_alpha(root / "alpha" / p.name)
        trimap = read_trimap(root / "trimap" / p.name)
        out[p.stem] = {"sad": M.sad(pred, gt, trimap), "mse": M.mse(pred, gt, trimap),
                       "grad": M.grad(pred, gt, trimap), "conn": M.conn(pred, gt, trimap)}
    return out


def _subprocess_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT / "src"), env.get("PYTHONPATH", "")])
    return env


# ----------------------------------------------------------------------------------------------- folders
def test_score_folders_matches_the_metrics(test_set):
    root, preds = test_set
    rows = E.score_folders(preds, root / "alpha", root / "trimap", progress=False)
    expected = _expected_folder_rows(root, preds)
    assert [r["name"] for r in rows] == sorted(expected)
    for row in rows:
        for key, value in expected[row["name"]].items():
            assert row[key] == pytest.approx(value, rel=1e-12)
        assert row["unknown_pixels"] == int((read_trimap(root / "trimap" / f"{row['name']}.png") == 128).sum())
    # without trimaps every pixel counts
    all_pixels = E.score_folders(preds, root / "alpha", progress=False)
    assert all_pixels[0]["unknown_pixels"] == H * W
    assert all_pixels[0]["sad"] > rows[0]["sad"]


def test_score_folders_errors_name_the_file(test_set, tmp_path):
    root, preds = test_set
    extra = preds / "stray.png"
    write_alpha(extra, np.zeros((H, W)))
    with pytest.raises(DataError, match=r"stray\.png: no ground truth"):
        E.score_folders(preds, root / "alpha", progress=False)
    extra.unlink()

    missing = root / "alpha" / "img9.png"
    write_alpha(missing, np.zeros((H, W)))
    with pytest.raises(DataError, match=r"no prediction .* img9\.png"):
        E.score_folders(preds, root / "alpha", progress=False)
    missing.unlink()

    write_alpha(preds / "img1.png", np.zeros((H + 2, W)))
    with pytest.raises(DataError, match=r"img1\.png: prediction is 22x20 but ground truth .*img1\.png is 22x18"):
        E.score_folders(preds, root / "alpha", progress=False)
    write_alpha(preds / "img1.png", np.zeros((H, W)))

    (root / "trimap" / "img2.png").unlink()
    with pytest.raises(DataError, match=r"img2\.png: no trimap"):
        E.score_folders(preds, root / "alpha", root / "trimap", progress=False)

    gt_float = tmp_path / "gt_float"
    gt_float.mkdir()
    for i in range(3):
        values = _matte(i).astype(np.float32)
        if i == 1:
            values[3, 3] = 1.5
        cv2.imwrite(str(gt_float / f"img{i}.tif"), values)
    with pytest.raises(DataError, match=r"img1\.tif: float image values must lie in \[0, 1\], found \[0, 1\.5\]"):
        E.score_folders(preds, gt_float, progress=False)


# ----------------------------------------------------------------------------------------------- reports
def test_summary_and_reports(tmp_path):
    rows = [{"name": "a", "height": 2, "width": 2, "unknown_pixels": 4, "sad": 1.0, "mse": 0.002, "grad": 3.0, "conn": 4.0},
            {"name": "b", "height": 2, "width": 2, "unknown_pixels": 0, "sad": 3.0, "mse": math.nan, "grad": 5.0, "conn": 6.0}]
    summary = E.summarize(rows)
    assert summary == {"images": 2, "sad": 2.0, "mse": 0.002, "grad": 4.0, "conn": 5.0}
    paths = E.write_reports(rows, tmp_path / "out", baselines={"segmentation": rows[:1]}, mse_unit=1e-2)
    assert {p.name for p in paths.values()} == {"per_image.csv", "per_image_segmentation.csv", "summary.json",
                                                "summary.md", "per_image.png"}
    data = json.loads(paths["json"].read_text())
    assert data["summaries"]["model"]["sad"] == 2.0
    assert data["summaries"]["baseline: segmentation"]["images"] == 1
    markdown = paths["markdown"].read_text()
    assert "| method | images | SAD (×10^3) | MSE (×10^-2) | Grad (×10^3) | Conn (×10^3) |" in markdown
    assert "| model | 2 | 2.0000 | 0.2000 | 4.0000 | 5.0000 |" in markdown  # MSE 0.002 printed x1e2
    back = E.read_rows_csv(paths["csv"])
    assert back[0]["sad"] == 1.0 and math.isnan(back[1]["mse"])
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------------------------- model
def _dataset(root: Path, tmp_path: Path):
    from bgmatting.data.adobe import CompositeSetDataset

    return CompositeSetDataset(E.manifest_from_folder(root, tmp_path / "manifest.csv"), segmentation="file")


def _tiny_model() -> MattingModel:
    return MattingModel(Generator(ngf=4, nf_part=4, n_blocks1=1, n_blocks2=1))


def test_score_model_scores_and_saves_every_sample(test_set, tmp_path):
    root, _ = test_set
    dataset = _dataset(root, tmp_path)
    model = _tiny_model().train()
    rows = E.score_model(model, dataset, save_dir=tmp_path / "pred_out", save_error_maps=True)
    assert model.training  # restored
    assert [r["name"] for r in rows] == ["img0", "img1", "img2"]
    assert E.sample_names(torch.utils.data.Subset(dataset, [2, 0])) == ["img2", "img0"]
    for index, row in enumerate(rows):
        sample = dataset[index]
        alpha, fg = model.predict(torch.utils.data.default_collate([sample]))
        assert alpha.shape == (1, 1, H, W)  # H x W are not multiples of 4: the model pads and crops back
        gt, trimap = sample["alpha"][0].numpy(), sample["trimap"][0].numpy()
        assert row["sad"] == pytest.approx(M.sad(alpha[0, 0].numpy(), gt, trimap), rel=1e-9)
        assert row["conn"] == pytest.approx(M.conn(alpha[0, 0].numpy(), gt, trimap), rel=1e-9)
        assert row["fg_mse"] == pytest.approx(M.foreground_mse(fg[0].permute(1, 2, 0).numpy(),
                                                               sample["foreground"].permute(1, 2, 0).numpy(),
                                                               gt, trimap), rel=1e-9)
        saved = read_alpha(tmp_path / "pred_out" / "alpha" / f"{row['name']}.png")
        np.testing.assert_allclose(saved, np.round(alpha[0, 0].numpy() * 255) / 255, atol=1e-6)
        assert read_image(tmp_path / "pred_out" / "error" / f"{row['name']}.png").shape == (H, W, 3)


def test_evaluate_scores_model_baselines_and_references_and_writes_reports(test_set, tmp_path):
    """The one evaluation sequence (training's validation and final evaluation, and the evaluate command)."""
    root, _ = test_set
    dataset = _dataset(root, tmp_path)
    model, teacher = _tiny_model(), _tiny_model()
    result = E.evaluate(model, dataset, baselines=["segmentation"], references={"teacher": teacher}, limit=2,
                        output_dir=tmp_path / "out", title="Test")
    assert list(result.summaries) == ["model", "baseline: segmentation", "baseline: teacher"]
    assert result.rows == E.score_model(model, torch.utils.data.Subset(dataset, [0, 1]))
    assert result.baselines["teacher"] == E.score_model(teacher, torch.utils.data.Subset(dataset, [0, 1]))
    assert result.baselines["segmentation"] == E.score_baseline(torch.utils.data.Subset(dataset, [0, 1]), "segmentation")
    assert result.summaries["model"] == E.summarize(result.rows) and result.summaries["model"]["images"] == 2
    assert {p.name for p in result.reports.values()} == {"per_image.csv", "per_image_segmentation.csv",
                                                         "per_image_teacher.csv", "summary.json", "summary.md",
                                                         "per_image.png"}
    assert json.loads(result.reports["json"].read_text())["summaries"]["baseline: teacher"]["images"] == 2
    assert not (tmp_path / "out" / "predictions").exists()
    in_memory = E.evaluate(model, dataset)  # no output folder: scores only (training's per-epoch validation)
    assert in_memory.reports == {} and in_memory.summaries["model"]["images"] == 3


def test_no_foreground_metrics_without_a_true_foreground(test_set, tmp_path):
    root, _ = test_set
    for f in (root / "foreground").iterdir():
        f.unlink()
    (root / "foreground").rmdir()
    rows = E.score_model(_tiny_model(), _dataset(root, tmp_path))
    assert "fg_mse" not in rows[0] and rows[0]["sad"] > 0


def test_segmentation_baseline(test_set, tmp_path):
    root, _ = test_set
    dataset = _dataset(root, tmp_path)
    rows = E.score_baseline(dataset, "segmentation")
    sample = dataset[1]
    seg, gt, trimap = sample["segmentation"][0].numpy(), sample["alpha"][0].numpy(), sample["trimap"][0].numpy()
    assert rows[1]["sad"] == pytest.approx(M.sad(seg, gt, trimap))
    assert rows[1]["mse"] == pytest.approx(M.mse(seg, gt, trimap))
    with pytest.raises(ValueError, match="unknown baseline"):
        E.score_baseline(dataset, "oracle")


def test_folder_set_errors_name_the_file(test_set, tmp_path):
    root, _ = test_set
    (root / "background" / "img1.png").unlink()
    with pytest.raises(DataError, match=r"img1\.png: no background file named 'img1'"):
        E.manifest_from_folder(root, tmp_path / "m.csv")


# ----------------------------------------------------------------------------------------------- command
def _run_command(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    """``python -m bgmatting.evaluate`` in a fresh interpreter."""
    return subprocess.run([sys.executable, "-m", "bgmatting.evaluate", *overrides, "progress=false",
                           f"hydra.run.dir={tmp_path / 'hydra'}"], cwd=REPO_ROOT, env=_subprocess_env(tmp_path),
                          capture_output=True, text=True, timeout=300)


def _run_main(monkeypatch, tmp_path: Path, *overrides: str) -> None:
    """The command's Hydra entry point in this process (as ``python -m`` runs it, minus the interpreter start)."""
    from bgmatting.evaluate import main

    monkeypatch.setattr(sys, "argv", ["bgmatting.evaluate", *overrides, "progress=false",
                                      f"hydra.run.dir={tmp_path / 'hydra'}"])
    main()


def _csv_rows(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="") as f:
        return {r["name"]: r for r in csv.DictReader(f)}


def test_command_without_a_model(test_set, tmp_path, monkeypatch, capsys):
    root, preds = test_set
    out = tmp_path / "out"
    _run_main(monkeypatch, tmp_path, f"pred_dir={preds}", f"gt_dir={root / 'alpha'}", f"trimap_dir={root / 'trimap'}",
              f"output_dir={out}", "save_error_maps=true")
    expected = _expected_folder_rows(root, preds)
    table = _csv_rows(out / "per_image.csv")
    for name, values in expected.items():
        for key, value in values.items():
            assert float(table[name][key]) == pytest.approx(value, rel=1e-9)
    summary = json.loads((out / "summary.json").read_text())["summaries"]["predictions"]
    mean_sad = np.mean([v["sad"] for v in expected.values()])
    assert summary["sad"] == pytest.approx(mean_sad, rel=1e-12) and summary["images"] == 3
    assert f"| predictions | 3 | {mean_sad:.4f} |" in (out / "summary.md").read_text()
    assert (out / "per_image.png").stat().st_size > 0
    assert sorted(p.name for p in (out / "predictions" / "error").iterdir()) == ["img0.png", "img1.png", "img2.png"]
    assert "predictions (3 images): SAD" in capsys.readouterr().out


def test_command_with_a_checkpoint(test_set, checkpoint, tmp_path):
    root, _ = test_set
    out = tmp_path / "out"
    result = _run_command(tmp_path, f"checkpoint={checkpoint}", f"dataset.root={root}", f"output_dir={out}",
                          "precision=fp32", "save_predictions=true", "baselines=[segmentation]")
    assert result.returncode == 0, result.stderr
    expected = E.score_model(load_matting_model(checkpoint), _dataset(root, tmp_path))
    table = _csv_rows(out / "per_image.csv")
    for row in expected:
        for key in ("sad", "mse", "grad", "conn", "fg_mse", "fg_sad"):
            assert float(table[row["name"]][key]) == pytest.approx(row[key], rel=1e-6)
    summaries = json.loads((out / "summary.json").read_text())["summaries"]
    assert set(summaries) == {"model", "baseline: segmentation"}
    assert summaries["model"]["mse"] == pytest.approx(np.mean([r["mse"] for r in expected]), rel=1e-6)
    assert "baseline: segmentation" in (out / "summary.md").read_text()
    assert len(list((out / "predictions" / "alpha").iterdir())) == 3
    assert (out / "per_image.png").exists() and (out / "per_image_segmentation.csv").exists()


def test_command_reports_bad_input_and_fails(test_set, checkpoint, tmp_path, monkeypatch, capsys):
    root, preds = test_set
    (root / "trimap" / "img2.png").unlink()
    with pytest.raises(SystemExit) as exit_info:
        _run_main(monkeypatch, tmp_path, f"checkpoint={checkpoint}", f"dataset.root={root}", f"output_dir={tmp_path / 'o'}")
    assert exit_info.value.code == 2
    assert "img2.png: no trimap file named 'img2'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _run_main(monkeypatch, tmp_path, f"pred_dir={preds}", f"output_dir={tmp_path / 'o'}")
    assert "needs both pred_dir=DIR and gt_dir=DIR" in capsys.readouterr().err


def test_background_difference_baseline(test_set, tmp_path):
    from bgmatting.preprocess.segment import background_difference_matte

    root, _ = test_set
    dataset = _dataset(root, tmp_path)
    rows = E.score_baseline(dataset, "background_difference")
    sample = dataset[2]
    image, background = (sample[k].permute(1, 2, 0).numpy() for k in ("image", "background"))
    matte = background_difference_matte(image, background)
    gt, trimap = sample["alpha"][0].numpy(), sample["trimap"][0].numpy()
    assert rows[2]["sad"] == pytest.approx(M.sad(matte, gt, trimap))
    assert rows[2]["grad"] == pytest.approx(M.grad(matte, gt, trimap))


def test_run_on_the_synthetic_held_out_set_with_both_baselines(checkpoint, tmp_path, compose_config):
    from bgmatting.evaluate import run

    data = [f"data.cache_dir={tmp_path / 'cache'}", "data.generation.n_fg=1", "data.generation.n_bg=1",
            "data.generation.size=32", "data.generation.n_test_fg=1", "data.generation.n_test_bg=2",
            "data.generation.test_size=null"]
    cfg = compose_config("evaluate", [f"checkpoint={checkpoint}", "dataset.synthetic=true", *data,
                                      f"output_dir={tmp_path / 'out'}", "baselines=[segmentation,background_difference]",
                                      "progress=false"])
    summaries = run(cfg)
    assert set(summaries) == {"model", "baseline: segmentation", "baseline: background_difference"}
    assert all(s["images"] == 2 for s in summaries.values())
    table = (tmp_path / "out" / "summary.md").read_text()
    assert "| baseline: background_difference | 2 |" in table
    both = compose_config("evaluate", [f"checkpoint={checkpoint}", "dataset.synthetic=true", f"dataset.root={tmp_path}",
                                       f"output_dir={tmp_path / 'out2'}"])
    with pytest.raises(DataError, match="choose exactly one test set"):
        run(both)


# ----------------------------------------------------------------------------------------------- no silent wrong results
@pytest.mark.parametrize("encoding", ["class_index", "float"])
def test_other_trimap_encodings_score_like_the_standard_one(test_set, tmp_path, encoding):
    """A 0/1/2 or 0/0.5/1 trimap is read as the 0/128/255 one it encodes (it once read as all background: SAD 0)."""
    root, preds = test_set
    other = tmp_path / encoding
    other.mkdir()
    for path in (root / "trimap").iterdir():
        standard = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if encoding == "class_index":
            cv2.imwrite(str(other / path.name), (standard // 127).astype(np.uint8))
        else:
            cv2.imwrite(str(other / f"{path.stem}.tif"), (standard / 255.0).round(1).astype(np.float32))
    expected = E.score_folders(preds, root / "alpha", root / "trimap")
    rows = E.score_folders(preds, root / "alpha", other)
    assert rows == expected and all(r["sad"] > 0 and r["unknown_pixels"] > 0 for r in rows)


def test_a_trimap_without_unknown_pixels_is_an_error_not_a_perfect_score(test_set, tmp_path):
    root, preds = test_set
    write_alpha(root / "trimap" / "img1.png", np.where(_matte(1) > 0.5, 255, 0).astype(np.uint8))
    with pytest.raises(DataError, match=r"img1\.png: the trimap has no unknown \(128\) pixels"):
        E.score_folders(preds, root / "alpha", root / "trimap")
    with pytest.raises(DataError, match=r"sample 1 \(img1\): the trimap has no unknown"):
        E.score_model(_tiny_model(), _dataset(root, tmp_path))


def test_a_model_producing_nan_is_named_as_the_cause_not_the_sample(test_set, tmp_path):
    from bgmatting.models import NonFiniteOutputError

    root, _ = test_set
    model = _tiny_model()
    with torch.no_grad():
        model.generator.alpha_decoder.head.conv.bias.fill_(float("nan"))
    with pytest.raises(NonFiniteOutputError, match=r"sample 0 \(img0\): the model's output holds NaN or infinite"):
        E.score_model(model, _dataset(root, tmp_path))


def test_manifest_names_cannot_write_outside_the_output_folder(test_set, tmp_path):
    root, _ = test_set
    manifest = E.manifest_from_folder(root, tmp_path / "set.csv")
    lines = manifest.read_text().splitlines()
    names = ["../../escaped", "/abs/olute", "..\\win"]
    rows = [line.replace(f"img{i},", f"{names[i]},", 1) if line.startswith(f"img{i},") else line
            for line in lines for i in [int(line[3]) if line.startswith("img") else 0]]
    manifest.write_text("\n".join(rows) + "\n")
    from bgmatting.data.adobe import CompositeSetDataset

    dataset = CompositeSetDataset(manifest, segmentation="file")
    out = tmp_path / "deep" / "er" / "out"
    E.evaluate(_tiny_model(), dataset, output_dir=out, save_predictions=True, save_error_maps=True)
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file() and out not in p.parents)
    assert all(p.parts[0] in ("set", "pred", "set.csv") for p in written), written  # only the inputs outside
    assert sorted(p.name for p in (out / "predictions" / "alpha").iterdir()) == [
        "_.._escaped.png", "_abs_olute.png", "_win.png"]
    assert {r["name"] for r in E.read_rows_csv(out / "per_image.csv")} == {"_.._escaped", "_abs_olute", "_win"}


EVALUATE_BAD_INPUT = [  # (case, overrides; {tmp}: the test folder, {root}: the test set, {preds}: predictions)
    ("missing checkpoint", ["checkpoint={tmp}/nope.pt", "dataset.root={root}"], r"nope\.pt: checkpoint not found"),
    ("random checkpoint", ["checkpoint={tmp}/random.pt", "dataset.root={root}"],
     r"random\.pt: cannot be read as a weights-only PyTorch checkpoint: not a PyTorch file"),
    ("NaN checkpoint", ["checkpoint={tmp}/nan.pt", "dataset.root={root}"],
     r"nan\.pt: 1 tensor\(s\) hold NaN or infinite values, e\.g\. alpha_decoder\.head\.conv\.bias"),
    ("a trimap that is not one", ["checkpoint={tmp}/tiny.pt", "dataset.root={tmp}/junk_trimap"],
     r"img1\.png: not a trimap: uint8 values 64, 255"),
    ("a trimap without unknown pixels", ["pred_dir={preds}", "gt_dir={root}/alpha", "trimap_dir={tmp}/no_unknown"],
     r"img0\.png: the trimap has no unknown \(128\) pixels"),
    ("missing test set", ["checkpoint={tmp}/tiny.pt", "dataset.root={tmp}/nowhere"],
     r"nowhere: test-set folder does not exist"),
    ("missing predictions", ["pred_dir={tmp}/nowhere", "gt_dir={root}/alpha"], r"nowhere: prediction folder does not exist"),
    ("predictions only", ["pred_dir={preds}"], r"model-free evaluation needs both pred_dir=DIR and gt_dir=DIR"),
    ("model and predictions", ["checkpoint={tmp}/tiny.pt", "pred_dir={preds}", "gt_dir={root}/alpha"], r"not both"),
    ("checkpoint with a broken model config", ["checkpoint={tmp}/broken.pt", "dataset.root={root}"],
     r"broken\.pt: bad Generator configuration: ngf must be in \[1, 4096\], got -1$"),
    ("unknown precision", ["checkpoint={tmp}/tiny.pt", "dataset.root={root}", "precision=fp99"],
     r"unknown precision 'fp99'"),
    ("output folder under a file", ["pred_dir={preds}", "gt_dir={root}/alpha", "output_dir={tmp}/notes.txt/out"],
     r"notes\.txt/out: cannot write the output folder: Not a directory"),
]


@pytest.mark.parametrize("case, overrides, expected", EVALUATE_BAD_INPUT, ids=[c[0] for c in EVALUATE_BAD_INPUT])
def test_evaluate_refuses_bad_input_with_one_line(test_set, checkpoint, tmp_path, capfd, monkeypatch, case, overrides,
                                                  expected):
    import shutil

    from bad_input import assert_refused, files_under, run_hydra_main
    from bgmatting.evaluate import main

    root, preds = test_set
    (tmp_path / "random.pt").write_bytes(bytes(range(256)) * 8)
    (tmp_path / "notes.txt").write_text("not a folder")
    state = torch.load(checkpoint, weights_only=True)
    state["generator"]["alpha_decoder.head.conv.bias"][0] = float("nan")
    torch.save(state, tmp_path / "nan.pt")
    state["generator"]["alpha_decoder.head.conv.bias"][0] = 0.0
    torch.save({**state, "model_config": {**state["model_config"], "ngf": -1}}, tmp_path / "broken.pt")
    shutil.copytree(root, tmp_path / "junk_trimap")
    write_alpha(tmp_path / "junk_trimap" / "trimap" / "img1.png", np.where(_matte(1) > 0.5, 255, 64).astype(np.uint8))
    for i in range(3):
        write_alpha(tmp_path / "no_unknown" / f"img{i}.png", np.where(_matte(i) > 0.5, 255, 0).astype(np.uint8))
    out = tmp_path / "out"
    given = " ".join(overrides)
    argv = [o.format(tmp=tmp_path, root=root, preds=preds) for o in overrides] + ["progress=false"]
    argv += [] if "output_dir=" in given else [f"output_dir={out}"]
    argv += [f"hydra.run.dir={tmp_path / 'hydra'}"]
    capfd.readouterr()
    before = files_under(tmp_path)
    code = run_hydra_main(main, argv, monkeypatch)
    err = capfd.readouterr().err
    assert_refused(code, err, rf"^evaluate: error: .*{expected}", tmp_path, before,
                   allowed=[out, tmp_path / "hydra"])


def test_evaluate_command_keeps_hostile_sample_names_inside_the_output_folder(test_set, checkpoint, tmp_path, capfd,
                                                                             monkeypatch):
    from bad_input import files_under, run_hydra_main
    from bgmatting.evaluate import main

    root, _ = test_set
    manifest = E.manifest_from_folder(root, tmp_path / "set.csv")
    absolute = Path("/tmp") / f"{tmp_path.name}_absolute"  # a Path join with it would leave every folder
    text = manifest.read_text().replace("\nimg0,", "\n../../../escaped,").replace("\nimg1,", f"\n{absolute},")
    manifest.write_text(text)
    out = tmp_path / "deep" / "out"
    before = files_under(tmp_path)
    code = run_hydra_main(main, [f"checkpoint={checkpoint}", f"dataset.manifest={manifest}", f"output_dir={out}",
                                 "save_predictions=true", "progress=false", f"hydra.run.dir={out}"], monkeypatch)
    assert code == 0, capfd.readouterr().err
    new = set(files_under(tmp_path)) - set(before)
    assert new and all(name.startswith("deep/out/") for name in new), new
    assert not list(Path("/tmp").glob(f"{tmp_path.name}_absolute*"))
    assert sorted(p.name for p in (out / "predictions" / "alpha").iterdir()) == [
        "_.._.._escaped.png", f"_tmp_{tmp_path.name}_absolute.png", "img2.png"]
