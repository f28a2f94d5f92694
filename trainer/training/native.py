"""The C++ plain-SGD step (native_step.cpp): built once, then loaded if there.

    python -m fmlab.trainer.training.native     # build it (``make app`` and ``make test`` do)

It makes the same ATen calls as the Python step, so it gives the same numbers
bit for bit, and is only faster (see bench/README.md). Nothing depends on it:
without a build (no compiler, another platform) or with ``FMLAB_NATIVE=0``,
fmlab trains with the Python step. A build is kept under the cache folder
(``FMLAB_CACHE``, else ``~/.cache/fmlab``) in a folder named after the source,
torch and Python, so a build never meets another torch than its own; loading
never compiles.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import logging
import os
import platform
import sys
import time
from pathlib import Path
from types import ModuleType

import torch

SOURCE = Path(__file__).with_name("native_step.cpp")
NAME = "fmlab_native_step"

log = logging.getLogger(__name__)


def build_directory() -> Path:
    """Where this source's build for this torch and Python lives."""
    digest = hashlib.sha256(SOURCE.read_bytes())
    digest.update(f"{torch.__version__} {sys.version} {platform.machine()}".encode())
    cache = Path(os.environ.get("FMLAB_CACHE") or Path.home() / ".cache" / "fmlab")
    return cache / "native" / digest.hexdigest()[:16]


def _built_file(directory: Path) -> Path | None:
    for suffix in (".so", ".pyd"):  # what torch's C++ extension tools name it on Linux and macOS, Windows
        if (path := directory / f"{NAME}{suffix}").is_file():
            return path
    return None


@functools.cache
def module() -> ModuleType | None:
    """The built step, or None: not built here, or turned off with FMLAB_NATIVE=0."""
    if os.environ.get("FMLAB_NATIVE", "1") == "0":
        return None
    built = _built_file(build_directory())
    return None if built is None else _load(built)


def _load(built: Path) -> ModuleType | None:
    spec = importlib.util.spec_from_file_location(NAME, built)
    try:
        loaded = importlib.util.module_from_spec(spec)  # an extension module loads here
        spec.loader.exec_module(loaded)
    except ImportError as exc:  # a damaged build: train on, with the Python step
        log.warning("fmlab's C++ step did not load, so the Python step trains (%s)", str(exc)[:200])
        return None
    return loaded


def build() -> Path:
    """Compile the step (about 30 s the first time); raises if it cannot."""
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # "no CUDA runtime": none needed
    from torch.utils.cpp_extension import load

    # the ninja that pip installed beside this Python, when its folder is not on PATH
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    directory = build_directory()
    directory.mkdir(parents=True, exist_ok=True)
    load(NAME, [str(SOURCE)], build_directory=str(directory), extra_cflags=["-O2"])
    built = _built_file(directory)
    if built is None:
        raise RuntimeError(f"the build left no {NAME} library in {directory}")
    return built


def main() -> int:
    """Build it if it is not built; one line either way. A failed build is not
    an error: fmlab then trains with the Python step."""
    if (built := _built_file(build_directory())) is not None:
        if _load(built) is None:
            print(f"fmlab's C++ step in {built.parent} does not load; delete that folder to build it again")
        else:
            print(f"fmlab's C++ step is built ({built})")
        return 0
    print("building fmlab's C++ step (about 30 s, once)...", flush=True)
    started = time.perf_counter()
    try:
        built = build()
    except Exception as exc:  # no compiler, no headers: training still works
        print(f"fmlab's C++ step was not built ({why(exc)[:300]}); fmlab will use its Python step")
        return 0
    print(f"built fmlab's C++ step in {time.perf_counter() - started:.0f} s ({built})")
    return 0


def why(exc: Exception) -> str:
    """The line of a failed build that says what failed (the compiler's first
    error), not the build's first command."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
    said = (line for line in lines[1:] if "error" in line.lower() or "not found" in line.lower())
    return next(said, lines[0])


if __name__ == "__main__":
    raise SystemExit(main())
