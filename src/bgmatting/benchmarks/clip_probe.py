"""One measured ``infer`` run over a video clip: frames/s end to end, seconds per stage, peak memory.

:mod:`bgmatting.benchmarks.video` loads this file by its path in a fresh process and calls :func:`run`: each
process measures one configuration, so its peak resident set size is that configuration's, and it imports
whichever ``bgmatting`` its PYTHONPATH names, so another checkout's code is measured by this same code. It
therefore imports nothing of the package at module level and uses only what the package has had since its refine
mode (``inference.job``, ``matte_sequence``, ``Matter``, ``TemporalFilter``); newer options (``threads``,
``fast_inference``) are used where the measured code has them.

The run is wired exactly as ``python -m bgmatting.infer --input CLIP --background PLATE --checkpoint CKPT --mode
MODE`` wires it (every other option at its default). Stage times are exclusive wall seconds, summed over the
frames on whichever thread ran them (with the reader and writer threads they overlap, so they add up to more
than the wall time): ``decode``, ``alignment`` (the plate: decision, exposure, any alignment), ``segmentation``,
``prepare`` (crop, resize, S post-process), ``base`` (the network outside the refiner: the base generator and
the input resizing), ``refiner``, ``postprocess``, ``temporal``, ``composite``, ``encode`` (video encoding, PNGs).
"""
from __future__ import annotations

import contextlib
import inspect
import resource
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

STAGES = ("decode", "alignment", "segmentation", "prepare", "base", "refiner", "postprocess", "temporal",
          "composite", "encode")


class ExclusiveClock:
    """Wall seconds per stage, exclusive of nested stages on the same thread; safe to use from several threads."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._lock = threading.Lock()
        self._local = threading.local()

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        stack = self._local.__dict__.setdefault("stack", [])
        stack.append([time.perf_counter(), 0.0])
        try:
            yield
        finally:
            start, nested = stack.pop()
            elapsed = time.perf_counter() - start
            if stack:
                stack[-1][1] += elapsed
            with self._lock:
                self.seconds[name] += elapsed - nested

    def wrap(self, function: Callable, name: str) -> Callable:
        def timed(*args, **kwargs):
            with self.stage(name):
                return function(*args, **kwargs)
        return timed

    def iterate(self, items: Iterable, name: str) -> Iterator:
        iterator = iter(items)
        while True:
            with self.stage(name):
                item = next(iterator, StopIteration)
            if item is StopIteration:
                return
            yield item

    def hook(self, module, name: str) -> None:
        """Time every forward of a torch module (pre- and post-forward hooks)."""
        contexts: list[contextlib.AbstractContextManager] = []

        def before(*_):
            contexts.append(self.stage(name))
            contexts[-1].__enter__()

        def after(*_) -> None:  # returns None: the module's output stays as it is
            contexts.pop().__exit__(None, None, None)

        module.register_forward_pre_hook(before)
        module.register_forward_hook(after)


@contextlib.contextmanager
def patched(owner: object, name: str, replacement: Callable) -> Iterator[None]:
    """``owner.name = replacement`` inside the block (a class method for every instance), restored after."""
    original = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
    setattr(owner, name, replacement)
    try:
        yield
    finally:
        setattr(owner, name, original)


def _timed_method(clock: ExclusiveClock, cls: type, name: str, stage: str) -> contextlib.AbstractContextManager:
    method = getattr(cls, name)
    return patched(cls, name, lambda self, *args, **kwargs: clock.wrap(method, stage)(self, *args, **kwargs))


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _compositing(pipeline) -> tuple[type, str, str]:
    """(class, method, stage) of a frame's composite in this checkout or an older one (``MatteResult.composite``)."""
    if hasattr(pipeline, "Matte"):
        return pipeline.Matte, "over", "composite"
    return pipeline.MatteResult, "composite", "composite"


def run(spec: dict) -> dict:
    """Matte ``spec["video"]`` with ``spec["plate"]`` and ``spec["checkpoint"]`` in ``spec["mode"]`` into
    ``spec["output"]``; keys ``threads`` and ``fast`` (None: the code's default), ``torch_threads``,
    ``max_frames`` and ``alpha_path`` (save the network's and the written float alphas there, .npz: ``network``,
    ``output``) are optional."""
    import numpy as np
    import torch

    import bgmatting
    from bgmatting.inference import job as jobs
    from bgmatting.inference import pipeline, runner, temporal
    from bgmatting.inference.sinks import ResultWriter
    from bgmatting.preprocess.capture import BackgroundPlates

    if spec.get("torch_threads"):
        torch.set_num_threads(int(spec["torch_threads"]))
    job = jobs.InferenceJob(input=spec["video"], background=spec["plate"], checkpoint=spec["checkpoint"],
                            output=spec["output"], mode=spec["mode"], progress=False)
    jobs.check_job(job)
    inputs = jobs.open_inputs(job)
    matter = jobs.load_matter(job, inputs.segmentations)
    if spec.get("fast") is not None and hasattr(matter.model, "set_fast_inference"):
        matter.model.set_fast_inference(bool(spec["fast"]))
    rss_loaded = _peak_rss_mib()
    clock = ExclusiveClock()
    plates = BackgroundPlates(inputs.captured, job.alignment, exposure=job.exposure)
    plates.for_frame = clock.wrap(plates.for_frame, "alignment")
    matter.segmenter = clock.wrap(matter.segmenter, "segmentation")
    matter._prepare = clock.wrap(matter._prepare, "prepare")
    matter._finish = clock.wrap(matter._finish, "postprocess")
    clock.hook(matter.model, "base")
    if getattr(matter.model, "refiner", None) is not None:
        clock.hook(matter.model.refiner, "refiner")
    writer = ResultWriter(job.output, pngs=not inputs.clip or job.png_sequences,
                          video=(inputs.frames.fps or job.fps, inputs.name) if inputs.clip else None,
                          video_extension=job.video_extension, fourcc=job.video_codec)
    kept: dict[str, list] = {"network": [], "output": []}  # float alphas, with spec["alpha_path"]
    write, run_network = writer.write, matter._run_network

    def write_and_keep(name, alpha, *rest):
        if spec.get("alpha_path"):
            kept["output"].append(np.array(alpha, np.float32))
        return write(name, alpha, *rest)

    def run_network_and_keep(prepared):
        alpha, foreground = run_network(prepared)
        if spec.get("alpha_path"):
            kept["network"] += [np.array(a, np.float32) for a in alpha]
        return alpha, foreground

    writer.write = clock.wrap(write_and_keep, "encode")
    matter._run_network = run_network_and_keep
    frames: Iterable = clock.iterate(inputs.frames, "decode")
    if spec.get("max_frames"):
        frames = (frame for frame in frames if frame.index < int(spec["max_frames"]))
    options = dict(segmentations=inputs.segmentations, clip=inputs.clip, motion_offsets=job.motion_offsets,
                   temporal=temporal.TemporalOptions(job.temporal), batch_size=job.batch_size, progress=False,
                   source_name=inputs.name)
    threaded = "threads" in inspect.signature(runner.matte_sequence).parameters
    if threaded and spec.get("threads") is not None:
        options["threads"] = bool(spec["threads"])
    with contextlib.ExitStack() as stack:
        for cls, name, stage in ((temporal.TemporalFilter, "push", "temporal"),
                                 (temporal.TemporalFilter, "flush", "temporal"),
                                 _compositing(pipeline)):
            stack.enter_context(_timed_method(clock, cls, name, stage))
        start = time.perf_counter()
        summary = runner.matte_sequence(matter, frames, plates, inputs.targets, writer, **options)
        seconds = time.perf_counter() - start
    if spec.get("alpha_path"):
        np.savez(spec["alpha_path"], **{k: np.stack(v) for k, v in kept.items()})
    return {
        "code": str(Path(bgmatting.__file__).resolve().parents[1]), "mode": spec["mode"], "frames": summary["frames"],
        "seconds": seconds, "frames_per_s": summary["frames"] / seconds,
        "infer_frames_per_s": summary["frames_per_second"], "stages_s": {s: clock.seconds.get(s, 0.0) for s in STAGES},
        "peak_rss_mib": _peak_rss_mib(), "rss_after_loading_mib": rss_loaded, "torch_threads": torch.get_num_threads(),
        "threads": options.get("threads", True) if threaded else False,
        "fast_inference": bool(getattr(matter.model, "fast_inference", False)), "precision": matter.precision.name,
        "refine_options": getattr(matter.model, "refine_options", None) if matter.model.refiner is not None else None,
    }
