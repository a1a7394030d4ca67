"""Step time against resolution: seconds per megapixel should stay flat (cost linear in pixel count)."""
from __future__ import annotations

import math


def scaling_table(points: list[dict]) -> dict:
    """Per-size seconds per megapixel and the fitted exponent of time ~ pixels^k.

    ``points``: dicts with ``size`` (square side), ``batch`` and ``median_s`` (seconds per call).
    Returns ``{"rows": [{size, batch, megapixels, median_s, s_per_megapixel, relative_s_per_megapixel}],
    "exponent": k or None}``; relative values are divided by the smallest size's. k = 1 means linear
    scaling; k < 1 means small sizes under-use the machine (fixed overheads); k > 1 is worse than linear.
    """
    rows = []
    for point in sorted(points, key=lambda p: (p["size"], p["batch"])):
        megapixels = point["batch"] * point["size"] ** 2 / 1e6
        rows.append({"size": point["size"], "batch": point["batch"], "megapixels": megapixels,
                     "median_s": point["median_s"], "s_per_megapixel": point["median_s"] / megapixels})
    if rows:
        reference = rows[0]["s_per_megapixel"]
        for row in rows:
            row["relative_s_per_megapixel"] = row["s_per_megapixel"] / reference
    return {"rows": rows, "exponent": _fit_exponent(rows)}


def _fit_exponent(rows: list[dict]) -> float | None:
    """Least-squares slope of log(seconds) over log(megapixels); None with fewer than two distinct sizes."""
    xs = [math.log(r["megapixels"]) for r in rows]
    ys = [math.log(r["median_s"]) for r in rows]
    if len(set(xs)) < 2:
        return None
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    covariance = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys))
    variance = sum((x - mean_x) ** 2 for x in xs)
    return covariance / variance
