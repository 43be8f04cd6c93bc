// facerec-dist's C++ shim over PyTorch's c10d: a TCPStore rendezvous, one process group
// (ProcessGroupGloo for CPU tensors, ProcessGroupNCCL for CUDA tensors when compiled with
// USE_C10D_NCCL) and four collectives that block until done or until the group's timeout.
//
// The C API (shim.h) never lets a C++ exception cross into Rust: every entry point catches
// everything and returns a malloc'd error string (NULL on success; facerec-ops' guarded.h) that
// the caller frees with fr_ops_string_free. Tensors are passed as `at::Tensor*`, which is what
// tch's `C_tensor` is.

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/Types.hpp>
#include <torch/csrc/distributed/c10d/Work.hpp>

#ifdef USE_C10D_NCCL
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include "guarded.h"  // from facerec-ops (DEP_FACEREC_OPS_INCLUDE)
#include "shim.h"

struct fr_group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> backend;
  std::chrono::milliseconds timeout;
  int rank;
  int world;
  int kind;
  int device_index;
};

namespace {

using facerec::guarded;

// Waits for a collective; Work::wait throws on failure and on timeout.
void finish(const c10::intrusive_ptr<c10d::Work>& work, const fr_group* g) {
  if (!work->wait(g->timeout)) {
    throw std::runtime_error("the collective was aborted");
  }
#ifdef USE_C10D_NCCL
  // NCCL's wait only orders the current stream after the collective; block the host too so
  // that "returned" means "done" for both backends.
  if (g->kind == FR_BACKEND_NCCL) {
    c10::cuda::device_synchronize();
  }
#endif
}

bool is_loopback(const std::string& host) {
  return host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1";
}

// The network device Gloo binds to: GLOO_SOCKET_IFNAME when set (as in PyTorch), the loopback
// address for a single-machine job, else the address this machine's hostname resolves to.
std::shared_ptr<::gloo::transport::Device> gloo_device(const std::string& master_addr) {
  if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname != nullptr && ifname[0] != '\0') {
    return c10d::ProcessGroupGloo::createDeviceForInterface(ifname);
  }
  if (is_loopback(master_addr)) {
    return c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1");
  }
  return c10d::ProcessGroupGloo::createDefaultDevice();
}

}  // namespace

extern "C" {

int fr_has_nccl(void) {
#ifdef USE_C10D_NCCL
  return 1;
#else
  return 0;
#endif
}


char* fr_group_new(const char* master_addr, uint16_t master_port, int rank, int world, int64_t timeout_ms,
                   int kind, int device_index, fr_group** out) {
  *out = nullptr;
  return guarded([&] {
    auto group = std::make_unique<fr_group>();
    group->timeout = std::chrono::milliseconds(timeout_ms);
    group->rank = rank;
    group->world = world;
    group->kind = kind;
    group->device_index = device_index;

    c10d::TCPStoreOptions store_opts;
    store_opts.port = master_port;
    store_opts.isServer = rank == 0;
    store_opts.numWorkers = static_cast<std::size_t>(world);
    store_opts.waitWorkers = true;
    store_opts.timeout = group->timeout;
    std::string addr(master_addr);
    group->store = c10::make_intrusive<c10d::TCPStore>(addr, store_opts);

    if (kind == FR_BACKEND_GLOO) {
      auto opts = c10d::ProcessGroupGloo::Options::create(group->timeout);
      opts->devices.push_back(gloo_device(addr));
      group->backend = c10::make_intrusive<c10d::ProcessGroupGloo>(group->store, rank, world, opts);
    } else if (kind == FR_BACKEND_NCCL) {
#ifdef USE_C10D_NCCL
      c10::cuda::set_device(static_cast<c10::DeviceIndex>(device_index));
      auto opts = c10d::ProcessGroupNCCL::Options::create();
      opts->timeout = group->timeout;
      group->backend = c10::make_intrusive<c10d::ProcessGroupNCCL>(group->store, rank, world, opts);
#else
      throw std::runtime_error("this build of facerec-dist has no NCCL (its headers were not found at build time)");
#endif
    } else {
      throw std::runtime_error("unknown backend kind " + std::to_string(kind));
    }
    *out = group.release();
  });
}

void fr_group_free(fr_group* g) {
  if (g == nullptr) {
    return;
  }
  try {
    delete g;
  } catch (...) {
    // A destructor that throws has nothing left to tell anyone.
  }
}

char* fr_all_reduce_sum(fr_group* g, at::Tensor* t) {
  return guarded([&] {
    std::vector<at::Tensor> tensors{*t};
    c10d::AllreduceOptions opts;
    opts.reduceOp = c10d::ReduceOp::SUM;
    opts.timeout = g->timeout;
    finish(g->backend->allreduce(tensors, opts), g);
  });
}

char* fr_broadcast(fr_group* g, at::Tensor* t, int root) {
  return guarded([&] {
    std::vector<at::Tensor> tensors{*t};
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    opts.rootTensor = 0;
    opts.timeout = g->timeout;
    finish(g->backend->broadcast(tensors, opts), g);
  });
}

char* fr_all_gather(fr_group* g, at::Tensor* input, at::Tensor** outputs, int n_outputs) {
  return guarded([&] {
    std::vector<at::Tensor> inputs{*input};
    std::vector<std::vector<at::Tensor>> out(1);
    for (int i = 0; i < n_outputs; ++i) {
      out[0].push_back(*outputs[i]);
    }
    c10d::AllgatherOptions opts;
    opts.timeout = g->timeout;
    finish(g->backend->allgather(out, inputs, opts), g);
  });
}

char* fr_barrier(fr_group* g) {
  return guarded([&] {
    c10d::BarrierOptions opts;
    opts.timeout = g->timeout;
    if (g->kind == FR_BACKEND_NCCL) {
      opts.device_ids = {g->device_index};
    }
    finish(g->backend->barrier(opts), g);
  });
}

}  // extern "C"
