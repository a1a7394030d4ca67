"""Export to ONNX (opset >= 17, dynamic H x W) and TorchScript, with parity against PyTorch."""
from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from bgmatting import export
from bgmatting.inference.export import INPUT_NAMES, example_inputs, export_model
from bgmatting.models import Generator, MattingModel
from bgmatting.runtime import resolve_precision

TINY = dict(ngf=8, nf_part=8, n_blocks1=1, n_blocks2=1)


def _model(**overrides) -> MattingModel:
    return MattingModel(Generator(**dict(TINY, **overrides), rng=torch.Generator().manual_seed(0))).eval()


def _input_dims(path) -> dict[str, list]:
    model = onnx.load(str(path))
    return {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}


def test_onnx_parity_at_two_resolutions_and_dynamic_shapes(tmp_path):
    model = _model()
    path = tmp_path / "matting.onnx"
    rows = export_model(model, path, "onnx", size=(64, 64), check_size=(48, 96))
    assert [(r["height"], r["width"]) for r in rows] == [(64, 64), (48, 96)]
    for row in rows:
        assert row["alpha_max_abs_diff"] < 1e-4 and row["foreground_max_abs_diff"] < 1e-4

    graph = onnx.load(str(path))
    assert max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")) >= 17
    dims = _input_dims(path)
    assert dims["image"] == ["batch", 3, "height", "width"]
    assert "motion" not in dims  # the original wiring cannot see M: the exporter drops the unused input

    # Independently of export_model's own check: a third size and a batch of 2, straight through onnxruntime.
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = example_inputs(36, 44, batch=2, seed=7)
    feed = {n: t.numpy() for n, t in zip(INPUT_NAMES, inputs) if n in dims}
    alpha, foreground = session.run(["alpha", "foreground"], feed)
    with torch.no_grad():
        alpha_ref, fg_ref = model(*inputs)
    assert alpha.shape == (2, 1, 36, 44) and foreground.shape == (2, 3, 36, 44)
    assert np.abs(alpha - alpha_ref.numpy()).max() < 1e-4
    assert 0 <= alpha.min() and alpha.max() <= 1
    # the README's contract: image-space outputs, F = I where alpha > 0.975
    opaque = np.broadcast_to(alpha > 0.975, foreground.shape)
    np.testing.assert_allclose(foreground[opaque], inputs[0].numpy()[opaque], atol=1e-5)


def test_export_leaves_the_given_model_as_it_was(tmp_path):
    model = _model().set_precision(resolve_precision("cpu", "fp32_cl"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    export_model(model, tmp_path / "m.pt", "torchscript", size=(16, 16), check_size=(20, 24))
    assert model.precision.name == "fp32_cl"  # the export ran on an fp32 NCHW copy
    assert next(model.parameters()).is_contiguous(memory_format=torch.channels_last)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_export_cli_from_a_checkpoint_with_motion_wiring(tmp_path, capsys):
    generator = _model(motion_uses_background_feature=False).generator
    checkpoint = tmp_path / "ckpt.pt"
    torch.save({"generator": generator.state_dict(), "model_config": generator.config}, checkpoint)
    output = tmp_path / "out" / "model.onnx"
    code = export.main(["--checkpoint", str(checkpoint), "--format", "onnx", "--output", str(output),
                        "--opset", "17", "--size", "32,32", "--check-size", "48,40"])
    assert code == 0 and output.exists()
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [(r["height"], r["width"]) for r in report["parity"]] == [(32, 32), (48, 40)]
    assert max(r["alpha_max_abs_diff"] for r in report["parity"]) < 1e-4
    assert _input_dims(output)["motion"] == ["batch", 4, "height", "width"]  # this generator sees M


def test_torchscript_parity(tmp_path):
    path = tmp_path / "matting.pt"
    rows = export_model(_model(), path, "torchscript", size=(32, 48))
    assert (rows[1]["height"], rows[1]["width"]) == (24, 72)  # the default second size differs
    assert all(r["alpha_max_abs_diff"] < 1e-5 for r in rows)
    assert path.exists()


def test_failed_parity_or_bad_arguments_leave_no_file(tmp_path):
    model = _model()
    path = tmp_path / "strict.pt"
    with pytest.raises(RuntimeError, match="parity check failed"):
        export_model(model, path, "torchscript", size=(16, 16), tolerance=-1.0)
    assert not path.exists() and not list(tmp_path.glob(".*"))
    with pytest.raises(ValueError, match="opset must be >= 17"):
        export_model(model, tmp_path / "old.onnx", "onnx", size=(32, 32), opset=13)
    with pytest.raises(ValueError, match="multiples of 4"):
        export_model(model, path, "onnx", size=(30, 32))
    with pytest.raises(ValueError, match="unknown format"):
        export_model(model, path, "tflite")
    assert not list(tmp_path.iterdir())
