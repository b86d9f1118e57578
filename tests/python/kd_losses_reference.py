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


# PLD (Bassam et al. 2025, appendix C's form): sort the teacher's logits ascending, take the true
# label out and put it at the end (the ranking reversed), then a cumulative logsumexp from the
# start of that reversed order is the suffix logsumexp of the ranking.
def pld(s, t, y, tau):
    n, k = s.shape
    order = []
    for i in range(n):
        ascending = [c for c in torch.argsort(t[i], stable=True).tolist() if c != int(y[i])]
        order.append(ascending + [int(y[i])])
    order = torch.tensor(order)
    s_rev, p_rev = s.gather(1, order), F.softmax(t / tau, 1).gather(1, order)
    per_position = torch.logcumsumexp(s_rev, 1) - s_rev
    return (p_rev * per_position).sum(1).mean()


s = student("s")
record("pld", pld(s, inputs["t"], labels, T), s)

# DHKD's BinaryKL-Norm (penghui-yang/DHKD distiller_zoo/BinaryKLNorm.py): KL(Bern(.5) || Bern(p)).
s = student("s")
p = torch.sigmoid((s - inputs["t"]) / T).clamp(1e-8, 1 - 1e-8)
target = torch.full_like(p, 0.5)
record("dhkd", (F.binary_cross_entropy(p, target, reduction="none") - F.binary_cross_entropy(
    target, target, reduction="none")).sum() / s.shape[0] * T * T, s)

# ND (WangYZ1608/Knowledge-Distillation-via-ND, CIFAR/utils.py DirectNormLoss), per sample.
es = student("es")
means, t_feat = inputs["nd_means"], inputs["nd_t"]
terms = []
for i in range(es.shape[0]):
    c = means[labels[i]]
    c = c / c.norm()
    terms.append(1 - (es[i] * c).sum() / torch.max(es[i].norm(), t_feat[i].norm()))
record("nd", torch.stack(terms).mean(), es)

# OFA (Hao840/OFAKD distillers/ofa.py ofa_loss): weights (p_t + one_hot)^eps - one_hot against
# log(softmax(s / T)), summed over classes, batch mean; here eps 1.5.
s = student("s")
one_hot = torch.zeros_like(s).scatter_(1, labels.unsqueeze(1), 1)
weights = torch.pow(F.softmax(inputs["t"] / T, 1) + one_hot, 1.5) - one_hot
record("ofa", -(weights * torch.log(F.softmax(s / T, 1))).sum(1).mean(), s)

torch.save(out, sys.argv[2])
