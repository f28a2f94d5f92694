"""Where a small MLP step's time beyond its matrix products goes.

    python -m bench.step_overhead [--arch base] [--rounds 7] [--steps 300] [--against FILE]

One member, fp32, plain SGD at batch 64, no gradient statistics (the step
fmlab takes on all but the metric steps), timed in turn for ``--rounds``
rounds (in a shuffled order each round, so no side always meets the machine
first) on random data of the real shapes; each round makes its stepper before
its timer starts and ends by taking the slice's loss and accuracy sums (a step
leaves them to be summed in bulk):
  floor        the step's own products alone (bench.floor, fmlab's layouts)
  fmlab        fmlab's plain-SGD stepper, from Python
  from C++     the very same ATen calls in the same order, from a C++
               function (no Python between them); it must leave the
               weights and sums bit for bit equal to fmlab's, or the
               bench stops
  compiled     ``torch.compile`` of the stepper's step (the compile is
               done, and reported, before timing)
  FILE         with ``--against FILE``: the stepper of another version of
               ``steppers.py`` (``git show REV:trainer/training/steppers.py
               > FILE``), so two versions meet the machine in one process
If the C++ side is not faster than the Python side, the time beyond the
products is spent inside ATen's calls (each small elementwise op and
reduction), not in Python; only fewer calls or fused kernels reduce it.
The C++ side needs a compiler (``torch.utils.cpp_extension``, about 30 s
the first time, cached after); without one it is left out.
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from bench.epoch_breakdown import cpu_flags
from bench.floor import floor_seconds, products
from fmlab.trainer.device import cpu_model
from fmlab.trainer.fields import parse_run_config
from fmlab.trainer.training.steppers import NARROW_BATCH, NARROW_ROWS, SETTLE_EVERY, PlainSGD, make_stepper

BATCH = 64

# PlainSGD.step for one member without statistics, call for call (see steppers.py)
STEP_CPP = r"""
#include <torch/extension.h>
#include <ATen/Parallel.h>
using at::Tensor;

// steppers._ThreadMode: one thread from the first narrow product until the next wide one
struct ThreadMode {
  int restore_to = 0;
  void narrow() { if (!restore_to) { restore_to = at::get_num_threads(); at::set_num_threads(1); } }
  void wide() { if (restore_to) { at::set_num_threads(restore_to); restore_to = 0; } }
};

std::vector<Tensor> kept_logits, kept_y;  // Stepper._unsummed

void sum_kept(Tensor loss_sum, Tensor correct) {
  if (kept_logits.empty()) return;
  Tensor logits = at::cat(kept_logits, 2), y = at::cat(kept_y);
  kept_logits.clear();
  kept_y.clear();
  int threads = at::get_num_threads();
  at::set_num_threads(1);
  loss_sum.add_(at::log_softmax(logits, 1).gather(1, y.expand({logits.size(0), 1, -1})).sum({1, 2}).neg_());
  correct.add_(std::get<1>(logits.max(1)).eq(y).sum(1));
  at::set_num_threads(threads);
}

bool is_narrow_layer(const Tensor& weight, int64_t batch, int64_t rows, int64_t few) {
  return weight.size(1) < rows || batch < few;
}

void step(std::vector<Tensor> weights, std::vector<Tensor> biases, Tensor bias_rows, Tensor delta_rows,
          std::vector<Tensor> deltas, Tensor x, Tensor y, Tensor onehot_t, Tensor scale, Tensor loss_sum,
          Tensor correct, int64_t rows, int64_t few, int64_t settle_every) {
  int64_t depth = weights.size(), batch = x.size(0);
  ThreadMode threads;
  std::vector<Tensor> outputs{x};
  for (int64_t i = 0; i < depth; ++i) {
    const Tensor &weight = weights[i], &bias = biases[i], &in = outputs.back();
    Tensor z;
    if (is_narrow_layer(weight, batch, rows, few)) {
      z = at::empty({1, weight.size(1), batch}, weight.options());
      threads.narrow();
      Tensor member = z[0];
      at::addmm_out(member, bias[0].unsqueeze(1), weight[0], i == 0 ? in.t() : in[0]);
    } else if (i == 0) {
      threads.wide();
      z = at::addmm(bias.view({-1, 1}), weight.view({-1, weight.size(2)}), in.t()).view({1, -1, batch});
    } else {
      threads.wide();
      z = at::baddbmm(bias.unsqueeze(2), weight, in);
    }
    outputs.push_back(i < depth - 1 ? z.relu_() : z);
  }
  Tensor logits = outputs.back();
  kept_logits.push_back(logits);
  kept_y.push_back(y);
  if ((int64_t)kept_logits.size() == settle_every) sum_kept(loss_sum, correct);
  at::sub_out(deltas[depth - 1], at::softmax(logits, 1), onehot_t).mul_(scale);
  for (int64_t i = depth - 1; i >= 0; --i) {
    const Tensor &weight = weights[i], &in = outputs[i], &delta = deltas[i];
    bool is_narrow = is_narrow_layer(weight, batch, rows, few);
    if (i > 0) {
      Tensor back = deltas[i - 1];
      if (is_narrow) {
        threads.narrow();
        Tensor member = back[0];
        at::mm_out(member, weight[0].t(), delta[0]);
      } else {
        threads.wide();
        at::bmm_out(back, weight.transpose(1, 2), delta);
      }
      at::threshold_backward_out(back, back, in, 0);
    }
    if (is_narrow) {
      threads.narrow();
      Tensor w = weight[0];
      at::addmm_out(w, w, delta[0], i == 0 ? in : in[0].t(), 1, -1);
    } else if (i == 0) {
      threads.wide();
      Tensor flat = weight.view({-1, weight.size(2)});
      at::addmm_out(flat, flat, delta.reshape({-1, delta.size(2)}), in, 1, -1);
    } else {
      threads.wide();
      at::baddbmm_out(weights[i], weights[i], delta, in.transpose(1, 2), 1, -1);
    }
  }
  bias_rows.sub_(delta_rows.sum(1));
  threads.wide();
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("step", &step);
  m.def("sum_kept", &sum_kept);
}
"""


def build_cpp_module():
    """The C++ step and its sums, or None (no compiler, or it failed)."""
    from torch.utils.cpp_extension import load_inline

    build = Path(tempfile.gettempdir()) / "fmlab-bench-step-overhead"
    build.mkdir(exist_ok=True)
    try:
        return load_inline("fmlab_bench_step", cpp_sources=[STEP_CPP], build_directory=str(build))
    except Exception as exc:  # no compiler, no headers: the bench goes on without this side
        print(f"from C++: left out ({str(exc).splitlines()[0][:200]})")
        return None


def cpp_caller(stepper: PlainSGD, cpp_module):
    deltas = stepper._deltas(BATCH)

    def step(x, y, onehot_t, want_stats):
        cpp_module.step(stepper.weights, stepper.biases, stepper.bias_rows, deltas.rows, list(deltas.layers),
                        x, y, onehot_t, stepper._scale(len(x)), stepper.loss_sum, stepper.correct,
                        NARROW_ROWS, NARROW_BATCH, SETTLE_EVERY)  # fmt: skip

    return step


def other_version_side(path: Path, config, epoch):
    """A side training with the stepper of another version's steppers.py."""
    spec = importlib.util.spec_from_file_location("other_steppers", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)

    def made():
        stepper = module.make_stepper([config], torch.device("cpu"))
        return lambda: epoch(stepper.step, stepper.take_epoch_sums)

    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="base")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=300, help="steps per timed epoch slice")
    parser.add_argument("--against", type=Path, help="another version's steppers.py, timed as a side too")
    args = parser.parse_args()
    config = parse_run_config(arch=args.arch, lr=0.1, device="cpu")
    cpu = torch.device("cpu")
    print(f"{cpu_model()}: {cpu_flags()}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    x = torch.rand(args.steps * BATCH, 784)
    y = torch.randint(0, 10, (len(x),))
    batches = list(zip(x.split(BATCH), y.split(BATCH), F.one_hot(y, 10).float().t().split(BATCH, 1)))

    def epoch(step, take_sums) -> None:
        for xb, yb, onehot_b in batches:
            step(xb, yb, onehot_b, False)
        take_sums()

    def fmlab_side():
        stepper = make_stepper([config], cpu)
        return lambda: epoch(stepper.step, stepper.take_epoch_sums)

    # each side is made (a new stepper) before its round's timer starts
    sides = {"fmlab": fmlab_side}
    if args.against:
        sides[args.against.name] = other_version_side(args.against, config, epoch)
    cpp_module = build_cpp_module()
    if cpp_module is not None:
        python_side, cpp_side = make_stepper([config], cpu), make_stepper([config], cpu)
        epoch(python_side.step, python_side._sum_kept_logits)  # summed, not taken (that zeroes them)
        epoch(
            cpp_caller(cpp_side, cpp_module), lambda: cpp_module.sum_kept(cpp_side.loss_sum, cpp_side.correct)
        )
        same = all(torch.equal(a, b) for a, b in zip(python_side.params(), cpp_side.params()))
        sums = [(side.loss_sum, side.correct) for side in (python_side, cpp_side)]
        if not same or not all(torch.equal(a, b) for a, b in zip(*sums)):
            raise SystemExit("the C++ step does not give fmlab's numbers: it is not the same calls")
        print("from C++: the same weights and sums as fmlab's, bit for bit, after one slice")

        def cpp_side_made():
            stepper = make_stepper([config], cpu)
            step = cpp_caller(stepper, cpp_module)
            return lambda: epoch(step, lambda: cpp_module.sum_kept(stepper.loss_sum, stepper.correct))

        sides["from C++"] = cpp_side_made
    compiled_stepper = make_stepper([config], cpu)
    started = time.perf_counter()
    compiled_step = torch.compile(compiled_stepper.step)
    compiled_step(*batches[0], False)
    print(f"compiled: {time.perf_counter() - started:.1f} s to compile")
    sides["compiled"] = lambda: lambda: epoch(compiled_step, compiled_stepper.take_epoch_sums)
    floor_products = products(config.model.sizes, BATCH, best=False)
    sides["floor"] = lambda: lambda: floor_seconds(floor_products, args.steps)
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(args.rounds):
        for name in random.sample(list(sides), len(sides)):
            run = sides[name]()
            started = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - started)
    floor = statistics.median(times["floor"])
    print(f"\n{config.model.name}, {args.steps} steps a round, medians of {args.rounds} rounds:")
    width = max(map(len, times))
    for name, values in times.items():
        median = statistics.median(values)
        print(
            f"{name:<{width}} {median / args.steps * 1e6:7.0f} us a step   floor / this {floor / median:6.1%}"
        )


if __name__ == "__main__":
    main()
