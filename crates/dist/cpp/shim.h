// The C API of facerec-dist's shim over c10d (see shim.cpp). Every function that can fail
// returns NULL on success or a malloc'd error message to free with fr_ops_string_free
// (facerec-ops).
#ifndef FACEREC_DIST_SHIM_H
#define FACEREC_DIST_SHIM_H

#include <stdint.h>

#ifdef __cplusplus
#include <ATen/Tensor.h>
typedef at::Tensor fr_tensor;
extern "C" {
#else
typedef void fr_tensor;
#endif

#define FR_BACKEND_GLOO 0
#define FR_BACKEND_NCCL 1

typedef struct fr_group fr_group;

// 1 when the shim was compiled with ProcessGroupNCCL.
int fr_has_nccl(void);

// Rendezvous through a TCPStore at master_addr:master_port (rank 0 hosts it) and create the
// process group; every wait is bounded by timeout_ms. device_index: the CUDA device (NCCL).
char* fr_group_new(const char* master_addr, uint16_t master_port, int rank, int world, int64_t timeout_ms,
                   int kind, int device_index, fr_group** out);
void fr_group_free(fr_group* g);

#define FR_REDUCE_SUM 0
#define FR_REDUCE_MAX 1

// Collectives on dense contiguous tensors, each blocking until done. op: FR_REDUCE_*.
char* fr_all_reduce(fr_group* g, fr_tensor* t, int op);
char* fr_broadcast(fr_group* g, fr_tensor* t, int root);
// outputs: n_outputs (= world size) tensors shaped like input, filled in rank order.
char* fr_all_gather(fr_group* g, fr_tensor* input, fr_tensor** outputs, int n_outputs);
char* fr_barrier(fr_group* g);

// Gradient all-reduce overlapped with the backward pass (see shim.cpp). The reducer keeps the
// group's backend alive and may outlive the group's handle.
typedef struct fr_reducer fr_reducer;
// params: n tensors that require gradients, in the order the model creates them; buckets of at
// most bucket_bytes (the first: first_bucket_bytes), filled in reverse order.
char* fr_reducer_new(fr_group* g, fr_tensor** params, int n, int64_t bucket_bytes, int64_t first_bucket_bytes,
                     fr_reducer** out);
int fr_reducer_buckets(fr_reducer* r);
// Before a backward pass: arms the hooks.
char* fr_reducer_prepare(fr_reducer* r);
// After it: launches what is left, waits for every bucket and sets each parameter's gradient to
// scale times the sum over the ranks.
char* fr_reducer_finish(fr_reducer* r, double scale);
void fr_reducer_free(fr_reducer* r);

#ifdef __cplusplus
}
#endif

#endif
