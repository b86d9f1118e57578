"""DisWOT's distances written as its code computes them (lliai/DisWOT-CVPR2023: distiller_zoo/SP.py
for the relation part, distiller_zoo/ICKD.py for the per-class channel correlations), on the
tensors the C++ test saved; plus the K x K class Gram form distill uses across widths."""
import sys

import torch
import torch.nn.functional as F

inputs = torch.load(sys.argv[1])
out = {}

# Similarity-preserving relation: row-normalised batch Gram matrices, squared difference / B^2.
f_t, f_s = inputs["f_t"].flatten(1), inputs["f_s"].flatten(1)
b = f_t.shape[0]
g_t = F.normalize(torch.mm(f_t, f_t.t()))
g_s = F.normalize(torch.mm(f_s, f_s.t()))
out["relation"] = (g_t - g_s).pow(2).sum() / (b * b)

# ICKD-style semantic distance on classifier gradients of one width: per class k the C x C outer
# product, rows normalised, squared difference summed over classes / (K C).
grad_t, grad_s = inputs["grad_t"], inputs["grad_s_same"]
k, c = grad_t.shape
total = 0
for i in range(k):
    m_t = F.normalize(torch.outer(grad_t[i], grad_t[i]))
    m_s = F.normalize(torch.outer(grad_s[i], grad_s[i]))
    total = total + (m_t - m_s).pow(2).sum()
out["channels"] = total / (k * c)

# Classes form: K x K Gram of the class rows, rows normalised, squared difference / K^2.
grad_w = inputs["grad_s_wide"]
c_t = F.normalize(torch.mm(grad_t, grad_t.t()))
c_s = F.normalize(torch.mm(grad_w, grad_w.t()))
out["classes"] = (c_t - c_s).pow(2).sum() / (k * k)

torch.save(out, sys.argv[2])
