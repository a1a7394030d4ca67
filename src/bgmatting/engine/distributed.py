"""Process-group setup and small collective helpers for DDP training.

Launch with ``torchrun`` (which sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT) or under
Slurm (SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID, e.g. through Hydra's submitit launcher); a plain
``python -m`` run is a single process and every helper here degrades to a no-op.
"""
from __future__ import annotations

import datetime
import os
import subprocess
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else None


def _export_slurm_environment() -> None:
    """Fill torchrun-style variables from Slurm's when a job runs one task per process without torchrun."""
    ntasks = _env_int("SLURM_NTASKS")
    if os.environ.get("RANK") is not None or ntasks is None or ntasks <= 1 or _env_int("SLURM_PROCID") is None:
        return
    os.environ["RANK"] = os.environ["SLURM_PROCID"]
    os.environ["WORLD_SIZE"] = str(ntasks)
    os.environ["LOCAL_RANK"] = os.environ.get("SLURM_LOCALID", "0")
    if "MASTER_ADDR" not in os.environ:
        nodelist = os.environ.get("SLURM_JOB_NODELIST") or os.environ.get("SLURM_NODELIST", "127.0.0.1")
        try:
            first = subprocess.run(
                ["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, check=True
            ).stdout.split()[0]
        except (OSError, subprocess.CalledProcessError, IndexError):
            first = nodelist.split(",")[0]
        os.environ["MASTER_ADDR"] = first
    # A port derived from the job id so concurrent jobs on one node do not collide.
    os.environ.setdefault("MASTER_PORT", str(20000 + (_env_int("SLURM_JOB_ID") or 0) % 20000))


def default_backend() -> str:
    """``BGM_DIST_BACKEND`` if set, else nccl with CUDA and gloo without."""
    return os.environ.get("BGM_DIST_BACKEND") or ("nccl" if torch.cuda.is_available() else "gloo")


def init_distributed(backend: str = "auto", timeout_minutes: float = 30.0) -> DistContext:
    """Join the process group described by the environment (idempotent); single process -> rank 0 of 1."""
    if dist.is_available() and dist.is_initialized():
        return current_context()
    _export_slurm_environment()
    world_size = _env_int("WORLD_SIZE") or 1
    if world_size <= 1:
        return DistContext()
    rank = _env_int("RANK") or 0
    local_rank = _env_int("LOCAL_RANK") or 0
    backend = default_backend() if backend == "auto" else backend
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(
        backend=backend, rank=rank, world_size=world_size, timeout=datetime.timedelta(minutes=timeout_minutes)
    )
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank)


def current_context() -> DistContext:
    """The context of an already-initialised process group (rank 0 of 1 when there is none)."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistContext()
    return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=_env_int("LOCAL_RANK") or 0)


def device_for(ctx: DistContext, device: str = "auto") -> torch.device:
    """``auto``: this process's GPU (cuda:LOCAL_RANK) when CUDA exists, else CPU; explicit names pass through."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", ctx.local_rank % torch.cuda.device_count())
        return torch.device("cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and resolved.index is None:
        return torch.device("cuda", ctx.local_rank % torch.cuda.device_count())
    return resolved


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s object on every rank (the object itself without a process group)."""
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=src)
    return holder[0]


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's object, in rank order (``[obj]`` without a process group)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def wrap_module(
    module: nn.Module, ctx: DistContext, device: torch.device, sync_batchnorm: bool = False
) -> nn.Module:
    """DistributedDataParallel around ``module`` for multi-process runs (optionally with SyncBatchNorm)."""
    if not ctx.is_distributed:
        return module
    if sync_batchnorm:
        module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=device_ids)


def unwrap(module: nn.Module) -> nn.Module:
    """The bare module inside DDP / torch.compile wrappers."""
    while True:
        if isinstance(module, nn.parallel.DistributedDataParallel):
            module = module.module
        elif hasattr(module, "_orig_mod"):
            module = module._orig_mod
        else:
            return module


def destroy() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
