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


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine() or "cpu"
