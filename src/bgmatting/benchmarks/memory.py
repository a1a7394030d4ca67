"""Peak memory of a code region: resident set size on CPU, the caching allocator's peak on CUDA.

On CPU ``tracemalloc`` does not see torch's allocations, so the process's peak RSS is used. Linux lets a
process reset its peak (``VmHWM``) by writing ``5`` to ``/proc/self/clear_refs``; the region's peak is then
``VmHWM`` after it minus ``VmRSS`` before it; the region starts with a garbage collection and
``malloc_trim`` so that freed-but-cached heap pages do not hide its allocations. Where that reset is
not available, the increase of ``ru_maxrss`` is used, which only sees peaks above the process's
earlier maximum (reported as such).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import gc
import re
import resource
from pathlib import Path

import torch

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kib(key: str) -> int | None:
    try:
        match = re.search(rf"^{key}:\s+(\d+)\s+kB", _STATUS.read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) if match else None


def _reset_peak_rss() -> bool:
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def release_free_memory() -> None:
    """Collect garbage and return free heap pages to the OS (glibc ``malloc_trim``) so RSS reflects live memory."""
    gc.collect()
    libc_name = ctypes.util.find_library("c")
    if libc_name:
        try:
            ctypes.CDLL(libc_name).malloc_trim(0)
        except (OSError, AttributeError):
            pass


class PeakMemory:
    """Context manager measuring the peak memory a region adds, in MiB (``.peak_mib`` after exit).

    ``.method`` says what was measured: ``rss_peak_increase`` (exact region peak above the RSS at entry),
    ``ru_maxrss_increase`` (increase of the lifetime peak; 0 when the region stays under an earlier peak),
    or ``cuda_max_allocated`` (peak bytes held by torch's CUDA allocator during the region, weights included).
    """

    def __init__(self, device: torch.device | str):
        self.device = torch.device(device)
        self.peak_mib: float = float("nan")
        self.method: str = ""
        self._start_kib = 0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.method = "cuda_max_allocated"
            return self
        release_free_memory()
        if _reset_peak_rss() and _status_kib("VmRSS") is not None:
            self._start_kib = _status_kib("VmRSS") or 0
            self.method = "rss_peak_increase"
        else:
            self._start_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            self.method = "ru_maxrss_increase"
        return self

    def __exit__(self, *exc) -> None:
        if self.method == "cuda_max_allocated":
            torch.cuda.synchronize(self.device)
            self.peak_mib = torch.cuda.max_memory_allocated(self.device) / 2**20
        elif self.method == "rss_peak_increase":
            self.peak_mib = max(0, (_status_kib("VmHWM") or 0) - self._start_kib) / 1024
        else:
            self.peak_mib = max(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - self._start_kib) / 1024
