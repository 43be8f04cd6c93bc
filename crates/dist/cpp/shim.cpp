// facerec-dist's C++ shim over PyTorch's c10d: a TCPStore rendezvous, one process group
// (ProcessGroupGloo for CPU tensors, ProcessGroupNCCL for CUDA tensors when compiled with
// USE_C10D_NCCL) and four collectives (all-reduce by sum or max, broadcast, all-gather, barrier) that block until done or until the group's timeout.
//
// The C API (shim.h) never lets a C++ exception cross into Rust: every entry point catches
// everything and returns a malloc'd error string (NULL on success; facerec-ops' guarded.h) that
// the caller frees with fr_ops_string_free. Tensors are passed as `at::Tensor*`, which is what
// tch's `C_tensor` is.

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
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

// Waits for collectives of a backend of `kind`; Work::wait throws on failure and on timeout.
void wait_all(const std::vector<c10::intrusive_ptr<c10d::Work>>& works, std::chrono::milliseconds timeout, int kind) {
  for (const auto& work : works) {
    if (!work->wait(timeout)) {
      throw std::runtime_error("the collective was aborted");
    }
  }
#ifdef USE_C10D_NCCL
  // NCCL's wait only orders the current stream after the collective; block the host too so
  // that "returned" means "done" for both backends.
  if (kind == FR_BACKEND_NCCL) {
    c10::cuda::device_synchronize();
  }
#else
  (void)kind;
#endif
}

// Waits for one collective of the group.
void finish(const c10::intrusive_ptr<c10d::Work>& work, const fr_group* g) {
  wait_all({work}, g->timeout, g->kind);
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

char* fr_all_reduce(fr_group* g, at::Tensor* t, int op) {
  return guarded([&] {
    std::vector<at::Tensor> tensors{*t};
    c10d::AllreduceOptions opts;
    if (op == FR_REDUCE_SUM) {
      opts.reduceOp = c10d::ReduceOp::SUM;
    } else if (op == FR_REDUCE_MAX) {
      opts.reduceOp = c10d::ReduceOp::MAX;
    } else {
      throw std::runtime_error("unknown reduction " + std::to_string(op));
    }
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

// ---------------------------------------------------------------------------------------------
// Gradient all-reduce overlapped with the backward pass: PyTorch DDP's reducer, reduced to what
// facerec needs. The parameters are grouped into buckets in reverse order (the order their
// gradients become ready in a backward pass), the first bucket small so that communication
// starts early. A hook on each parameter copies its gradient into its bucket's flat buffer as
// autograd produces it; a bucket whose gradients are all in is all-reduced asynchronously,
// buckets always launched in order so that every rank issues the same collectives in the same
// sequence. fr_reducer_finish waits for them, scales the sums and writes them back as the
// parameters' gradients.

struct fr_reducer {
  struct Bucket {
    std::vector<std::size_t> members;  // parameter indices
    std::vector<int64_t> offsets;      // where each member's gradient starts in `flat`
    at::Tensor flat;
    std::size_t pending = 0;
    c10::intrusive_ptr<c10d::Work> work;
  };
  c10::intrusive_ptr<c10d::Backend> backend;
  std::chrono::milliseconds timeout{0};
  int kind = FR_BACKEND_GLOO;
  std::vector<at::Tensor> params;
  std::vector<unsigned> hooks;
  std::vector<std::pair<std::size_t, std::size_t>> where;  // parameter -> (bucket, slot)
  std::vector<bool> arrived;
  std::vector<Bucket> buckets;
  std::size_t next = 0;  // the next bucket to launch
  bool armed = false;
  std::string error;  // the first failure inside a hook, reported by finish
  std::mutex mutex;

  void launch_ready() {
    while (next < buckets.size() && buckets[next].pending == 0) {
      std::vector<at::Tensor> tensors{buckets[next].flat};
      c10d::AllreduceOptions opts;
      opts.reduceOp = c10d::ReduceOp::SUM;
      opts.timeout = timeout;
      buckets[next].work = backend->allreduce(tensors, opts);
      ++next;
    }
  }

  void on_gradient(std::size_t i, const at::TensorBase& grad) {
    std::lock_guard<std::mutex> lock(mutex);
    if (!armed || arrived[i] || !error.empty()) {
      return;
    }
    try {
      auto [b, slot] = where[i];
      Bucket& bucket = buckets[b];
      bucket.flat.narrow(0, bucket.offsets[slot], params[i].numel()).copy_(at::Tensor(grad).reshape({-1}));
      arrived[i] = true;
      if (--bucket.pending == 0) {
        launch_ready();
      }
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
};

extern "C" {

char* fr_reducer_new(fr_group* g, at::Tensor** params, int n, int64_t bucket_bytes, int64_t first_bucket_bytes,
                     fr_reducer** out) {
  *out = nullptr;
  return guarded([&] {
    auto r = std::make_unique<fr_reducer>();
    r->backend = g->backend;
    r->timeout = g->timeout;
    r->kind = g->kind;
    for (int i = 0; i < n; ++i) {
      if (!params[i]->requires_grad()) {
        throw std::runtime_error("parameter " + std::to_string(i) + " does not require a gradient");
      }
      r->params.push_back(*params[i]);
    }
    r->where.resize(r->params.size());
    r->arrived.assign(r->params.size(), false);
    // Reverse order: the last layers' gradients are ready first.
    int64_t bytes = 0;
    for (std::size_t k = r->params.size(); k-- > 0;) {
      const at::Tensor& p = r->params[k];
      int64_t size = p.numel() * static_cast<int64_t>(p.element_size());
      int64_t cap = r->buckets.size() <= 1 ? first_bucket_bytes : bucket_bytes;
      bool joins = !r->buckets.empty() && bytes + size <= cap &&
                   r->params[r->buckets.back().members[0]].scalar_type() == p.scalar_type() &&
                   r->params[r->buckets.back().members[0]].device() == p.device();
      if (!joins) {
        r->buckets.emplace_back();
        bytes = 0;
      }
      auto& bucket = r->buckets.back();
      r->where[k] = {r->buckets.size() - 1, bucket.members.size()};
      bucket.members.push_back(k);
      bucket.offsets.push_back(bytes / static_cast<int64_t>(p.element_size()));
      bytes += size;
    }
    for (auto& bucket : r->buckets) {
      const at::Tensor& first = r->params[bucket.members[0]];
      int64_t numel = 0;
      for (std::size_t m : bucket.members) {
        numel += r->params[m].numel();
      }
      bucket.flat = at::zeros({numel}, first.options().requires_grad(false));
    }
    fr_reducer* raw = r.get();
    for (std::size_t i = 0; i < raw->params.size(); ++i) {
      raw->hooks.push_back(raw->params[i].register_hook([raw, i](const at::TensorBase& grad) { raw->on_gradient(i, grad); }));
    }
    *out = r.release();
  });
}

int fr_reducer_buckets(fr_reducer* r) { return static_cast<int>(r->buckets.size()); }

char* fr_reducer_prepare(fr_reducer* r) {
  return guarded([&] {
    std::lock_guard<std::mutex> lock(r->mutex);
    for (auto& bucket : r->buckets) {
      if (bucket.work) {
        throw std::runtime_error("the previous backward pass's gradients were never collected (fr_reducer_finish)");
      }
      bucket.pending = bucket.members.size();
    }
    std::fill(r->arrived.begin(), r->arrived.end(), false);
    r->next = 0;
    r->error.clear();
    r->armed = true;
  });
}

char* fr_reducer_finish(fr_reducer* r, double scale) {
  return guarded([&] {
    std::lock_guard<std::mutex> lock(r->mutex);
    r->armed = false;
    if (!r->error.empty()) {
      for (auto& bucket : r->buckets) {
        bucket.work.reset();
      }
      throw std::runtime_error("during the backward pass: " + r->error);
    }
    // Parameters without a gradient in this pass count as zeros, as in DDP.
    for (std::size_t i = 0; i < r->params.size(); ++i) {
      if (!r->arrived[i]) {
        auto [b, slot] = r->where[i];
        auto& bucket = r->buckets[b];
        bucket.flat.narrow(0, bucket.offsets[slot], r->params[i].numel()).zero_();
      }
    }
    for (auto& bucket : r->buckets) {
      bucket.pending = 0;  // every bucket is complete now
    }
    r->launch_ready();
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    for (auto& bucket : r->buckets) {
      works.push_back(std::move(bucket.work));
    }
    wait_all(works, r->timeout, r->kind);
    at::NoGradGuard no_grad;
    for (auto& bucket : r->buckets) {
      if (scale != 1.0) {
        bucket.flat.mul_(scale);
      }
      for (std::size_t s = 0; s < bucket.members.size(); ++s) {
        at::Tensor& p = r->params[bucket.members[s]];
        at::Tensor sum = bucket.flat.narrow(0, bucket.offsets[s], p.numel()).view(p.sizes());
        if (p.grad().defined()) {
          p.mutable_grad().copy_(sum);
        } else {
          p.mutable_grad() = sum.clone();
        }
      }
    }
  });
}

void fr_reducer_free(fr_reducer* r) {
  if (r == nullptr) {
    return;
  }
  try {
    for (std::size_t i = 0; i < r->params.size() && i < r->hooks.size(); ++i) {
      r->params[i].remove_hook(r->hooks[i]);
    }
    delete r;
  } catch (...) {
  }
}

}  // extern "C"
