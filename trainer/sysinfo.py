"""A one-line view of the machine while a run trains: device, memory, load.

Reads /proc (Linux) and asks torch about CUDA only when torch is already
imported, so a caller on a UI thread never pays for importing it here.
Anything unreadable is left out of the line rather than raised.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class CpuTimes:
    busy: int
    total: int


def read_cpu_times(path: str = "/proc/stat") -> CpuTimes | None:
    """Cumulative busy and total jiffies over all CPUs."""
    try:
        with open(path, encoding="ascii") as handle:
            fields = handle.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    values = [int(v) for v in fields[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return CpuTimes(busy=sum(values) - idle, total=sum(values))


def process_rss_bytes(path: str = "/proc/self/statm") -> int | None:
    try:
        with open(path, encoding="ascii") as handle:
            resident_pages = int(handle.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def total_memory_bytes(path: str = "/proc/meminfo") -> int | None:
    try:
        with open(path, encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def human_bytes(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1000:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"


def no_nvidia_driver() -> bool:
    """True when this is Linux and no NVIDIA driver is loaded: then CUDA is
    certainly unavailable and there is no need to import torch to say so."""
    return sys.platform.startswith("linux") and not (
        os.path.exists("/proc/driver/nvidia") or os.path.exists("/dev/nvidia0")
    )


def cuda_status() -> tuple[bool, str]:
    """Whether CUDA can be used, and a short description. Imports torch
    (seconds, holding the interpreter) unless the driver check settles it."""
    if no_nvidia_driver():
        return False, "CUDA not available (no NVIDIA driver)"
    try:
        import torch
    except ImportError:
        return False, "torch is not installed"
    if not torch.cuda.is_available():
        return False, "CUDA not available"
    return True, f"CUDA available: {torch.cuda.get_device_name(0)}"


def _gpu_part() -> str:
    # torch may be half-imported by a training thread right now: only look at
    # a fully imported torch whose CUDA is already in use
    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None)
    is_initialized = getattr(cuda, "is_initialized", None)
    if is_initialized is None or not is_initialized():
        return ""
    text = f"GPU mem {human_bytes(torch.cuda.memory_allocated())}"
    try:
        text += f", GPU load {torch.cuda.utilization()}%"
    except Exception:  # utilization needs pynvml; its absence is not an error
        pass
    return text


class SystemProbe:
    """The app's window on the machine; tests swap in a fixed stand-in."""

    def __init__(self) -> None:
        self._last_cpu = read_cpu_times()

    def cuda_status(self) -> tuple[bool, str]:
        return cuda_status()

    def cpu_percent(self) -> float | None:
        """Load over all CPUs since the previous call."""
        now = read_cpu_times()
        before, self._last_cpu = self._last_cpu, now
        if now is None or before is None or now.total <= before.total:
            return None
        return 100.0 * (now.busy - before.busy) / (now.total - before.total)

    def line(self, device: str | None) -> str:
        parts = [f"device {device or '-'}"]
        rss, total = process_rss_bytes(), total_memory_bytes()
        if rss is not None:
            parts.append(f"mem {human_bytes(rss)}" + (f" of {human_bytes(total)}" if total else ""))
        cpu = self.cpu_percent()
        if cpu is not None:
            parts.append(f"CPU {cpu:.0f}% of {os.cpu_count() or '?'} cores")
        gpu = _gpu_part() if device == "cuda" else ""
        if gpu:
            parts.append(gpu)
        return " · ".join(parts)
