"""ZCA whitening written from its definition (kornia's convention: unbiased covariance of the
centred, flattened images; eigenvalues regularised by eps): W = U diag((s + eps)^-1/2) U^T."""
import sys

import torch

d = torch.load(sys.argv[1])
x = d["x"].double()
flat = x.reshape(x.shape[0], -1)
centred = flat - flat.mean(0, keepdim=True)
cov = centred.T @ centred / (flat.shape[0] - 1)
u, s, _ = torch.linalg.svd(cov)
w = u @ torch.diag(1.0 / torch.sqrt(s + d["eps"])) @ u.T
# Two keys: Debian LibTorch 1.13 cannot unpickle a one-item dict (opcode SETITEM).
torch.save({"whitened": (centred @ w).reshape(x.shape).float(), "eps": d["eps"]}, sys.argv[2])
