"""The C++ plain-SGD step: the Python step's numbers, bit for bit."""

from __future__ import annotations

import os
import threading
import time

import pytest
import torch
import torch.nn.functional as F
from one_run import train_one

from fmlab.trainer.fields import parse_run_config
from fmlab.trainer.training import native
from fmlab.trainer.training.steppers import NARROW_BATCH, make_stepper

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def built():
    if native.module() is None:
        if os.environ.get("CI"):
            pytest.fail("CI builds the C++ step (make test runs python -m fmlab.trainer.training.native)")
        pytest.skip("the C++ step is not built here: python -m fmlab.trainer.training.native")
    return native.module()


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


def pair(configs):
    """The same stack twice: one steps in C++, the other in Python."""
    fast, slow = make_stepper(configs, CPU), make_stepper(configs, CPU)
    assert fast.native is not None
    slow.native = None
    return fast, slow


def batches(dataset, size):
    x, y = dataset.train_x, dataset.train_y
    return list(zip(x.split(size), y.split(size), F.one_hot(y, 10).float().t().split(size, 1)))


def assert_same(fast, slow):
    assert all(torch.equal(a, b) for a, b in zip(fast.params(), slow.params()))
    assert fast.take_epoch_sums() == slow.take_epoch_sums()


@pytest.mark.parametrize(
    "arch, members, batch, thread_count",
    [
        ("base", 1, 64, 2),  # 512 samples: 8 full batches
        ("base", 1, 48, 1),  # a last batch of 32
        ("48,32", 3, 64, 2),
        ("48,32", 2, NARROW_BATCH - 1, 2),  # every layer member by member
        ("96,64,32", 2, 64, 2),  # layers wide and narrow between two hidden ones
    ],
)
def test_the_same_numbers_as_the_python_step(
    tiny_dataset, built, threads, arch, members, batch, thread_count
):
    threads(thread_count)
    configs = [parse_run_config(lr=0.05 * (m + 1), arch=arch) for m in range(members)]
    fast, slow = pair(configs)
    for index, (x, y, onehot_t) in enumerate(batches(tiny_dataset, batch)):
        want_stats = index in (0, 3)  # metric steps: their loss and statistics made in C++ and in Python
        results = [stepper.step(x, y, onehot_t, want_stats) for stepper in (fast, slow)]
        if want_stats:
            assert all(torch.equal(a, b) for a, b in zip(*results))
    assert sorted(fast._native_steps) == sorted({batch, len(tiny_dataset.train_x) % batch} - {0})
    assert_same(fast, slow)


def test_a_stack_that_loses_a_member_steps_on_in_cpp(tiny_dataset, built):
    configs = [parse_run_config(lr=lr, arch="48,32") for lr in (0.3, 0.1, 0.03)]
    fast, slow = pair(configs)
    for index, (x, y, onehot_t) in enumerate(batches(tiny_dataset, 64)):
        if index == 3:
            for stepper in (fast, slow):
                stepper.keep(torch.tensor([0, 2]))
        for stepper in (fast, slow):
            stepper.step(x, y, onehot_t, False)
    assert fast.size == 2 and fast._native_steps
    assert_same(fast, slow)


def test_a_failing_step_leaves_the_thread_count_as_it_found_it(tiny_dataset, built, threads):
    threads(2)
    stepper = make_stepper([parse_run_config(lr=0.1)], CPU)
    x, y, onehot_t = batches(tiny_dataset, NARROW_BATCH - 1)[0]  # narrowed from the first product
    with pytest.raises(RuntimeError):
        stepper.step(x[:, :700], y, onehot_t, False)
    assert torch.get_num_threads() == 2


def test_only_fp32_plain_sgd_on_the_cpu_steps_in_cpp(built):
    assert make_stepper([parse_run_config(lr=0.1)], CPU).native is not None
    assert make_stepper([parse_run_config(lr=0.1, precision="bf16")], CPU).native is None
    assert not hasattr(make_stepper([parse_run_config(lr=0.1, optimizer="adam")], CPU), "native")


def test_the_session_says_its_steps_ran_in_cpp(tiny_dataset, built):
    started = next(iter(train_one(parse_run_config(epochs=1, lr=0.1, device="cpu"), tiny_dataset)))
    assert ", steps in C++, " in started.device_name


def test_FMLAB_NATIVE_0_turns_it_off(built, monkeypatch):
    monkeypatch.setenv("FMLAB_NATIVE", "0")
    native.module.cache_clear()
    try:
        assert native.module() is None
        assert make_stepper([parse_run_config(lr=0.1)], CPU).native is None
    finally:
        monkeypatch.delenv("FMLAB_NATIVE")
        native.module.cache_clear()
    assert native.module() is not None


def test_a_build_is_kept_per_torch_and_under_FMLAB_CACHE(tmp_path, monkeypatch):
    monkeypatch.setenv("FMLAB_CACHE", str(tmp_path))
    here = native.build_directory()
    assert here.parent == tmp_path / "native"
    monkeypatch.setattr(torch, "__version__", "0.0.0")
    assert native.build_directory() != here
    native.module.cache_clear()
    try:
        assert native.module() is None  # nothing built there, and loading never compiles
    finally:
        native.module.cache_clear()


def test_a_damaged_build_is_a_warning_and_the_python_step(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("FMLAB_CACHE", str(tmp_path))
    directory = native.build_directory()
    directory.mkdir(parents=True)
    (directory / f"{native.NAME}.so").write_bytes(b"not a library")
    native.module.cache_clear()
    try:
        assert make_stepper([parse_run_config(lr=0.1)], CPU).native is None
    finally:
        native.module.cache_clear()
    assert "C++ step did not load" in caplog.text


def test_the_build_command_says_it_is_built(built, capsys):
    assert native.main() == 0
    assert "C++ step is built" in capsys.readouterr().out


def test_a_step_lets_other_python_threads_run(built, threads):
    """The app's UI thread runs while the training thread is inside a C++ step:
    the step releases the GIL. Without that, this thread would stand still for
    the whole step; with it, no pause here comes near the step's length."""
    threads(1)
    stepper = make_stepper([parse_run_config(lr=0.1, arch="2048,2048")] * 2, CPU)
    x = torch.rand(256, 784)
    y = torch.randint(0, 10, (256,))
    onehot_t = F.one_hot(y, 10).float().t()
    stepper.step(x, y, onehot_t, False)  # the plan is made outside the measured step
    go, done, span = threading.Event(), threading.Event(), []

    def train():
        go.wait()
        started = time.perf_counter()
        stepper.step(x, y, onehot_t, False)
        span.append(time.perf_counter() - started)
        done.set()

    trainer = threading.Thread(target=train)
    trainer.start()
    longest, last = 0.0, time.perf_counter()
    go.set()  # this thread is counting before the step begins
    while not done.is_set():
        now = time.perf_counter()
        longest, last = max(longest, now - last), now
    trainer.join()
    assert longest < span[0] / 4, (longest, span[0])


def test_a_failed_build_is_one_line_and_training_goes_on(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FMLAB_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", str(tmp_path / "no-compiler"))
    monkeypatch.setenv("PATH", os.environ["PATH"])  # the build puts this Python's folder first
    assert native.main() == 0
    [building, failed] = capsys.readouterr().out.splitlines()
    assert building.startswith("building fmlab's C++ step")
    assert failed.startswith("fmlab's C++ step was not built (") and "no-compiler" in failed
    assert failed.endswith("); fmlab will use its Python step")


def test_a_compiler_error_is_told_by_its_own_line():
    failed = RuntimeError(
        "Error building extension 'fmlab_native_step': [1/2] c++ -c native_step.cpp -o native_step.o\n"
        "FAILED: native_step.o\n"
        "native_step.cpp:11:10: fatal error: torch/extension.h: No such file or directory\n"
        "ninja: build stopped: subcommand failed."
    )
    assert (
        native.why(failed)
        == "native_step.cpp:11:10: fatal error: torch/extension.h: No such file or directory"
    )
