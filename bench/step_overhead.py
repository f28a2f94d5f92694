"""Where a small MLP step's time beyond its matrix products goes.

    python -m bench.step_overhead [--arch base] [--rounds 7] [--steps 300]

One member, fp32, plain SGD at batch 64, no gradient statistics (the step
fmlab takes on all but the metric steps), timed in turn for ``--rounds``
rounds (in a shuffled order each round, so no side always meets the machine
first) on random data of the real shapes:
  floor        the step's own products alone (bench.floor, fmlab's layouts)
  fmlab        fmlab's plain-SGD stepper, from Python
  from C++     the very same ATen calls in the same order, from a C++
               function (no Python between them); it must leave the
               weights bit for bit equal to fmlab's, or the bench stops
  compiled     ``torch.compile`` of the stepper's step (the compile is
               done, and reported, before timing)
If the C++ side is not faster than the Python side, the time beyond the
products is spent inside ATen's calls (each small elementwise op and
reduction), not in Python; only fewer calls or fused kernels reduce it.
The C++ side needs a compiler (``torch.utils.cpp_extension``, about 30 s
the first time, cached after); without one it is left out.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from bench.epoch_breakdown import cpu_flags
from bench.floor import floor_seconds, products
from fmlab.trainer.device import cpu_model
from fmlab.trainer.fields import parse_run_config
from fmlab.trainer.training.steppers import NARROW_BATCH, NARROW_ROWS, PlainSGD, make_stepper

BATCH = 64

# PlainSGD.step for one member without statistics, call for call (see steppers.py)
STEP_CPP = r"""
#include <torch/extension.h>
#include <ATen/Parallel.h>
using at::Tensor;

struct OneThread {
  int threads;
  OneThread() : threads(at::get_num_threads()) { at::set_num_threads(1); }
  ~OneThread() { at::set_num_threads(threads); }
};

bool is_narrow_layer(const Tensor& weight, int64_t batch, int64_t rows, int64_t few) {
  return weight.size(1) < rows || batch < few;
}

void step(std::vector<Tensor> weights, std::vector<Tensor> biases, Tensor x, Tensor y, Tensor onehot_t,
          Tensor scale, Tensor loss_sum, Tensor correct, int64_t rows, int64_t few) {
  int64_t depth = weights.size(), batch = x.size(0);
  std::vector<Tensor> outputs{x};
  for (int64_t i = 0; i < depth; ++i) {
    const Tensor &weight = weights[i], &bias = biases[i], &in = outputs.back();
    Tensor z;
    if (is_narrow_layer(weight, batch, rows, few)) {
      z = at::empty({1, weight.size(1), batch}, weight.options());
      Tensor member = z[0];
      OneThread one;
      at::addmm_out(member, bias[0].unsqueeze(1), weight[0], i == 0 ? in.t() : in[0]);
    } else if (i == 0) {
      z = at::addmm(bias.view({-1, 1}), weight.view({-1, weight.size(2)}), in.t()).view({1, -1, batch});
    } else {
      z = at::baddbmm(bias.unsqueeze(2), weight, in);
    }
    outputs.push_back(i < depth - 1 ? z.relu_() : z);
  }
  Tensor logits = outputs.back();
  Tensor log_probs = at::log_softmax(logits, 1);
  Tensor loss = log_probs.gather(1, y.view({1, 1, -1}).expand({1, 1, -1})).sum({1, 2}).neg_();
  loss_sum.add_(loss);
  correct.add_(std::get<1>(logits.max(1)).eq(y).sum(1));
  Tensor delta = log_probs.exp_().sub_(onehot_t).mul_(scale);
  for (int64_t i = depth - 1; i >= 0; --i) {
    const Tensor &weight = weights[i], &in = outputs[i];
    Tensor back;
    bool is_narrow = is_narrow_layer(weight, batch, rows, few);
    if (i > 0) {
      if (is_narrow) {
        back = at::empty(in.sizes(), in.options());
        Tensor member = back[0];
        OneThread one;
        at::mm_out(member, weight[0].t(), delta[0]);
      } else {
        back = at::bmm(weight.transpose(1, 2), delta);
      }
      back = at::threshold_backward(back, in, 0);
    }
    Tensor grad_b = delta.sum(2, false, at::kFloat);
    if (is_narrow) {
      OneThread one;
      Tensor w = weight[0];
      at::addmm_out(w, w, delta[0], i == 0 ? in : in[0].t(), 1, -1);
    } else if (i == 0) {
      Tensor flat = weight.view({-1, weight.size(2)});
      at::addmm_out(flat, flat, delta.reshape({-1, delta.size(2)}), in, 1, -1);
    } else {
      at::baddbmm_out(weights[i], weights[i], delta, in.transpose(1, 2), 1, -1);
    }
    biases[i].sub_(grad_b);
    delta = back;
  }
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) { m.def("step", &step); }
"""


def build_cpp_step():
    """The C++ step as a Python callable, or None (no compiler, or it failed)."""
    from torch.utils.cpp_extension import load_inline

    build = Path(tempfile.gettempdir()) / "fmlab-bench-step-overhead"
    build.mkdir(exist_ok=True)
    try:
        return load_inline("fmlab_bench_step", cpp_sources=[STEP_CPP], build_directory=str(build)).step
    except Exception as exc:  # no compiler, no headers: the bench goes on without this side
        print(f"from C++: left out ({str(exc).splitlines()[0][:200]})")
        return None


def cpp_caller(stepper: PlainSGD, cpp_step):
    def step(x, y, onehot_t, want_stats):
        cpp_step(stepper.weights, stepper.biases, x, y, onehot_t, stepper._scale(len(x)),
                 stepper.loss_sum, stepper.correct, NARROW_ROWS, NARROW_BATCH)  # fmt: skip

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="base")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=300, help="steps per timed epoch slice")
    args = parser.parse_args()
    config = parse_run_config(arch=args.arch, lr=0.1, device="cpu")
    cpu = torch.device("cpu")
    print(f"{cpu_model()}: {cpu_flags()}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    x = torch.rand(args.steps * BATCH, 784)
    y = torch.randint(0, 10, (len(x),))
    onehot_t = F.one_hot(y, 10).float().t()

    def epoch(step) -> None:
        for start in range(0, len(x), BATCH):
            end = start + BATCH
            step(x[start:end], y[start:end], onehot_t[:, start:end], False)

    sides = {"fmlab": lambda: epoch(make_stepper([config], cpu).step)}
    cpp_step = build_cpp_step()
    if cpp_step is not None:
        python_side, cpp_side = make_stepper([config], cpu), make_stepper([config], cpu)
        epoch(python_side.step)
        epoch(cpp_caller(cpp_side, cpp_step))
        same = all(torch.equal(a, b) for a, b in zip(python_side.params(), cpp_side.params()))
        if not same:
            raise SystemExit("the C++ step does not give fmlab's numbers: it is not the same calls")
        print("from C++: the same weights as fmlab's, bit for bit, after one slice")
        sides["from C++"] = lambda: epoch(cpp_caller(make_stepper([config], cpu), cpp_step))
    compiled_stepper = make_stepper([config], cpu)
    started = time.perf_counter()
    compiled_step = torch.compile(compiled_stepper.step)
    compiled_step(x[:BATCH], y[:BATCH], onehot_t[:, :BATCH], False)
    print(f"compiled: {time.perf_counter() - started:.1f} s to compile")
    sides["compiled"] = lambda: epoch(compiled_step)
    floor_products = products(config.model.sizes, BATCH, best=False)
    sides["floor"] = lambda: floor_seconds(floor_products, args.steps)
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(args.rounds):
        for name in random.sample(list(sides), len(sides)):
            started = time.perf_counter()
            sides[name]()
            times[name].append(time.perf_counter() - started)
    floor = statistics.median(times["floor"])
    print(f"\n{config.model.name}, {args.steps} steps a round, medians of {args.rounds} rounds:")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:<10} {median / args.steps * 1e6:7.0f} us a step   floor / this {floor / median:6.1%}")


if __name__ == "__main__":
    main()
