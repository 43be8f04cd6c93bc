// facerec-ops: libtorch operations that tch does not offer.
//
// The C API (ops.h) never lets a C++ exception cross into Rust: every entry point runs in
// facerec::guarded (guarded.h), which returns a malloc'd error string (NULL on success) that the
// caller frees with fr_ops_string_free. Tensors are passed as `at::Tensor*`, which is what tch's `C_tensor` is.

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include <ATen/ATen.h>
#include <ATen/ExpandUtils.h>
#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <c10/core/CachingDeviceAllocator.h>
#include <torch/csrc/autograd/custom_function.h>

#include "guarded.h"
#include "ops.h"

namespace {

using facerec::guarded;

at::DeviceType autocast_device(int device) { return device == 1 ? at::kCUDA : at::kCPU; }

// One (sample, channel) plane of PReLU's backward: writes the input's gradient and returns the
// plane's share of the slope's, sum over x <= 0 of x * g (in float lanes, summed in double).
// Compiled twice, for AVX2 and for the baseline, and picked when the library loads.
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target_clones("avx2", "default")))
#endif
double prelu_backward_plane(const float* __restrict x, const float* __restrict g, float* __restrict gx, int64_t n,
                            float a) {
  float acc = 0.0f;
  // Branch-free, so that it vectorises: the slope's term min(x, 0) * g is x * g where x <= 0
  // and 0 elsewhere.
#pragma omp simd reduction(+ : acc)
  for (int64_t i = 0; i < n; ++i) {
    const float xv = x[i], gv = g[i];
    gx[i] = gv * (xv > 0.0f ? 1.0f : a);
    acc += std::min(xv, 0.0f) * gv;
  }
  return acc;
}

// PReLU whose backward is one pass over the input and the incoming gradient: per (sample,
// channel) plane it writes the input's gradient and sums the slope's, where libtorch's
// backward writes a full-size slope gradient in an unvectorised two-output loop and then
// reduces it (about 5 % of a Face-ResNet training step on the CPU). Other dtypes and devices
// take libtorch's own backward.
struct PReLUFunction : public torch::autograd::Function<PReLUFunction> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight) {
    ctx->save_for_backward({x, weight});
    return at::prelu(x, weight);
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor& x = saved[0];
    const at::Tensor& weight = saved[1];
    const at::Tensor& grad = grads[0];
    if (fused(x, weight, grad)) {
      return fused_backward(x, weight, grad.contiguous());
    }
    // libtorch's own, as its autograd runs it: the kernel takes the slopes shaped [1, C, 1, ...]
    // and returns their gradient at the input's shape, to be summed over the other dimensions.
    // Under autocast the forward ran on slopes cast to the input's dtype (bf16); so does this,
    // and autograd casts the slopes' gradient back to their own dtype.
    std::vector<int64_t> shape(x.dim(), 1);
    shape[1] = weight.numel();
    const at::Tensor w = weight.scalar_type() == x.scalar_type() ? weight : weight.to(x.scalar_type());
    auto [grad_x, grad_w_full] = at::_prelu_kernel_backward(grad.to(x.scalar_type()), x, w.reshape(shape));
    return {grad_x, at::sum_to(grad_w_full, shape).reshape(weight.sizes())};
  }

  // FACEREC_PRELU_BACKWARD=libtorch takes libtorch's backward everywhere: the same sums in
  // the same order as PyTorch, for step-for-step comparisons with it (the fused one sums the
  // slopes' gradients in another order, a difference of rounding).
  static bool libtorch_only() {
    static const bool only = [] {
      const char* v = std::getenv("FACEREC_PRELU_BACKWARD");
      return v != nullptr && std::string(v) == "libtorch";
    }();
    return only;
  }

  static bool fused(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& grad) {
    return !libtorch_only() && x.device().is_cpu() && x.scalar_type() == at::kFloat && weight.scalar_type() == at::kFloat &&
           grad.scalar_type() == at::kFloat && x.dim() >= 2 && x.is_contiguous() && weight.is_contiguous() &&
           x.numel() > 0;
  }

  static torch::autograd::tensor_list fused_backward(const at::Tensor& x, const at::Tensor& weight,
                                                     const at::Tensor& grad) {
    const int64_t n = x.size(0), c = x.size(1), planes = n * c, plane = x.numel() / planes;
    const bool shared = weight.numel() == 1;
    at::Tensor grad_x = at::empty_like(x);
    at::Tensor partial = at::empty({n, c}, x.options().dtype(at::kDouble));
    const float* xs = x.const_data_ptr<float>();
    const float* gs = grad.const_data_ptr<float>();
    const float* ws = weight.const_data_ptr<float>();
    float* gxs = grad_x.mutable_data_ptr<float>();
    double* sums = partial.mutable_data_ptr<double>();
    const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(plane, 1));
    at::parallel_for(0, planes, grain, [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) {
        const int64_t at = p * plane;
        sums[p] = prelu_backward_plane(xs + at, gs + at, gxs + at, plane, ws[shared ? 0 : p % c]);
      }
    });
    at::Tensor grad_w = shared ? partial.sum().reshape(weight.sizes()) : partial.sum(0);
    return {grad_x, grad_w.to(at::kFloat)};
  }
};

}  // namespace

extern "C" {

void fr_ops_string_free(char* s) { std::free(s); }

char* fr_autocast_enter(int device, int dtype, int* state) {
  return guarded([&] {
    at::DeviceType dev = autocast_device(device);
    state[0] = at::autocast::is_autocast_enabled(dev) ? 1 : 0;
    state[1] = static_cast<int>(at::autocast::get_autocast_dtype(dev));
    at::autocast::set_autocast_enabled(dev, true);
    at::autocast::set_autocast_dtype(dev, dtype == 0 ? at::kBFloat16 : at::kHalf);
    at::autocast::increment_nesting();
  });
}

char* fr_autocast_exit(int device, const int* state) {
  return guarded([&] {
    at::DeviceType dev = autocast_device(device);
    if (at::autocast::decrement_nesting() == 0) {
      at::autocast::clear_cache();
    }
    at::autocast::set_autocast_enabled(dev, state[0] != 0);
    at::autocast::set_autocast_dtype(dev, static_cast<at::ScalarType>(state[1]));
  });
}

char* fr_grad_reset(fr_tensor* t) {
  return guarded([&] { t->mutable_grad().reset(); });
}

char* fr_prelu(fr_tensor* x, fr_tensor* weight, fr_tensor** out) {
  return guarded([&] {
    TORCH_CHECK(x->dim() >= 2 || weight->numel() == 1,
                "prelu: input of shape ", x->sizes(), " has no channel dimension for ", weight->numel(), " slopes");
    TORCH_CHECK(weight->dim() == 1 && (weight->numel() == 1 || (x->dim() >= 2 && weight->numel() == x->size(1))),
                "prelu: ", weight->numel(), " slopes for input of shape ", x->sizes(),
                ": expected one per channel (dimension 1) or a single one");
    at::Tensor y;
    if (at::GradMode::is_enabled() && (x->requires_grad() || weight->requires_grad()) && x->dim() >= 2) {
      y = PReLUFunction::apply(*x, *weight);
    } else {
      y = at::prelu(*x, *weight);
    }
    *out = new at::Tensor(std::move(y));
  });
}

char* fr_cuda_memory_stats(int device, int reset_peak, long long* stats) {
  return guarded([&] {
    if (!at::globalContext().hasCUDA()) throw std::runtime_error("libtorch sees no CUDA device");
    // The caching allocator behind every CUDA tensor (torch.cuda.memory_stats in PyTorch).
    c10::DeviceAllocator* allocator = c10::getDeviceAllocator(c10::DeviceType::CUDA);
    auto index = static_cast<c10::DeviceIndex>(device);
    const auto all = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
    c10::CachingDeviceAllocator::DeviceStats s = allocator->getDeviceStats(index);
    stats[0] = s.allocated_bytes[all].current;
    stats[1] = s.allocated_bytes[all].peak;
    stats[2] = s.reserved_bytes[all].current;
    stats[3] = s.reserved_bytes[all].peak;
    if (reset_peak) allocator->resetPeakStats(index);
  });
}

}  // extern "C"
