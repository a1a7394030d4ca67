"""Speed, memory and scaling benchmarks: ``python -m bgmatting.bench``.

    python -m bgmatting.bench [--suite model,data,video,metrics,scaling,peak,refine,train_compile,precision|all]
        [--sizes 256,512,1024] [--batches 1,4] [--modes fp32,fp32_cl,bf16,compile] [--repeats N] [--warmup N]
        [--model-config default|tiny] [--device auto] [--json out.json] [--markdown out.md] [--quick]
        [--frame-sizes 1080x1920,2160x3840] [--refine-model paper_refine] [--plain-model paper]
        [--compile-train quickstart:96,quickstart_refine:192] [--checkpoint CKPT] [--precision-sizes 256,512]
        [--video-frames N] [--video-model quickstart_refine] [--compare-src /tmp/before/src]

Every mode is compared in the same run, as a ratio to fp32 NCHW eager (the original's way). Results are
written as JSON and Markdown after every measurement. ``--quick`` picks a run that suits a small CPU
(size 512, batch 1, 2 repeats, modes estimated above 60 s per call skipped, compile for inference only);
explicit options win. ``--suite video --checkpoint CKPT --frame-sizes 1080x1920 --compare-src OTHER/src``
measures ``infer`` end to end in refine and crop mode, this code and OTHER's side by side (docs/PERFORMANCE.md).
A thin layer over :func:`bgmatting.benchmarks.runner.run_benchmarks`.
"""
from __future__ import annotations

import argparse
import shlex
import sys

from bgmatting.benchmarks.model import MODEL_CONFIGS, OPTIMIZER_IMPLEMENTATIONS
from bgmatting.benchmarks.modes import ALL_MODES
from bgmatting.benchmarks.runner import QUICK, SUITES, BenchConfig, run_benchmarks


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from error


def _frames(text: str) -> list[tuple[int, int]]:
    frames = [item.lower().split("x") for item in text.split(",") if item.strip()]
    if not frames or any(len(f) != 2 or not all(v.strip().isdigit() for v in f) for f in frames):
        raise argparse.ArgumentTypeError(f"expected HxW[,HxW...] (e.g. 1080x1920), got {text!r}")
    return [(int(h), int(w)) for h, w in frames]


def _model_sides(text: str) -> list[tuple[str, int]]:
    pairs = [item.split(":") for item in text.split(",") if item.strip()]
    if not pairs or any(len(p) != 2 or not p[1].strip().isdigit() for p in pairs):
        raise argparse.ArgumentTypeError(f"expected model:side[,model:side...] (e.g. quickstart:96), got {text!r}")
    return [(name.strip(), int(side)) for name, side in pairs]


def _names(choices: tuple[str, ...], allow_all: bool = False):
    def parse(text: str) -> list[str]:
        names = [v.strip() for v in text.split(",") if v.strip()]
        if allow_all and names == ["all"]:
            return list(choices)
        bad = [n for n in names if n not in choices]
        if bad or not names:
            what = ", ".join(bad) or "empty list"
            raise argparse.ArgumentTypeError(f"unknown {what}; choose from {', '.join(choices)}")
        return names
    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bgmatting.bench", description=__doc__.split("\n")[0])
    p.add_argument("--suite", type=_names(SUITES, allow_all=True), help="comma list of suites or 'all' (default all)")
    p.add_argument("--sizes", type=_ints, help="model suite square sizes (default 256,512,1024)")
    p.add_argument("--batches", type=_ints, help="model suite batch sizes (default 1,4)")
    p.add_argument("--kinds", type=_names(("train", "infer")), help="train,infer (default both)")
    p.add_argument("--modes", type=_names(ALL_MODES),
                   help="fp32,fp32_cl,bf16,fp16,compile (default: all the device supports)")
    p.add_argument("--repeats", type=int, help="timed calls per mode (default 3; quick 2)")
    p.add_argument("--warmup", type=int, help="untimed calls per mode first (default 1)")
    p.add_argument("--model-config", choices=tuple(MODEL_CONFIGS), help="generator size (default: default)")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:1 ... (default auto)")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    p.add_argument("--max-step-seconds", type=float,
                   help="skip a mode whose estimated call time exceeds this (default none; quick 60)")
    p.add_argument("--optimizer", choices=OPTIMIZER_IMPLEMENTATIONS,
                   help="Adam kernels in the train step (default: torch's)")
    p.add_argument("--compile-kinds", type=_names(("train", "infer")),
                   help="kinds the compile mode runs for (default train,infer; quick: infer)")
    p.add_argument("--no-freezing", action="store_true", help="compile inference without inductor freezing")
    p.add_argument("--no-memory", action="store_true", help="skip the extra call that measures peak memory")
    p.add_argument("--scaling-sizes", type=_ints, help="scaling suite sizes (default 128,256,512,1024)")
    p.add_argument("--scaling-mode", help="precision of the scaling suite (default auto)")
    p.add_argument("--data-size", type=int, help="side of the data pipeline's samples (default 512)")
    p.add_argument("--data-workers", type=_ints, help="DataLoader worker counts (default 0,1,2)")
    p.add_argument("--data-samples", type=int, help="samples timed per worker count (default 24; quick 12)")
    p.add_argument("--metrics-repeats", type=int, help="timed calls per metric (default 3; quick 2)")
    p.add_argument("--video-frames", type=int, help="video suite: frames of each clip (default 8; quick 4)")
    p.add_argument("--video-model", help="video suite without --checkpoint: configs/model name of the random-weight "
                   "refining model (default quickstart_refine)")
    p.add_argument("--compare-src", help="video suite: another checkout's src/ folder, measured side by side")
    p.add_argument("--frame-sizes", type=_frames,
                   help="refine and video suites: frames HxW (default refine 1080x1920,2160x3840; video 1080x1920)")
    p.add_argument("--refine-model", help="refine suite: configs/model name of the refining model (paper_refine)")
    p.add_argument("--plain-model", help="refine suite: configs/model name of the plain network (paper)")
    p.add_argument("--estimate-native-above", type=int,
                   help="refine suite: estimate (not run) native frames above this many pixels (quick: 1920*1080)")
    p.add_argument("--compile-train", type=_model_sides,
                   help="train_compile suite: model:crop list (default quickstart:96,quickstart_refine:192)")
    p.add_argument("--checkpoint", help="precision and video suites: trained weights (precision: ours or the "
                   "original release; video: a refining checkpoint)")
    p.add_argument("--precision-sizes", type=_ints, help="precision suite sizes (default 256,512)")
    p.add_argument("--json", help="JSON output path (default bench.json)")
    p.add_argument("--markdown", help="Markdown output path (default bench.md)")
    p.add_argument("--quick", action="store_true", help="a run sized for a small CPU (see above)")
    return p


def config_from_args(args: argparse.Namespace, argv: list[str]) -> BenchConfig:
    """Defaults < ``--quick`` preset < explicit options."""
    values = dict(QUICK) if args.quick else {}
    explicit = {
        "suites": args.suite, "sizes": args.sizes, "batches": args.batches, "kinds": args.kinds,
        "modes": args.modes, "compile_kinds": args.compile_kinds, "repeats": args.repeats, "warmup": args.warmup,
        "model_config": args.model_config, "device": args.device, "threads": args.threads,
        "max_step_seconds": args.max_step_seconds, "optimizer": args.optimizer,
        "scaling_sizes": args.scaling_sizes, "scaling_mode": args.scaling_mode, "data_size": args.data_size,
        "data_workers": args.data_workers, "data_samples": args.data_samples,
        "metrics_repeats": args.metrics_repeats, "video_frames": args.video_frames, "json_path": args.json,
        "markdown_path": args.markdown, "frame_sizes": args.frame_sizes, "refine_model": args.refine_model,
        "plain_model": args.plain_model, "estimate_native_above": args.estimate_native_above,
        "compile_train": args.compile_train, "checkpoint": args.checkpoint,
        "precision_sizes": args.precision_sizes, "video_frame_sizes": args.frame_sizes,
        "video_model": args.video_model, "compare_src": args.compare_src,
    }
    values.update({k: v for k, v in explicit.items() if v is not None})
    if args.no_freezing:
        values["inference_freezing"] = False
    if args.no_memory:
        values["measure_memory"] = False
    values["command"] = "python -m bgmatting.bench " + " ".join(shlex.quote(a) for a in argv)
    return BenchConfig(**values)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args, argv)
    except ValueError as error:
        parser.error(str(error))
    report = run_benchmarks(config)
    for line in report.get("summary", {}).get("lines", []):
        print(line)
    written = [p for p in (config.json_path, config.markdown_path) if p]
    if written:
        print("results: " + ", ".join(written))
    return 1 if report.get("errors") else 0


if __name__ == "__main__":
    sys.exit(main())
