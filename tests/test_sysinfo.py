import sys
import types

from fmlab.trainer import sysinfo


def test_system_line_survives_a_half_imported_torch(monkeypatch):
    # a training thread may be importing torch while the app draws this line
    monkeypatch.setitem(sys.modules, "torch", types.ModuleType("torch"))
    line = sysinfo.SystemProbe().line("cuda")
    assert line.startswith("device cuda") and "GPU" not in line


def test_system_line_shows_memory_and_cpu():
    probe = sysinfo.SystemProbe()
    line = probe.line("cpu")
    assert "mem " in line and "device cpu" in line


def test_no_driver_means_no_cuda_without_importing_torch(monkeypatch):
    monkeypatch.setattr(sysinfo, "no_nvidia_driver", lambda: True)
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    monkeypatch.setattr("builtins.__import__", _refuse_torch(__import__))
    assert sysinfo.cuda_status() == (False, "CUDA not available (no NVIDIA driver)")


def _refuse_torch(real_import):
    def guarded(name, *args, **kwargs):
        assert name != "torch", "cuda_status imported torch"
        return real_import(name, *args, **kwargs)

    return guarded
