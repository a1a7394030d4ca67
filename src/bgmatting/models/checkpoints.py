"""Loading generator / discriminator weights: our checkpoints and the original release's state dicts.

Formats understood by :func:`load_generator` (and likewise :func:`load_discriminator`):

* our checkpoint: a dict holding ``"generator"`` (a state dict) and ``"model_config"`` (constructor
  keyword arguments), possibly among other entries (optimiser, step ...). For the discriminator:
  ``"discriminator"`` and, optionally, ``"discriminator_config"``;
* a bare state dict with our module names (the constructor arguments are inferred from the shapes);
* a state dict of the public code (``model_enc1.1.weight`` ..., ``layer0.0.weight`` ...), optionally with
  the ``module.`` prefix that nn.DataParallel adds (the released models have it).

Files are always read with ``torch.load(..., map_location="cpu", weights_only=True)`` (:func:`read_weights_file`):
no pickled code runs. Weights holding NaN or infinity are refused at load, naming the file and the tensors. What a
checkpoint asks to build (constructor arguments, refine options, size, tensor dtypes) is checked before anything
is built (:mod:`bgmatting.models.config_check`).
"""
from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Union

import torch

from bgmatting.models.config_check import (
    CheckpointError,
    check_network_config,
    check_refine_options,
    check_tensor_dtypes,
)
from bgmatting.models.discriminator import MultiscaleDiscriminator
from bgmatting.models.generator import Generator
from bgmatting.models.matting import MattingModel
from bgmatting.models.refiner import Refiner

Source = Union[str, os.PathLike, Mapping[str, Any]]
StateDict = dict[str, torch.Tensor]

WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # nn.DataParallel / DistributedDataParallel, torch.compile
SHOWN = 5  # how many offending keys an error message lists

# Flat nn.Sequential indices in the public code.
_ENCODER_INDICES = {"stem": (1, 2), "down1": (4, 5), "down2": (7, 8)}  # (conv, norm)
_RESNET_BLOCK_INDICES = {"conv1": 1, "norm1": 2, "conv2": 5, "norm2": 6}  # inside ".conv_block"
_ORIGINAL_CUE_ENCODERS = {
    "background_encoder": "model_enc_back",
    "segmentation_encoder": "model_enc_seg",
    "motion_encoder": "model_enc_multi",
}
_ORIGINAL_SELECTORS = {
    "selector_background": "comb_back",
    "selector_segmentation": "comb_seg",
    "selector_motion": "comb_multi",
}


# ----------------------------------------------------------------------------------------------------------
# Name mapping


def _generator_module_pairs(n_blocks1: int, n_blocks2: int) -> list[tuple[str, str]]:
    """(our module path, original module path) for every generator module that holds tensors."""
    pairs: list[tuple[str, str]] = []

    def conv_norm(ours: str, original_conv: str, original_norm: str) -> None:
        pairs.append((f"{ours}.conv", original_conv))
        pairs.append((f"{ours}.norm", original_norm))

    def resnet_blocks(ours: str, original: str, count: int, first_index: int) -> None:
        for i in range(count):
            for part, index in _RESNET_BLOCK_INDICES.items():
                pairs.append((f"{ours}.{i}.{part}", f"{original}.{first_index + i}.conv_block.{index}"))

    conv_norm("image_encoder.stem", "model_enc1.1", "model_enc1.2")
    conv_norm("image_encoder.down1", "model_enc1.4", "model_enc1.5")
    conv_norm("image_encoder.down2", "model_enc2.0", "model_enc2.1")
    for ours, original in _ORIGINAL_CUE_ENCODERS.items():
        for stage, (conv, norm) in _ENCODER_INDICES.items():
            conv_norm(f"{ours}.{stage}", f"{original}.{conv}", f"{original}.{norm}")
    for ours, original in _ORIGINAL_SELECTORS.items():
        conv_norm(ours, f"{original}.0", f"{original}.1")
    conv_norm("combinator", "model_res_dec.0", "model_res_dec.1")
    resnet_blocks("shared_blocks", "model_res_dec", n_blocks1, first_index=3)

    resnet_blocks("alpha_decoder.blocks", "model_res_dec_al", n_blocks2, first_index=0)
    conv_norm("alpha_decoder.up1", "model_al_out.1", "model_al_out.2")
    conv_norm("alpha_decoder.up2", "model_al_out.5", "model_al_out.6")
    pairs.append(("alpha_decoder.head.conv", "model_al_out.9"))

    resnet_blocks("foreground_decoder.blocks", "model_res_dec_fg", n_blocks2, first_index=0)
    conv_norm("foreground_decoder.up1", "model_dec_fg1.1", "model_dec_fg1.2")
    conv_norm("foreground_decoder.up2", "model_fg_out.1", "model_fg_out.2")
    pairs.append(("foreground_decoder.head.conv", "model_fg_out.5"))
    return pairs


def _discriminator_stage_offset(stage: int) -> int:
    """Index of stage ``stage``'s conv in the public code's flat Sequential: [conv, act], then [conv, norm, act]..."""
    return 0 if stage == 0 else 2 + 3 * (stage - 1)


def _discriminator_module_pairs(num_d: int, n_layers: int, flat: bool = True) -> list[tuple[str, str]]:
    """(our module path, original module path) for the discriminator's conv and norm modules.

    The original stores scale i (full resolution = i = 0 in its forward loop) as ``layer{num_d-1-i}``; with
    intermediate features it names stages ``scale{num_d-1-i}_layer{j}``.
    """
    pairs = []
    for scale in range(num_d):
        original_scale = num_d - 1 - scale
        for stage in range(n_layers + 2):
            ours = f"scales.{scale}.stages.{stage}"
            if flat:
                offset = _discriminator_stage_offset(stage)
                pairs.append((f"{ours}.conv", f"layer{original_scale}.{offset}"))
                pairs.append((f"{ours}.norm", f"layer{original_scale}.{offset + 1}"))
            else:
                pairs.append((f"{ours}.conv", f"scale{original_scale}_layer{stage}.0"))
                pairs.append((f"{ours}.norm", f"scale{original_scale}_layer{stage}.1"))
    return pairs


def _count_indices(keys, pattern: str) -> int:
    """Number of distinct integers captured by ``pattern`` (group 1) over ``keys``."""
    regex = re.compile(pattern)
    return len({int(m.group(1)) for k in keys if (m := regex.match(k))})


def _max_index(keys, pattern: str) -> int:
    regex = re.compile(pattern)
    found = [int(m.group(1)) for k in keys if (m := regex.match(k))]
    return max(found) if found else -1


def strip_wrapper_prefixes(state_dict: Mapping[str, Any]) -> StateDict:
    """Remove ``module.`` (DataParallel/DDP) and ``_orig_mod.`` (torch.compile) prefixes from every key."""
    stripped = {}
    for key, value in state_dict.items():
        changed = True
        while changed:
            changed = False
            for prefix in WRAPPER_PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix):], True
        stripped[key] = value
    return stripped


def detect_format(state_dict: Mapping[str, Any]) -> str:
    """One of ``"ours_generator"``, ``"original_generator"``, ``"ours_discriminator"``,
    ``"original_discriminator"``, ``"original_discriminator_features"`` or ``"unknown"`` (prefixes stripped first)."""
    keys = list(strip_wrapper_prefixes(state_dict))
    if any(k.startswith("image_encoder.") for k in keys):
        return "ours_generator"
    if any(k.startswith("model_enc1.") for k in keys):
        return "original_generator"
    if any(k.startswith("scales.") for k in keys):
        return "ours_discriminator"
    if keys and all(re.match(r"layer\d+\.\d+\.", k) for k in keys):
        return "original_discriminator"
    if keys and all(re.match(r"scale\d+_layer\d+\.\d+\.", k) for k in keys):
        return "original_discriminator_features"
    return "unknown"


def _rename(state_dict: Mapping[str, Any], module_map: Mapping[str, str], what: str) -> StateDict:
    renamed, unknown = {}, []
    for key, value in state_dict.items():
        module, _, leaf = key.rpartition(".")
        if module in module_map:
            renamed[f"{module_map[module]}.{leaf}"] = value
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointError(
            f"{what}: {len(unknown)} key(s) have no counterpart, e.g. {', '.join(unknown[:SHOWN])}"
        )
    return renamed


def original_to_ours(state_dict: Mapping[str, Any]) -> StateDict:
    """Public-code state dict (generator or discriminator, ``module.`` prefix optional) -> our names.

    Our state dicts pass through unchanged (prefixes stripped). Raises :class:`CheckpointError` when a key
    has no counterpart.
    """
    state = strip_wrapper_prefixes(state_dict)
    kind = detect_format(state)
    if kind in ("ours_generator", "ours_discriminator"):
        return state
    if kind == "original_generator":
        n_blocks1 = max(_count_indices(state, r"model_res_dec\.(\d+)\.conv_block\."), 0)
        n_blocks2 = _count_indices(state, r"model_res_dec_al\.(\d+)\.")
        pairs = _generator_module_pairs(n_blocks1, n_blocks2)
    elif kind == "original_discriminator":
        num_d = _count_indices(state, r"layer(\d+)\.")
        n_layers = (_max_index(state, r"layer\d+\.(\d+)\.") - 2) // 3
        pairs = _discriminator_module_pairs(num_d, n_layers, flat=True)
    elif kind == "original_discriminator_features":
        num_d = _count_indices(state, r"scale(\d+)_layer")
        n_layers = _max_index(state, r"scale\d+_layer(\d+)\.") - 1
        pairs = _discriminator_module_pairs(num_d, n_layers, flat=False)
    else:
        raise CheckpointError(f"not a Background Matting state dict; first keys: {', '.join(list(state)[:SHOWN])}")
    return _rename(state, {original: ours for ours, original in pairs}, "original -> ours")


def ours_to_original(state_dict: Mapping[str, Any]) -> StateDict:
    """Our state dict (generator or discriminator) -> the public code's names (no ``module.`` prefix).

    The result loads with ``load_state_dict`` into the public code's ResnetConditionHR(input_nc=(3, 3, 1, M),
    output_nc=4, ...) or MultiscaleDiscriminator(getIntermFeat=False).
    """
    state = strip_wrapper_prefixes(state_dict)
    kind = detect_format(state)
    if kind == "ours_generator":
        n_blocks1 = _count_indices(state, r"shared_blocks\.(\d+)\.")
        n_blocks2 = _count_indices(state, r"alpha_decoder\.blocks\.(\d+)\.")
        pairs = _generator_module_pairs(n_blocks1, n_blocks2)
    elif kind == "ours_discriminator":
        num_d = _count_indices(state, r"scales\.(\d+)\.")
        n_layers = _max_index(state, r"scales\.\d+\.stages\.(\d+)\.") - 1
        pairs = _discriminator_module_pairs(num_d, n_layers, flat=True)
    else:
        raise CheckpointError(f"not a state dict of our networks; first keys: {', '.join(list(state)[:SHOWN])}")
    return _rename(state, dict(pairs), "ours -> original")


# ----------------------------------------------------------------------------------------------------------
# Config inference


def _shape(state: Mapping[str, Any], key: str, name: str) -> torch.Size:
    if key not in state:
        raise CheckpointError(f"{name}: cannot infer the model size, key {key!r} is missing")
    return state[key].shape


def _infer_norm(state: Mapping[str, Any], norm_prefix: str, name: str) -> str:
    if f"{norm_prefix}.running_mean" in state:
        return "batch"
    if f"{norm_prefix}.weight" in state:
        raise CheckpointError(
            f"{name}: affine norm layers without running statistics; pass the norm explicitly (norm=...)"
        )
    return "instance"


def infer_generator_config(state_dict: Mapping[str, Any], name: str = "state dict") -> dict[str, Any]:
    """Generator constructor arguments from a state dict with our names.

    ``motion_uses_background_feature`` cannot be seen in the weights; it is set to True (the original).
    ``sync_batch`` and ``batch`` have the same keys; ``batch`` is returned. ``refine_head`` and
    ``refine_hidden`` are only returned when the weights hold a refine head.
    """
    state = strip_wrapper_prefixes(state_dict)
    stem_weight = _shape(state, "image_encoder.stem.conv.weight", name)
    config = dict(
        ngf=int(stem_weight[0]),
        nf_part=int(_shape(state, "selector_background.conv.weight", name)[0]),
        n_blocks1=_count_indices(state, r"shared_blocks\.(\d+)\."),
        n_blocks2=_count_indices(state, r"alpha_decoder\.blocks\.(\d+)\."),
        motion_frames=int(_shape(state, "motion_encoder.stem.conv.weight", name)[1]),
        norm=_infer_norm(state, "image_encoder.stem.norm", name),
        motion_uses_background_feature=True,
    )
    if "error_head.conv.weight" in state:
        config.update(refine_head=True, refine_hidden=int(state["error_head.conv.weight"].shape[0]) - 1)
    return config


def infer_discriminator_config(state_dict: Mapping[str, Any], name: str = "state dict") -> dict[str, Any]:
    """MultiscaleDiscriminator constructor arguments from a state dict with our names."""
    state = strip_wrapper_prefixes(state_dict)
    first = _shape(state, "scales.0.stages.0.conv.weight", name)
    return dict(
        in_channels=int(first[1]),
        ndf=int(first[0]),
        n_layers=_max_index(state, r"scales\.0\.stages\.(\d+)\.") - 1,
        num_d=_count_indices(state, r"scales\.(\d+)\."),
        norm=_infer_norm(state, "scales.0.stages.1.norm", name),
    )


# ----------------------------------------------------------------------------------------------------------
# Loading


def read_weights_file(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``: the one way a checkpoint file is read (no pickled code runs).

    Raises :class:`CheckpointError` naming the file when it is missing, not a PyTorch file, damaged, or holds
    pickled objects other than tensors in plain containers (refused, never executed).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found" + (" (it is a folder)" if path.is_dir() else ""))
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the error below says it all
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # pickle/zip/EOF errors come in many types
        raise CheckpointError(f"{path}: {_unreadable_reason(path, error)}") from None


def _unreadable_reason(path: Path, error: Exception) -> str:
    """Why torch could not read ``path``, in our words (torch's advice to load without ``weights_only``, i.e. to
    run the file's pickled code, is not passed on)."""
    prefix = "cannot be read as a weights-only PyTorch checkpoint: "
    refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
    if refused:
        return prefix + (f"it holds pickled code or objects ({refused.group(1)}), which are refused, never run; "
                         "save state dicts (tensors in plain containers) instead")
    if path.stat().st_size == 0 or isinstance(error, EOFError):
        return prefix + "the file is empty or truncated"
    text = str(error).strip() if isinstance(error, RuntimeError) else ""  # e.g. a zip reader's complaint
    first = text.splitlines()[0].split(". ")[0] if text else ""
    return prefix + "not a PyTorch file, or a damaged one" + (f" ({first})" if first else "")


def nonfinite_tensors(obj: Any, prefix: str = "") -> list[str]:
    """Dotted names of the floating-point tensors holding NaN or infinity in ``obj`` (nested dicts, lists and
    tuples of tensors, e.g. a state dict or a whole checkpoint), in order."""
    if isinstance(obj, torch.Tensor):
        bad = obj.is_floating_point() and obj.numel() > 0 and not bool(torch.isfinite(obj).all())
        return [prefix or "<tensor>"] if bad else []
    if isinstance(obj, Mapping):
        items = obj.items()
    elif isinstance(obj, (list, tuple)):
        items = enumerate(obj)
    else:
        return []
    return [name for key, value in items
            for name in nonfinite_tensors(value, f"{prefix}.{key}" if prefix else str(key))]


def require_finite(state: Mapping[str, Any], name: str, consequence: str = "the checkpoint is unusable") -> None:
    """Raise :class:`CheckpointError` naming ``name`` (the file) and the tensors when ``state`` holds NaN or
    infinite values (such weights give silently wrong mattes, e.g. an all-zero alpha); ``consequence`` ends
    the message."""
    bad = nonfinite_tensors(state)
    if bad:
        more = f" (+{len(bad) - SHOWN} more)" if len(bad) > SHOWN else ""
        raise CheckpointError(f"{name}: {len(bad)} tensor(s) hold NaN or infinite values, e.g. "
                              f"{', '.join(bad[:SHOWN])}{more}; {consequence}")


def _read(source: Source) -> tuple[str, Any]:
    if isinstance(source, Mapping):
        return "<state dict>", source
    return str(source), read_weights_file(source)


def _split(obj: Any, name: str, network_key: str, config_key: str) -> tuple[Mapping[str, Any], dict | None]:
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{name}: expected a state dict or a checkpoint dict, got {type(obj).__name__}")
    if network_key in obj and isinstance(obj[network_key], Mapping):
        config = obj.get(config_key)
        if config is not None and not isinstance(config, Mapping):
            raise CheckpointError(f"{name}: {config_key!r} must be a dict, got {type(config).__name__}")
        return obj[network_key], (dict(config) if config is not None else None)
    non_tensors = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if non_tensors:
        raise CheckpointError(
            f"{name}: neither a state dict nor a checkpoint with a {network_key!r} entry; "
            f"top-level keys: {', '.join(map(str, list(obj)[:SHOWN]))}"
        )
    return obj, None


def _load_into(model: torch.nn.Module, state: Mapping[str, Any], name: str) -> None:
    check_tensor_dtypes(model, state, name)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
        if items:
            more = f" (+{len(items) - SHOWN} more)" if len(items) > SHOWN else ""
            problems.append(f"{len(items)} {label}: {'; '.join(items[:SHOWN])}{more}")
    if problems:
        raise CheckpointError(f"{name} does not fit {type(model).__name__}({_describe(model)}): " + " | ".join(problems))
    require_finite(state, name)
    model.load_state_dict(state, strict=True)


def _describe(model: torch.nn.Module) -> str:
    config = getattr(model, "config", {})
    return ", ".join(f"{k}={v!r}" for k, v in config.items())


def _build(cls, config: dict[str, Any], name: str):
    """``cls(**config)`` once the config is checked (:func:`~bgmatting.models.config_check.check_network_config`)."""
    check_network_config(cls, config, name)
    try:
        return cls(**config)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{name}: bad {cls.__name__} configuration {config}: {error}") from error


def load_generator(source: Source, **overrides: Any) -> Generator:
    """A :class:`Generator` with the weights of ``source`` (path or mapping), in eval mode, on the CPU.

    ``source`` is our checkpoint, a bare state dict of ours, or an original-release state dict (see the module
    docstring). Constructor arguments come from the checkpoint's ``model_config`` or are inferred from shapes;
    ``overrides`` replace them (e.g. ``motion_uses_background_feature=False`` to fine-tune the released weights
    with the paper's intended wiring). Raises :class:`CheckpointError` naming the file and the offending keys.
    """
    name, obj = _read(source)
    state, config = _split(obj, name, "generator", "model_config")
    state = strip_wrapper_prefixes(state)
    kind = detect_format(state)
    if kind == "original_generator":
        try:
            state = original_to_ours(state)
        except CheckpointError as error:
            raise CheckpointError(f"{name}: {error}") from error
    elif kind != "ours_generator":
        raise CheckpointError(
            f"{name}: not a generator checkpoint (found format {kind!r}); first keys: {', '.join(list(state)[:SHOWN])}"
        )
    if config is None:
        config = infer_generator_config(state, name)
    config.update(overrides)
    generator = _build(Generator, config, name)
    _load_into(generator, state, name)
    return generator.eval()


def load_discriminator(source: Source, **overrides: Any) -> MultiscaleDiscriminator:
    """A :class:`MultiscaleDiscriminator` with the weights of ``source``, in eval mode, on the CPU.

    Accepts our checkpoint (``"discriminator"`` entry, optional ``"discriminator_config"``), a bare state dict
    of ours, or the public code's state dict (flat ``layer{i}.{j}`` or ``scale{i}_layer{j}`` names, optional
    ``module.`` prefix). ``overrides`` replace the stored or inferred constructor arguments.
    """
    name, obj = _read(source)
    state, config = _split(obj, name, "discriminator", "discriminator_config")
    state = strip_wrapper_prefixes(state)
    kind = detect_format(state)
    if kind in ("original_discriminator", "original_discriminator_features"):
        try:
            state = original_to_ours(state)
        except CheckpointError as error:
            raise CheckpointError(f"{name}: {error}") from error
    elif kind != "ours_discriminator":
        raise CheckpointError(
            f"{name}: not a discriminator checkpoint (found format {kind!r}); first keys: {', '.join(list(state)[:SHOWN])}"
        )
    if config is None:
        config = infer_discriminator_config(state, name)
    config.update(overrides)
    discriminator = _build(MultiscaleDiscriminator, config, name)
    _load_into(discriminator, state, name)
    return discriminator.eval()


def infer_refiner_config(state_dict: Mapping[str, Any], name: str = "state dict") -> dict[str, Any]:
    """Refiner constructor arguments from its state dict."""
    state = strip_wrapper_prefixes(state_dict)
    first = _shape(state, "coarse_stage.0.weight", name)
    return dict(
        hidden_channels=int(first[1]) - 10,  # hidden + alpha 1 + F 3 + I and B' 6
        channels=[
            int(first[0]),
            int(_shape(state, "coarse_stage.2.weight", name)[0]),
            int(_shape(state, "fine_stage.0.weight", name)[0]),
        ],
    )


def load_refiner(source: Source, **overrides: Any) -> Refiner:
    """A :class:`Refiner` with the weights of ``source`` (our checkpoint with a ``"refiner"`` entry and
    optionally ``"refiner_config"``, or a bare refiner state dict), in eval mode, on the CPU. ``overrides``
    replace the stored or inferred constructor arguments."""
    return _refiner_from(*_read(source), overrides)


def _refiner_from(name: str, obj: Any, overrides: Mapping[str, Any]) -> Refiner:
    state, config = _split(obj, name, "refiner", "refiner_config")
    state = strip_wrapper_prefixes(state)
    if config is None:
        config = infer_refiner_config(state, name)
    config.update(overrides)
    refiner = _build(Refiner, config, name)
    _load_into(refiner, state, name)
    return refiner.eval()


def load_matting_model(
    source: Source, refine_options: Mapping[str, Any] | None = None, **overrides: Any
) -> MattingModel:
    """A :class:`MattingModel` (image space in and out) around :func:`load_generator`'s network, in eval mode.

    When the checkpoint holds a ``"refiner"`` entry (:meth:`MattingModel.checkpoint_state` of a refining
    model) the refiner is loaded too, with the stored ``"refine_options"`` updated by ``refine_options``
    (keyword arguments of :meth:`MattingModel.set_refine_options`). ``overrides`` go to the generator.
    """
    generator = load_generator(source, **overrides)
    name, obj = _read(source)  # read again for the refiner entries; files are small next to a model's run time
    if not (isinstance(obj, Mapping) and "refiner" in obj):
        if refine_options:
            raise CheckpointError(f"{name}: refine_options given, but the checkpoint has no refiner")
        return MattingModel(generator).eval()
    options = check_refine_options({**check_refine_options(obj.get("refine_options"), name), **(refine_options or {})},
                                   name)
    refiner = _refiner_from(name, obj, {})
    try:
        return MattingModel(generator, refiner, **options).eval()
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{name}: generator, refiner and refine options do not fit: {error}") from error
