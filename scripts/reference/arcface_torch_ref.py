#!/usr/bin/env python3
"""arcface_torch (insightface's PyTorch trainer) run as the reference for facerec's tests.

The reference's own code is imported from ../shared/reference/arcface_torch (or
$FACEREC_ARCFACE_TORCH); nothing of it is copied here. Subcommands:

  backbone --network r18 --seed 1 --inputs x.npy --out DIR
      Builds arcface_torch's `backbones.get_model(network)` (dropout 0, fp32, 512-d) after
      torch.manual_seed(seed), gives its BatchNorm layers the statistics of the inputs (one
      train-mode pass with cumulative averaging: a freshly initialised deep network in eval
      mode, with running statistics 0 and 1, overflows to NaN by depth 100), saves its state
      dict with torch.save (zip format) to DIR/ref.pt, and its embeddings of the inputs in eval
      mode (DIR/eval.npy) and then in train mode (batch statistics; DIR/train.npy).
  load --network r18 --weights model.safetensors --inputs x.npy --out f.npy
      Loads facerec's model file into the reference's model with load_state_dict(strict=True)
      and writes its eval-mode embeddings of the inputs.
  pfc --case DIR --margins 1.0 0.5 0.0 --sample-rate 1.0
      arcface_torch's PartialFC_V2 with its CombinedMarginLoss (scale 64) on W Gloo processes
      on the CPU (its .cuda() calls made no-ops): DIR holds emb.npy [W, B, D] (rank r's
      embeddings), labels.npy [W, B], weight.npy [C, D] (each rank takes its rows of it, as
      PartialFC_V2 splits the classes) and, for a sample rate below 1, rows<r>.npy: the classes
      of rank r's shard the sampling is to pick (facerec's), fed to PartialFC_V2.sample through
      the random keys it draws. Each rank writes loss<r>.npy, emb_grad<r>.npy and
      weight_grad<r>.npy into DIR.

Prints one JSON object on stdout (parameter count, names) for the caller's checks.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch


def reference_dir():
    here = os.path.dirname(os.path.abspath(__file__))
    default = os.path.join(here, "..", "..", "..", "shared", "reference", "arcface_torch")
    path = os.path.abspath(os.environ.get("FACEREC_ARCFACE_TORCH", default))
    if not os.path.isfile(os.path.join(path, "backbones", "iresnet.py")):
        sys.exit(f"arcface_torch not found at {path} (set FACEREC_ARCFACE_TORCH to its folder)")
    return path


def get_model(network):
    sys.path.insert(0, reference_dir())
    from backbones import get_model as reference_get_model  # noqa: E402

    return reference_get_model(network, dropout=0.0, fp16=False, num_features=512)


def pfc_rank(rank, world, case, margins, sample_rate, port):
    import torch.distributed as dist

    torch.set_num_threads(1)
    # arcface_torch moves everything to the GPU; here everything stays on the CPU.
    torch.Tensor.cuda = lambda self, *a, **k: self
    torch.nn.Module.cuda = lambda self, *a, **k: self
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    sys.path.insert(0, reference_dir())
    import partial_fc_v2
    from losses import CombinedMarginLoss

    emb = torch.from_numpy(np.load(os.path.join(case, "emb.npy"))[rank]).requires_grad_(True)
    labels = torch.from_numpy(np.load(os.path.join(case, "labels.npy"))[rank])
    weight = np.load(os.path.join(case, "weight.npy"))
    module = partial_fc_v2.PartialFC_V2(CombinedMarginLoss(64, *margins), weight.shape[1], weight.shape[0], sample_rate, False)
    start, n = module.class_start, module.num_local
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(weight[start:start + n]))
    rows_file = os.path.join(case, f"rows{rank}.npy")
    if os.path.exists(rows_file):
        rows = torch.from_numpy(np.load(rows_file))
        # sample() takes the top num_sample of torch.rand keys (positives set to 2): keys of 1 on
        # the rows facerec picked (positives among them) and 0 elsewhere make it pick those.
        def keys(size, **kwargs):
            k = torch.zeros(size)
            k[rows] = 1.0
            return k

        partial_fc_v2.torch.rand = keys
    loss = module(emb, labels.clone())
    if os.path.exists(rows_file):
        assert torch.equal(module.weight_index, rows), (module.weight_index, rows)
    loss.backward()
    np.save(os.path.join(case, f"loss{rank}.npy"), loss.detach().numpy())
    np.save(os.path.join(case, f"emb_grad{rank}.npy"), emb.grad.numpy())
    np.save(os.path.join(case, f"weight_grad{rank}.npy"), module.weight.grad.numpy())
    print(json.dumps({"rank": rank, "class_start": start, "num_local": n, "num_sample": module.num_sample}))
    dist.destroy_process_group()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["backbone", "load", "pfc"])
    ap.add_argument("--network")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--inputs")
    ap.add_argument("--weights")
    ap.add_argument("--out")
    ap.add_argument("--case")
    ap.add_argument("--margins", type=float, nargs=3, default=[1.0, 0.5, 0.0])
    ap.add_argument("--sample-rate", type=float, default=1.0)
    a = ap.parse_args()
    if a.mode == "pfc":
        import socket
        import torch.multiprocessing as mp

        world = np.load(os.path.join(a.case, "emb.npy")).shape[0]
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        mp.spawn(pfc_rank, args=(world, a.case, a.margins, a.sample_rate, port), nprocs=world, join=True)
        return
    torch.set_num_threads(int(os.environ.get("FACEREC_REF_THREADS", "2")))
    x = torch.from_numpy(np.load(a.inputs))
    if a.mode == "backbone":
        torch.manual_seed(a.seed)
        model = get_model(a.network)
        norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        for m in norms:
            m.momentum = None  # cumulative: one pass sets the running statistics to the batch's
            m.reset_running_stats()
        model.train()
        with torch.no_grad():
            model(x)
        for m in norms:
            m.momentum = 0.1
        os.makedirs(a.out, exist_ok=True)
        state = model.state_dict()
        torch.save(state, os.path.join(a.out, "ref.pt"))
        model.eval()
        with torch.no_grad():
            np.save(os.path.join(a.out, "eval.npy"), model(x).numpy())
        model.train()
        with torch.no_grad():
            np.save(os.path.join(a.out, "train.npy"), model(x).numpy())
        print(json.dumps({"tensors": len(state), "parameters": sum(p.numel() for p in model.parameters())}))
    else:
        from safetensors.torch import load_file

        model = get_model(a.network)
        result = model.load_state_dict(load_file(a.weights), strict=True)
        model.eval()
        with torch.no_grad():
            np.save(a.out, model(x).numpy())
        print(json.dumps({"missing": list(result.missing_keys), "unexpected": list(result.unexpected_keys)}))


if __name__ == "__main__":
    main()
