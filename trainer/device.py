"""Which device a run trains on, and its name for people."""

from __future__ import annotations

import platform

import torch

from fmlab.trainer.config import ConfigError


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when available; asking for CUDA without it is a ConfigError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", "cuda was requested but no CUDA device is available")
    return torch.device(name)


def cpu_model() -> str:
    """The CPU's model name (Linux's /proc/cpuinfo), else what platform knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def device_name(device: torch.device, threads: str) -> str:
    """The GPU's name, or the CPU's model and ``threads``, how many threads
    torch trains with (ThreadGovernor.describe)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_model()}, {threads}"
