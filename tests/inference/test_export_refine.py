"""Export of a refining model (base + refiner): ONNX without TopK, fixed H x W, dynamic batch, parity."""
from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from infer_helpers import refining_model

from bgmatting import export
from bgmatting.inference.model_export import INPUT_NAMES, example_inputs, export_model


@pytest.mark.parametrize("size", [(64, 96), (96, 64)])
def test_onnx_of_the_thresholding_refine_model_at_two_sizes(tmp_path, size):
    model = refining_model(refine_mode="thresholding", refine_threshold=0.5)
    inputs = example_inputs(*size, batch=2, seed=7)
    with torch.no_grad():
        refined = model(*inputs, raw=True).refined
    assert 0.05 < float(refined.mean()) < 0.95  # some patches refined, some not: selection is exercised

    path = tmp_path / "refine.onnx"
    rows = export_model(model, path, "onnx", size=size)
    assert [(r["height"], r["width"], r["batch"]) for r in rows] == [(*size, 1), (*size, 2)]
    assert all(r["alpha_max_abs_diff"] < 1e-4 and r["foreground_max_abs_diff"] < 1e-4 for r in rows)

    graph = onnx.load(str(path)).graph
    operators = {node.op_type for node in graph.node}
    assert "TopK" not in operators and "NonZero" in operators
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input}
    assert dims["image"] == ["batch", 3, *size]  # fixed H x W, dynamic batch

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {n: t.numpy() for n, t in zip(INPUT_NAMES, inputs) if n in dims}
    alpha, foreground = session.run(["alpha", "foreground"], feed)
    with torch.no_grad():
        alpha_ref, foreground_ref = model(*inputs)
    assert np.abs(alpha - alpha_ref.numpy()).max() < 1e-4
    assert np.abs(foreground - foreground_ref.numpy()).max() < 1e-4


def test_full_mode_and_no_patch_at_all_export_too(tmp_path):
    rows = export_model(refining_model(refine_mode="full"), tmp_path / "full.onnx", "onnx", size=(32, 48))
    assert max(r["alpha_max_abs_diff"] for r in rows) < 1e-4
    nothing = refining_model(refine_mode="thresholding", refine_threshold=1.0)  # the error map never exceeds 1
    rows = export_model(nothing, tmp_path / "none.pt", "torchscript", size=(32, 48))
    assert max(r["alpha_max_abs_diff"] for r in rows) < 1e-5


def test_refine_export_refuses_topk_and_a_second_size(tmp_path):
    with pytest.raises(ValueError, match="TopK"):
        export_model(refining_model(refine_mode="sampling"), tmp_path / "a.onnx", "onnx", size=(32, 32))
    with pytest.raises(ValueError, match="fixed H x W"):
        export_model(refining_model(refine_mode="full"), tmp_path / "b.onnx", "onnx", size=(32, 32),
                     check_size=(48, 32))
    assert not list(tmp_path.iterdir())


def test_export_command_sets_the_refine_options(tmp_path, capsys):
    checkpoint = tmp_path / "refine.pt"
    torch.save(refining_model(refine_mode="sampling").checkpoint_state(), checkpoint)
    output = tmp_path / "refine.onnx"
    code = export.main(["--checkpoint", str(checkpoint), "--output", str(output), "--size", "32,48",
                        "--refine-mode", "full", "--downsample-ratio", "0.25"])
    assert code == 0 and output.is_file()
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [(r["height"], r["width"], r["batch"]) for r in report["parity"]] == [(32, 48, 1), (32, 48, 2)]
    code = export.main(["--checkpoint", str(checkpoint), "--output", str(tmp_path / "x.onnx"), "--refine-threshold", "2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "refine_threshold in [0, 1]" in err[0]
    assert not (tmp_path / "x.onnx").exists()
