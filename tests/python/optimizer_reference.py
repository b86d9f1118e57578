"""torch.optim on the gradient sequence the C++ optimizer test saved; writes the final params."""
import sys

import torch

inputs = torch.load(sys.argv[1])
p0, grads, lrs = inputs["p0"], inputs["grads"], inputs["lrs"]
out = {}
for key, o in inputs.items():
    if not key.startswith("case."):
        continue
    p = torch.nn.Parameter(p0.clone())
    if o["name"] == "sgd":
        opt = torch.optim.SGD([p], lr=1.0, momentum=o["momentum"], nesterov=o["nesterov"],
                              weight_decay=o["weight_decay"])
    else:
        cls = torch.optim.Adam if o["name"] == "adam" else torch.optim.AdamW
        opt = cls([p], lr=1.0, betas=(o["beta1"], o["beta2"]), eps=o["eps"],
                  weight_decay=o["weight_decay"])
    for g, lr in zip(grads, lrs):
        for group in opt.param_groups:
            group["lr"] = float(lr)
        p.grad = g.clone()
        if o["clip_grad_norm"] > 0:
            torch.nn.utils.clip_grad_norm_([p], o["clip_grad_norm"])
        opt.step()
    out[key[len("case."):]] = p.detach()
torch.save(out, sys.argv[2])
