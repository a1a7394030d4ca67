"""A description of the machine and software a benchmark ran on, stored with its results."""
from __future__ import annotations

import os
import platform
import re
from pathlib import Path

import torch

from bgmatting.runtime import cpu_has_native_bf16

_CPU_FLAGS_OF_INTEREST = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "fma")
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_PROC_BIND",
                     "KMP_AFFINITY", "KMP_BLOCKTIME")


def _cpuinfo() -> tuple[str, list[str]]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown", []
    model = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    flags = re.search(r"^flags\s*:\s*(.+)$", text, re.MULTILINE)
    present = set(flags.group(1).split()) if flags else set()
    return (model.group(1).strip() if model else "unknown"), [f for f in _CPU_FLAGS_OF_INTEREST if f in present]


def describe_environment(device: torch.device) -> dict:
    """Machine, library versions and thread settings as a JSON-ready dict."""
    cpu_model, cpu_flags = _cpuinfo()
    info = {
        "device": str(device),
        "cpu": cpu_model,
        "cpu_flags": cpu_flags,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "onednn_native_bf16": cpu_has_native_bf16(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "thread_env": {k: os.environ[k] for k in _THREAD_VARIABLES if k in os.environ},
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
    return info
