"""Export to ONNX (opset >= 17, dynamic H x W) and TorchScript, with parity against PyTorch."""
from __future__ import annotations

import json
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from bgmatting import export
from bgmatting.inference import model_export as export_library
from bgmatting.inference.model_export import INPUT_NAMES, ParityError, example_inputs, export_model
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
    with pytest.raises(ParityError, match="parity check failed"):
        export_model(model, path, "torchscript", size=(16, 16), tolerance=-1.0)
    assert not path.exists() and not list(tmp_path.glob(".*"))
    with pytest.raises(ValueError, match="opset must be >= 17"):
        export_model(model, tmp_path / "old.onnx", "onnx", size=(32, 32), opset=13)
    with pytest.raises(ValueError, match="multiples of 4"):
        export_model(model, path, "onnx", size=(30, 32))
    with pytest.raises(ValueError, match="unknown format"):
        export_model(model, path, "tflite")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("kind", ["onnx", "torchscript"])
def test_the_parity_gate_refuses_a_file_that_computes_something_else(tmp_path, monkeypatch, kind):
    """The gate must run the written file: here the writer exports another network (weights off by 1 %)."""
    other = _model()
    with torch.no_grad():
        for param in other.parameters():
            param.mul_(1.01)
    writer = "write_onnx" if kind == "onnx" else "write_torchscript"
    original = getattr(export_library, writer)
    monkeypatch.setattr(export_library, writer, lambda model, path, *args, **kw: original(other, path, *args, **kw))
    path = tmp_path / f"wrong.{'onnx' if kind == 'onnx' else 'pt'}"
    with pytest.raises(ParityError, match=r"parity check failed, alpha max \|diff\| [0-9.e-]+ > 0\.001"):
        export_model(_model(), path, kind, size=(32, 32), check_size=(24, 40))
    assert not list(tmp_path.iterdir())


def test_the_reported_parity_is_what_an_independent_onnxruntime_run_measures(tmp_path):
    model = _model()
    path = tmp_path / "m.onnx"
    rows = export_model(model, path, "onnx", size=(32, 32), check_size=(24, 40))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    for seed, row in enumerate(rows, start=1):  # the gate's inputs: example_inputs with seeds 1, 2, ...
        inputs = example_inputs(row["height"], row["width"], seed=seed)
        alpha = session.run(["alpha"], {n: t.numpy() for n, t in zip(INPUT_NAMES, inputs) if n in names})[0]
        with torch.no_grad():
            reference = model(*inputs)[0].numpy()
        assert row["alpha_max_abs_diff"] == pytest.approx(float(np.abs(alpha - reference).max()), rel=1e-6, abs=0)
        assert 0 < row["alpha_max_abs_diff"] < 1e-4  # kernels of two runtimes never agree bit for bit here


def test_a_model_with_nonfinite_output_is_not_exported(tmp_path):
    from bgmatting.models import NonFiniteOutputError

    model = _model()
    with torch.no_grad():
        model.generator.alpha_decoder.head.conv.bias.fill_(float("nan"))
    with pytest.raises(NonFiniteOutputError, match="output holds NaN or infinite values at 32x32"):
        export_model(model, tmp_path / "m.pt", "torchscript", size=(32, 32))
    assert not list(tmp_path.iterdir())


def test_export_cli_tolerance(tmp_path, capsys):
    generator = _model().generator
    checkpoint = tmp_path / "ckpt.pt"
    torch.save({"generator": generator.state_dict(), "model_config": generator.config}, checkpoint)
    strict = tmp_path / "strict.onnx"
    args = ["--checkpoint", str(checkpoint), "--size", "32,32", "--check-size", "24,40"]
    assert export.main([*args, "--output", str(strict), "--tolerance", "1e-9"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "parity check failed" in err and "> 1e-09 (--tolerance)" in err
    assert not strict.exists()
    loose = tmp_path / "loose.onnx"
    assert export.main([*args, "--output", str(loose), "--tolerance", "1e-3"]) == 0 and loose.exists()


# ----------------------------------------------------------------------------------------------- bad input
EXPORT_BAD_INPUT = [  # (case, arguments; {ckpt}: a good checkpoint, {out}: the output file, expected last line)
    ("missing checkpoint", ["--checkpoint", "{tmp}/nope.pt"], r"nope\.pt: checkpoint not found"),
    ("random bytes", ["--checkpoint", "{tmp}/random.pt"], r"random\.pt: cannot be read as a weights-only"),
    ("a discriminator", ["--checkpoint", "{tmp}/discriminator.pt"], r"discriminator\.pt: neither a state dict nor a checkpoint with a 'generator' entry"),
    ("NaN weights", ["--checkpoint", "{tmp}/nan.pt"], r"nan\.pt: 1 tensor\(s\) hold NaN or infinite values, e\.g\. "
                                                      r"alpha_decoder\.head\.conv\.bias"),
    ("size not a multiple of 4", ["--size", "30,32"], r"argument --size: size must be positive multiples of 4.*'30,32'"),
    ("size zero", ["--size", "0,0"], r"argument --size: size must be positive multiples of 4"),
    ("size not numbers", ["--check-size", "big"], r"argument --check-size: size must be H,W"),
    ("old opset", ["--opset", "13"], r"opset must be >= 17, got 13"),
    ("unknown format", ["--format", "tflite"], r"argument --format: invalid choice: 'tflite'"),
    ("output is a folder", ["--output", "{tmp}"], r"cannot write .*: Is a directory"),
    ("onnx not installed", ["--onnxruntime-missing"], r'ONNX export needs the packages onnx and onnxruntime: '
                                                       r'pip install "bgmatting\[export\]"'),
]


@pytest.mark.parametrize("case, arguments, expected", EXPORT_BAD_INPUT, ids=[c[0] for c in EXPORT_BAD_INPUT])
def test_export_refuses_bad_input_with_one_line(tmp_path, capsys, monkeypatch, case, arguments, expected):
    from bad_input import check_argparse_refusal
    from bgmatting.models import MultiscaleDiscriminator

    generator = _model().generator
    torch.save({"generator": generator.state_dict(), "model_config": generator.config}, tmp_path / "good.pt")
    (tmp_path / "random.pt").write_bytes(bytes(range(256)) * 8)
    torch.save({"discriminator": MultiscaleDiscriminator(ndf=4, n_layers=1).state_dict()}, tmp_path / "discriminator.pt")
    state = generator.state_dict()
    state["alpha_decoder.head.conv.bias"][0] = float("nan")
    torch.save({"generator": state, "model_config": generator.config}, tmp_path / "nan.pt")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "previous.onnx").write_text("an earlier export")
    if "--onnxruntime-missing" in arguments:
        monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as when the package is absent
        arguments = []
    defaults = {"--checkpoint": str(tmp_path / "good.pt"), "--output": str(tmp_path / "out" / "model.onnx"),
                "--size": "32,32"}
    check_argparse_refusal(export.main, arguments, defaults, tmp_path, capsys, expected)
    assert not (tmp_path / "out" / "model.onnx").exists()
