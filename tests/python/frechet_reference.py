"""Squared Fréchet distance between the Gaussians fitted to two feature sets, written from its
definition with numpy (scipy is not installed here): |m1 - m2|^2 + tr S1 + tr S2 - 2 tr sqrt(S1 S2).
S1 S2 is not symmetric, but it is similar to S1^1/2 S2 S1^1/2, so its eigenvalues are real and
>= 0 and tr sqrt(S1 S2) is the sum of their square roots; numpy's general (non-symmetric) eig
finds them by another route than the C++ code's two symmetric eigendecompositions."""
import sys

import numpy as np
import torch

d = torch.load(sys.argv[1])
a = d["a"].double().numpy()
b = d["b"].double().numpy()
m1, m2 = a.mean(0), b.mean(0)
s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
eig = np.linalg.eigvals(s1 @ s2)
cross = np.sqrt(np.clip(eig.real, 0, None)).sum()
value = ((m1 - m2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * cross
# Two keys: Debian LibTorch 1.13 cannot unpickle a one-item dict (opcode SETITEM).
torch.save({"frechet": torch.tensor(float(value), dtype=torch.float64),
            "mean_term": torch.tensor(float(((m1 - m2) ** 2).sum()), dtype=torch.float64)},
           sys.argv[2])
