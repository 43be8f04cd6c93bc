#!/usr/bin/env python3
"""arcface_torch's training loop, step for step, as the reference for facerec's
(scripts/arcface_step_for_step.sh runs both). arcface_torch's own code is imported from
../shared/reference/arcface_torch (or $FACEREC_ARCFACE_TORCH); what train_v2.py does around it
is repeated here line for line, on the CPU.

  init --network r18 --rec lfw.rec --seed 2048 --out init.safetensors
      arcface_torch's initial weights, seeded: its backbone (get_model, dropout 0, fp32, 512-d)
      and PartialFC_V2's class weights (normal, std 0.01), in one safetensors file with the
      backbone's state-dict names and `head.fc.weight` (whole, [C, 512], C the identities of
      the .rec or --classes): facerec's `[model] init` starts a run from it, backbone and
      classifier.
  train --rec lfw.rec --init init.safetensors --world 2 --batch 8 --steps 50 --lr 0.1 --out curve.json
      W Gloo processes on the CPU (arcface_torch's .cuda() calls made no-ops): the backbone in
      DistributedDataParallel (broadcast_buffers False, as train_v2.py; without its
      fp16_compress_hook, which rounds the averaged gradients to float16 on the wire),
      PartialFC_V2 with CombinedMarginLoss(64, 1.0, 0.5, 0.0) and sample rate 1, SGD(lr,
      momentum 0.9, weight decay 5e-4 on every parameter), PolynomialLRWarmup(warm-up 0,
      total = steps), loss.backward(), clip_grad_norm_(backbone, 5), opt.step(),
      opt.zero_grad(), scheduler.step(). The batches are the .rec's images in file order, no
      flip: step s, rank r takes images s*W*B + r*B .. + B (facerec's layout with
      `[data] shuffle = false, flip = false`), decoded with OpenCV and normalised as
      torchvision's ToTensor and Normalize(0.5, 0.5) do. Writes rank 0's loss of every step as
      JSON lines ({"step": s, "loss": ...}, as facerec's steps.jsonl; `facerec plot` reads both).
      --threads sets each process's intra-op threads (the reference against itself with
      another float reduction order).
"""
import argparse
import json
import os
import socket
import struct
import sys
import warnings

import numpy as np
import torch


def reference_dir():
    here = os.path.dirname(os.path.abspath(__file__))
    default = os.path.join(here, "..", "..", "..", "shared", "reference", "arcface_torch")
    path = os.path.abspath(os.environ.get("FACEREC_ARCFACE_TORCH", default))
    if not os.path.isfile(os.path.join(path, "train_v2.py")):
        sys.exit(f"arcface_torch not found at {path} (set FACEREC_ARCFACE_TORCH to its folder)")
    return path


def import_reference():
    sys.path.insert(0, reference_dir())
    # arcface_torch's PolynomialLRWarmup passes `verbose=` to LRScheduler.__init__, which
    # PyTorch 2.13 no longer takes (it only printed): drop it, nothing else changes.
    base_init = torch.optim.lr_scheduler.LRScheduler.__init__

    def init(self, optimizer, last_epoch=-1, verbose=None):
        base_init(self, optimizer, last_epoch=last_epoch)

    torch.optim.lr_scheduler.LRScheduler.__init__ = init
    warnings.simplefilter("ignore")


def read_rec(path):
    """The images of an insightface RecordIO set, in file order: (payload bytes, label).

    dmlc-core's framing (magic, length with cflag, payload padded to 4 bytes) and mxnet's
    IRHeader (flag, label, id, id2), read independently of facerec's reader."""
    idx = {}
    with open(os.path.splitext(path)[0] + ".idx") as f:
        for line in f:
            key, offset = line.split("\t")
            idx[int(key)] = int(offset)
    data = open(path, "rb").read()

    def record(key):
        pos, out = idx[key], b""
        while True:
            magic, lrec = struct.unpack_from("<II", data, pos)
            assert magic == 0xCED7230A, f"{path}: bad magic at {pos}"
            cflag, length = lrec >> 29, lrec & ((1 << 29) - 1)
            out += data[pos + 8:pos + 8 + length]
            pos += 8 + length + (-length % 4)
            if cflag in (0, 3):
                return out
            out += struct.pack("<I", 0xCED7230A)

    def unpack(rec):
        flag, label, _, _ = struct.unpack_from("<IfQQ", rec, 0)
        labels = struct.unpack_from(f"<{flag}f", rec, 24) if flag > 0 else (label,)
        return labels, rec[24 + 4 * flag:]

    (first, _), _ = unpack(record(0))
    images = []
    for key in range(1, int(first)):
        labels, payload = unpack(record(key))
        images.append((payload, int(labels[0])))
    return images


def batch(images, indices):
    import cv2

    x, y = [], []
    for i in indices:
        payload, label = images[i]
        bgr = cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_COLOR)
        x.append(torch.from_numpy(np.ascontiguousarray(bgr[:, :, ::-1].transpose(2, 0, 1))))
        y.append(label)
    x = torch.stack(x).float()
    # torchvision's ToTensor (p / 255) and Normalize(mean 0.5, std 0.5), in that order.
    return ((x / 255) - 0.5) / 0.5, torch.tensor(y, dtype=torch.long)


def train_rank(rank, a, port):
    import torch.distributed as dist

    torch.set_num_threads(a.threads)
    torch.Tensor.cuda = lambda self, *args, **kw: self
    torch.nn.Module.cuda = lambda self, *args, **kw: self
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=a.world)
    import_reference()
    from backbones import get_model
    from losses import CombinedMarginLoss
    from lr_scheduler import PolynomialLRWarmup
    from partial_fc_v2 import PartialFC_V2
    from safetensors.torch import load_file

    init = load_file(a.init)
    head = init.pop("head.fc.weight")
    backbone = get_model(a.network, dropout=0.0, fp16=False, num_features=512)
    backbone.load_state_dict(init, strict=True)
    backbone = torch.nn.parallel.DistributedDataParallel(module=backbone, broadcast_buffers=False, bucket_cap_mb=16, find_unused_parameters=True)
    backbone.train()
    margin_loss = CombinedMarginLoss(64, 1.0, 0.5, 0.0, 0)
    module_partial_fc = PartialFC_V2(margin_loss, 512, head.shape[0], 1.0, False)
    with torch.no_grad():
        module_partial_fc.weight.copy_(head[module_partial_fc.class_start:module_partial_fc.class_start + module_partial_fc.num_local])
    module_partial_fc.train()
    opt = torch.optim.SGD(params=[{"params": backbone.parameters()}, {"params": module_partial_fc.parameters()}], lr=a.lr, momentum=0.9, weight_decay=5e-4)
    lr_scheduler = PolynomialLRWarmup(optimizer=opt, warmup_iters=0, total_iters=a.steps)
    images = read_rec(a.rec)
    per_step = a.world * a.batch
    assert a.steps * per_step <= len(images), f"{a.rec} holds {len(images)} images, {a.steps} steps need {a.steps * per_step}"
    losses = []
    for step in range(a.steps):
        start = step * per_step + rank * a.batch
        img, local_labels = batch(images, range(start, start + a.batch))
        local_embeddings = backbone(img)
        loss = module_partial_fc(local_embeddings, local_labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(backbone.parameters(), 5)
        opt.step()
        opt.zero_grad()
        lr_scheduler.step()
        losses.append(loss.item())
        if a.dump and step + 1 == a.steps:
            # The state after the last step: the weights and SGD's momentum buffers (after
            # one step: the clipped gradient plus weight decay), rank 0's backbone and every
            # rank's rows of the classifier.
            from safetensors.torch import save_file

            state = {k: v.detach().contiguous() for k, v in backbone.module.named_parameters()}
            state.update({f"momentum.{k}": opt.state[v]["momentum_buffer"].contiguous() for k, v in backbone.module.named_parameters() if v in opt.state})
            state[f"head.fc.weight.rank{rank}"] = module_partial_fc.weight.detach().contiguous()
            state[f"momentum.head.fc.weight.rank{rank}"] = opt.state[module_partial_fc.weight]["momentum_buffer"].contiguous()
            save_file(state, f"{a.dump}.rank{rank}.safetensors")
    if rank == 0:
        with open(a.out, "w") as f:
            for step, loss in enumerate(losses, 1):
                f.write(json.dumps({"step": step, "loss": loss, "threads": a.threads}) + "\n")
    dist.destroy_process_group()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["init", "train"])
    ap.add_argument("--network", default="r18")
    ap.add_argument("--classes", type=int)
    ap.add_argument("--seed", type=int, default=2048)
    ap.add_argument("--rec")
    ap.add_argument("--init")
    ap.add_argument("--world", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True)
    ap.add_argument("--dump", help="write the weights and momentum after the last step to DUMP.rank<r>.safetensors")
    a = ap.parse_args()
    if a.mode == "init":
        import_reference()
        from backbones import get_model
        from safetensors.torch import save_file

        classes = a.classes or 1 + max(label for _, label in read_rec(a.rec))
        torch.manual_seed(a.seed)
        backbone = get_model(a.network, dropout=0.0, fp16=False, num_features=512)
        state = {k: v.contiguous() for k, v in backbone.state_dict().items() if not k.endswith("num_batches_tracked")}
        state["head.fc.weight"] = torch.normal(0, 0.01, (classes, 512))  # PartialFC_V2's init
        save_file(state, a.out)
        print(json.dumps({"tensors": len(state), "classes": classes}))
    else:
        import torch.multiprocessing as mp

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        mp.spawn(train_rank, args=(a, port), nprocs=a.world, join=True)


if __name__ == "__main__":
    main()
