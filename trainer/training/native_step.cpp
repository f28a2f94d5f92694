// fmlab's plain-SGD step for a stack of fp32 MLPs on the CPU, in C++.
//
// The very same ATen calls, in the same order and on the same shapes, as
// PlainSGD's Python step (steppers.py), so the numbers are the same bit for
// bit (tests/test_native_step.py checks it): a change to one is a change to
// the other. What it saves is the time between the calls: at batch 64 each
// small op costs about as much to call from Python as to compute. A plan is
// made once per stack and batch size: every view a step reads, and the hidden
// layers' outputs, which each step overwrites instead of allocating anew. A
// metric step's loss and gradient statistics are made here too, with the calls
// of PlainSGD._stats_from_factors and Stepper._stats.

#include <ATen/Parallel.h>
#include <torch/extension.h>

using at::Tensor;

namespace {

// steppers._ThreadMode: narrow products on one thread, the rest on torch's
// count, switching only when the mode changes; torch's count is put back when
// the step ends, also when it fails.
class ThreadMode {
 public:
  ~ThreadMode() { wide(); }
  void narrow() {
    if (!restore_to_) {
      restore_to_ = at::get_num_threads();
      at::set_num_threads(1);
    }
  }
  void wide() {
    if (restore_to_) {
      at::set_num_threads(restore_to_);
      restore_to_ = 0;
    }
  }

 private:
  int restore_to_ = 0;
};

std::vector<Tensor> members_of(const Tensor& stacked) { return stacked.unbind(0); }

std::vector<Tensor> transposed(const std::vector<Tensor>& matrices) {
  std::vector<Tensor> out;
  for (const Tensor& m : matrices) out.push_back(m.t());
  return out;
}

struct Layer {
  bool first, last, narrow;
  Tensor weight, weight_t, flat_weight, bias_column;  // [M, out, in], [M, in, out], [M*out, in]
  std::vector<Tensor> member_weights, member_weights_t, member_bias_columns;
  Tensor out, flat_out;  // a hidden layer's output [M, out, B] (and [M*out, B]); none for the logits
  std::vector<Tensor> member_outs;
  Tensor delta, flat_delta;  // this layer's output gradient [M, out, B]
  std::vector<Tensor> member_deltas;
  Tensor back;  // the layer below's output gradient, written here
  std::vector<Tensor> member_backs;
  Tensor in, in_t;  // a later layer's input (the layer below's output) [M, in, B] and [M, B, in]
  std::vector<Tensor> member_ins, member_ins_t;
};

class PlainStep {
 public:
  PlainStep(const std::vector<Tensor>& weights, const std::vector<Tensor>& biases, Tensor bias_rows,
            Tensor delta_rows, const std::vector<Tensor>& deltas, int64_t batch, int64_t narrow_rows,
            int64_t narrow_batch, Tensor weight_sizes, Tensor bias_sizes, int64_t num_params)
      : bias_rows_(std::move(bias_rows)),
        delta_rows_(std::move(delta_rows)),
        batch_(batch),
        weight_sizes_(std::move(weight_sizes)),
        bias_sizes_(std::move(bias_sizes)),
        num_params_(num_params) {
    const size_t depth = weights.size();
    for (size_t i = 0; i < depth; ++i) {
      const Tensor &w = weights[i], &b = biases[i];
      Layer l;
      l.first = i == 0;
      l.last = i == depth - 1;
      l.narrow = w.size(1) < narrow_rows || batch < narrow_batch;
      l.weight = w;
      l.weight_t = w.transpose(1, 2);
      l.flat_weight = w.view({-1, w.size(2)});
      l.bias_column = l.first ? b.view({-1, 1}) : b.unsqueeze(2);
      l.member_weights = members_of(w);
      l.member_weights_t = transposed(l.member_weights);
      for (const Tensor& member : members_of(b)) l.member_bias_columns.push_back(member.unsqueeze(1));
      if (!l.last) {
        l.out = at::empty({w.size(0), w.size(1), batch}, w.options());
        l.flat_out = l.out.view({-1, batch});
        l.member_outs = members_of(l.out);
      }
      l.delta = deltas[i];
      l.flat_delta = l.delta.view({-1, batch});
      l.member_deltas = members_of(l.delta);
      if (!l.first) {
        const Layer& below = layers_.back();
        l.back = deltas[i - 1];
        l.member_backs = members_of(l.back);
        l.in = below.out;
        l.in_t = below.out.transpose(1, 2);
        l.member_ins = below.member_outs;
        l.member_ins_t = transposed(l.member_ins);
      }
      layers_.push_back(std::move(l));
    }
  }

  // Trains every member on one batch (x [B, in], onehot_t [10, B], scale
  // lr / B per member [M, 1, 1]) and returns the logits [M, 10, B].
  Tensor step(const Tensor& x, const Tensor& onehot_t, const Tensor& scale) {
    ThreadMode threads;
    Tensor logits = forward(x, threads);
    Layer& top = layers_.back();
    at::_softmax_out(top.delta, logits, 1, false);
    top.delta.sub_(onehot_t).mul_(scale);
    for (auto l = layers_.rbegin(); l != layers_.rend(); ++l) {
      if (!l->first) backward_input(*l, threads);
      update(*l, x, threads);
    }
    bias_grads_ = delta_rows_.sum(1);
    bias_rows_.sub_(bias_grads_);
    return logits;
  }

  // The last step's summed loss [M] and gradient statistics [M, 3 + 2 *
  // layers] (Stepper._stats), from its logits [M, 10, B], targets y [B], the
  // batch x it stepped on and each member's lr [M]: the calls PlainSGD._step
  // makes for them (the loss on one thread, as its last layer's narrow mode
  // has it), on the factors the step left, so valid until the next step.
  std::tuple<Tensor, Tensor> metrics(const Tensor& x, const Tensor& logits, const Tensor& y, const Tensor& lr) {
    Tensor loss;
    {
      ThreadMode one_thread;  // steppers.one_thread()
      one_thread.narrow();
      loss = at::log_softmax(logits, 1).gather(1, y.expand({logits.size(0), 1, -1})).sum({1, 2}).neg_();
    }
    std::vector<Tensor> weight_sums, bias_sums, squares;
    int64_t row = 0;
    for (const Layer& l : layers_) {
      const Tensor& inputs = l.first ? x : l.in;
      const int64_t rows = l.delta.size(0) * l.delta.size(1);
      Tensor bias_grad = bias_grads_.narrow(0, row, rows).view({l.delta.size(0), -1});
      row += rows;
      weight_sums.push_back((l.delta.sum(1) * inputs.sum(l.first ? 1 : -2)).sum(-1));
      bias_sums.push_back(bias_grad.sum(1));
      squares.push_back(weight_grad_square(l, inputs) + bias_grad.square().sum(1));
    }
    return {loss, stats(weight_sums, bias_sums, squares) / lr.view({-1, 1})};
  }

 private:
  Tensor forward(const Tensor& x, ThreadMode& threads) {
    Tensor x_t = x.t(), z;
    for (Layer& l : layers_) {
      z = l.last ? at::empty({l.weight.size(0), l.weight.size(1), batch_}, l.weight.options()) : l.out;
      if (l.narrow) {
        threads.narrow();
        std::vector<Tensor> outs = l.last ? members_of(z) : l.member_outs;
        for (size_t m = 0; m < outs.size(); ++m)
          at::addmm_out(outs[m], l.member_bias_columns[m], l.member_weights[m], l.first ? x_t : l.member_ins[m]);
      } else if (l.first) {
        threads.wide();
        at::addmm_out(l.flat_out, l.bias_column, l.flat_weight, x_t);
      } else {
        threads.wide();
        at::baddbmm_out(z, l.bias_column, l.weight, l.in);
      }
      if (!l.last) z.relu_();
    }
    return z;
  }

  void backward_input(Layer& l, ThreadMode& threads) {
    if (l.narrow) {
      threads.narrow();
      for (size_t m = 0; m < l.member_backs.size(); ++m)
        at::mm_out(l.member_backs[m], l.member_weights_t[m], l.member_deltas[m]);
    } else {
      threads.wide();
      at::bmm_out(l.back, l.weight_t, l.delta);
    }
    at::threshold_backward_out(l.back, l.back, l.in, 0);
  }

  // the update folded into the weight-gradient product: w += -1 * delta @ inputs^T
  void update(Layer& l, const Tensor& x, ThreadMode& threads) {
    if (l.narrow) {
      threads.narrow();
      for (size_t m = 0; m < l.member_weights.size(); ++m)
        at::addmm_out(l.member_weights[m], l.member_weights[m], l.member_deltas[m], l.first ? x : l.member_ins_t[m],
                      1, -1);
    } else if (l.first) {
      threads.wide();
      at::addmm_out(l.flat_weight, l.flat_weight, l.flat_delta, x, 1, -1);
    } else {
      threads.wide();
      at::baddbmm_out(l.weight, l.weight, l.delta, l.in_t, 1, -1);
    }
  }

  // PlainSGD._weight_grad_square: the squared norm of delta @ inputs^T per
  // member, from the two factors' Gram matrices
  Tensor weight_grad_square(const Layer& l, const Tensor& inputs) {
    Tensor gram_delta;
    if (l.narrow) {
      ThreadMode one_thread;
      one_thread.narrow();
      std::vector<Tensor> grams;
      for (const Tensor& delta : l.member_deltas) grams.push_back(at::mm(delta.t(), delta));
      gram_delta = at::stack(grams);
    } else {
      gram_delta = at::bmm(l.delta.transpose(1, 2), l.delta);
    }
    Tensor gram_inputs = l.first ? at::mm(inputs, inputs.t()) : at::bmm(inputs.transpose(1, 2), inputs);
    return (gram_delta * gram_inputs).sum({1, 2}).clamp_(0, c10::nullopt);
  }

  // Stepper._stats
  Tensor stats(const std::vector<Tensor>& weight_sums_per_layer, const std::vector<Tensor>& bias_sums_per_layer,
               const std::vector<Tensor>& squares) {
    Tensor weight_sums = at::stack(weight_sums_per_layer, 1), bias_sums = at::stack(bias_sums_per_layer, 1);
    Tensor per_layer = at::stack(squares, 1);
    Tensor layer_sums = weight_sums + bias_sums;
    Tensor mean = layer_sums.sum(1, true) / num_params_;
    Tensor norm = per_layer.sum(1, true).sqrt();
    Tensor tensor_means = (weight_sums / weight_sizes_ + bias_sums / bias_sizes_).sum(1, true);
    Tensor layer_means = layer_sums / (weight_sizes_ + bias_sizes_);
    return at::cat({mean, norm, tensor_means, per_layer.sqrt(), layer_means}, 1);
  }

  std::vector<Layer> layers_;
  Tensor bias_rows_, delta_rows_, bias_grads_;
  int64_t batch_;
  Tensor weight_sizes_, bias_sizes_;
  int64_t num_params_;
};

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  pybind11::class_<PlainStep>(m, "PlainStep")
      .def(pybind11::init<const std::vector<Tensor>&, const std::vector<Tensor>&, Tensor, Tensor,
                          const std::vector<Tensor>&, int64_t, int64_t, int64_t, Tensor, Tensor, int64_t>())
      // without the GIL, so the app's UI thread runs while a step computes
      .def("step", &PlainStep::step, pybind11::call_guard<pybind11::gil_scoped_release>())
      .def("metrics", &PlainStep::metrics, pybind11::call_guard<pybind11::gil_scoped_release>());
}
