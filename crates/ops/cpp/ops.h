// The C API of facerec-ops (see ops.cpp). Every function that can fail returns NULL on success
// or a malloc'd error message to free with fr_ops_string_free.
#ifndef FACEREC_OPS_H
#define FACEREC_OPS_H

#ifdef __cplusplus
#include <ATen/Tensor.h>
typedef at::Tensor fr_tensor;
extern "C" {
#else
typedef void fr_tensor;
#endif

void fr_ops_string_free(char* s);

// Mixed precision (autocast) for ops dispatched on this thread: device 0 CPU, 1 CUDA; dtype 0
// bfloat16, 1 float16. fr_autocast_enter saves the previous setting into state[0..2] for
// fr_autocast_exit, which restores it (and clears autocast's weight cache at the outermost exit).
char* fr_autocast_enter(int device, int dtype, int* state);
char* fr_autocast_exit(int device, const int* state);

// Drops t's gradient (PyTorch's `p.grad = None`): the next backward stores its result instead
// of adding it to zeros.
char* fr_grad_reset(fr_tensor* t);

// PReLU of x ([N, C, ...], channels at dimension 1) with slopes weight ([C] or [1]), as
// at::prelu computes it, differentiable; its backward is one fused pass on contiguous float32
// CPU tensors. *out receives a new tensor (tch takes ownership).
char* fr_prelu(fr_tensor* x, fr_tensor* weight, fr_tensor** out);

// CUDA memory of device `device` from libtorch's caching allocator, in bytes: stats[0] allocated
// now, stats[1] allocated at the peak, stats[2] reserved (held from the driver) now, stats[3]
// reserved at the peak; then, when reset_peak is nonzero, the peaks restart from now. An error
// without CUDA.
char* fr_cuda_memory_stats(int device, int reset_peak, long long* stats);

#ifdef __cplusplus
}
#endif

#endif
