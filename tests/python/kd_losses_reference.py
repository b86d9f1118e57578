"""KD losses written from the papers with torch.nn.functional, on the tensors the C++ test saved.

Writes each loss value and its gradient with respect to the student input(s), in double.
The formulations are deliberately the papers' reference-code forms (masks, -1000 logit trick,
pdist via the Gram matrix), not the C++ ones, so both sides are independent.
"""
import sys

import torch
import torch.nn.functional as F

inputs = torch.load(sys.argv[1])
T = float(inputs["T"])
alpha, beta = float(inputs["alpha"]), float(inputs["beta"])
labels = inputs["labels"]
out = {}


def record(name, loss, *students):
    grads = torch.autograd.grad(loss, students)
    out[name] = loss.detach()
    for i, g in enumerate(grads):
        out[f"{name}.grad{i}"] = g


def student(key):
    return inputs[key].clone().requires_grad_(True)


# Hinton et al. 2015: KL(p_t || p_s) at temperature T, times T^2, batch mean.
s = student("s")
record("hinton", F.kl_div(F.log_softmax(s / T, 1), F.softmax(inputs["t"] / T, 1),
                          reduction="batchmean") * T * T, s)

# Reverse KL(p_s || p_t) x T^2.
s = student("s")
ps = F.softmax(s / T, 1)
record("reverse_kl", (ps * (F.log_softmax(s / T, 1) - F.log_softmax(inputs["t"] / T, 1))).sum(1)
       .mean() * T * T, s)

# Decoupled KD (Zhao et al. 2022) in the masked form of its reference code.
s = student("s")
t = inputs["t"]
gt = torch.zeros_like(s).scatter_(1, labels.unsqueeze(1), 1).bool()
other = ~gt
p_s, p_t = F.softmax(s / T, 1), F.softmax(t / T, 1)
b_s = torch.cat([(p_s * gt).sum(1, keepdim=True), (p_s * other).sum(1, keepdim=True)], 1)
b_t = torch.cat([(p_t * gt).sum(1, keepdim=True), (p_t * other).sum(1, keepdim=True)], 1)
tckd = F.kl_div(torch.log(b_s), b_t, reduction="sum") * T * T / s.shape[0]
nckd = F.kl_div(F.log_softmax(s / T - 1000.0 * gt, 1), F.softmax(t / T - 1000.0 * gt, 1),
                reduction="sum") * T * T / s.shape[0]
record("dkd", alpha * tckd + beta * nckd, s)


# Attention transfer (Zagoruyko & Komodakis 2017, their at()/at_loss()).
def at(x):
    return F.normalize(x.pow(2).mean(1).view(x.size(0), -1))


fs = student("fs")
record("at", (at(fs) - at(inputs["ft"])).pow(2).mean(), fs)


# RKD (Park et al. 2019), the reference implementation's pdist and angle.
def pdist(e, eps=1e-12):
    sq = e.pow(2).sum(1)
    d = (sq.unsqueeze(1) + sq.unsqueeze(0) - 2 * e @ e.t()).clamp(min=eps).sqrt().clone()
    d[range(len(e)), range(len(e))] = 0
    return d


es = student("es")
et = inputs["et"]
t_d = pdist(et)
t_d = t_d / t_d[t_d > 0].mean()
d = pdist(es)
d = d / d[d > 0].mean()
record("rkd_distance", F.smooth_l1_loss(d, t_d), es)


def angles(e):
    diff = e.unsqueeze(0) - e.unsqueeze(1)
    unit = F.normalize(diff, p=2, dim=2)
    return torch.bmm(unit, unit.transpose(1, 2)).view(-1)


es = student("es")
record("rkd_angle", F.smooth_l1_loss(angles(es), angles(et)), es)

# FitNets hint: 1x1 conv regressor (and a linear one on flat features), MSE to the teacher.
fs, w, b = student("fs"), student("conv_w"), student("conv_b")
record("fitnet_conv", F.mse_loss(F.conv2d(fs, w, b), inputs["ft"]), fs, w, b)
es, w, b = student("es"), student("lin_w"), student("lin_b")
record("fitnet_linear", F.mse_loss(F.linear(es, w, b), et), es, w, b)

torch.save(out, sys.argv[2])
