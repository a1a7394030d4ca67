"""The report's sentences for the refine, train_compile and precision suites, with the targets they measure:
a refining model >= 10x faster per 1080p frame than the native full frame and faster than the 512 crop;
reduced-precision inference only within the alpha tolerance of :mod:`bgmatting.runtime`."""
from __future__ import annotations

REFINE_TARGET = 10.0  # refine vs the native full frame, per 1080p frame


def _met(condition: bool) -> str:
    return "met" if condition else "not met"


def refine_lines(refine: dict) -> list[str]:
    """One sentence per frame size; the 1080p one states both targets."""
    lines = []
    for frame in refine.get("frames", []):
        methods = frame["methods"]
        native, original, refined = methods["native"], methods["original"], methods["refine"]
        text = (f"{frame['width']}x{frame['height']} frame, {refine['precision']}: refine {refined['seconds']:.2f} s "
                f"({refined['gflop']:.0f} GFLOP), native full frame {native['seconds']:.1f} s ({native['gflop']:.0f} "
                f"GFLOP, {native['note']}), 512 crop {original['seconds']:.2f} s: refine "
                f"{frame['speedup_vs_native']:.1f}x faster than native, {frame['speedup_vs_original']:.2f}x than the crop")
        if frame["height"] == 1080:
            text += (f" (targets >= {REFINE_TARGET:g}x: {_met(frame['speedup_vs_native'] >= REFINE_TARGET)}; "
                     f"faster than the crop: {_met(frame['speedup_vs_original'] > 1.0)})")
        lines.append(text + ".")
    if refine.get("load_average"):
        start, end = refine["load_average"]["start"], refine["load_average"]["end"]
        lines.append(f"Machine load (1-min average) during the refine suite: {start[0]:.1f} at the start, "
                     f"{end[0]:.1f} at the end.")
    return lines


def train_compile_lines(rows: list[dict]) -> list[str]:
    return [f"Training step {row['model']} {row['side']}px batch {row['batch']} ({row['precision']}): torch.compile "
            f"{row['compiled_s']:.3f} s vs eager {row['eager_s']:.3f} s ({row['speedup']:.2f}x; compilation "
            f"{row['compile_s']:.0f} s, max Δα of the first step {row['alpha_max_abs_diff']:.1e})." for row in rows]


def precision_lines(precision: dict) -> list[str]:
    tolerance = precision["tolerance"]
    lines = []
    for name, worst in precision["max_abs_diff"].items():
        verdict = "within" if precision["within"][name] else "beyond"
        allowed = "may pick" if precision["runtime_allows"][name] else "does not pick"
        lines.append(f"{name} inference, {precision['model']}: max |Δα| {worst:.1e} vs fp32, {verdict} the "
                     f"tolerance {tolerance:g}; precision=auto {allowed} {name} for inference (runtime table: "
                     f"{precision['runtime_table'].get(name, 'not measured')}).")
    return lines


def target_lines(report: dict) -> list[str]:
    """The sentences of whichever of the three suites ran."""
    lines = refine_lines(report["refine"]) if report.get("refine") else []
    lines += train_compile_lines(report.get("train_compile") or [])
    if report.get("precision"):
        lines += precision_lines(report["precision"])
    return lines
