"""Python PyTorch reference for `distill bench mtt`: one MTT iteration as the reference code runs it.

The student is a functional ConvNet on one flat parameter vector; syn_steps SGD steps on DSA-augmented
synthetic mini-batches are unrolled with create_graph=True, then the normalised parameter distance is
back-propagated to the images and the learnable lr in one autograd graph (its memory grows with
syn_steps). Prints one JSON line: s_per_iter, peak_rss_mib. Written for this benchmark from the MTT
paper's description, not copied from the reference repository.
"""
import argparse
import json
import math
import resource
import time

import torch
import torch.nn.functional as F


def convnet_shapes(channels, width, depth, classes, size):
    shapes = []
    in_ch = channels
    for d in range(depth):
        pad = 3 if channels == 1 and d == 0 else 1
        size = (size + 2 * pad - 2) // 2
        shapes += [("conv", (width, in_ch, 3, 3), pad), ("bias", (width,)), ("gn_w", (width,)), ("gn_b", (width,))]
        in_ch = width
    shapes += [("fc", (classes, width * size * size)), ("bias", (classes,))]
    return shapes


def forward(x, flat, shapes, depth):
    sizes = [math.prod(s[1]) for s in shapes]
    parts = [p.view(s[1]) for p, s in zip(flat.split(sizes), shapes)]
    for d in range(depth):
        w, b, gw, gb = parts[4 * d:4 * d + 4]
        x = F.conv2d(x, w, b, padding=shapes[4 * d][2])
        x = F.group_norm(x, w.shape[0], gw, gb)  # instance norm with affine, as GroupNorm(C, C)
        x = F.avg_pool2d(F.relu(x), 2)
    return F.linear(x.flatten(1), parts[-2], parts[-1])


def dsa_single(x, g):
    """One DSA group per call (the 'color_crop_cutout_flip_scale_rotate' strategy)."""
    n, c, h, w = x.shape
    dev = x.device  # draws come from the CPU generator g, then move (as distill's DSA does)
    u = lambda *s: torch.rand(*s, generator=g).to(dev)
    group = int(torch.randint(6, (1,), generator=g))
    if group == 0:
        x = x + (u(n, 1, 1, 1) - 0.5)
        m = x.mean(1, keepdim=True)
        x = (x - m) * (u(n, 1, 1, 1) * 2.0) + m
        m = x.mean((1, 2, 3), keepdim=True)
        return (x - m) * (u(n, 1, 1, 1) + 0.5) + m
    if group == 1:  # integer translation with zero fill
        r = int(h * 0.125 + 0.5)
        shift = torch.randint(-r, r + 1, (n, 2), generator=g).float().to(dev)
        theta = torch.zeros(n, 2, 3, device=dev)
        theta[:, 0, 0] = theta[:, 1, 1] = 1
        theta[:, 0, 2] = -2 * shift[:, 1] / (w - 1)
        theta[:, 1, 2] = -2 * shift[:, 0] / (h - 1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=True)
        return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=True)
    if group == 2:  # cutout
        s = int(h * 0.5 + 0.5)
        top = torch.randint(-(s // 2), h - s // 2, (n, 1, 1), generator=g).to(dev)
        left = torch.randint(-(s // 2), w - s // 2, (n, 1, 1), generator=g).to(dev)
        ys, xs = torch.arange(h, device=dev).view(1, h, 1), torch.arange(w, device=dev).view(1, 1, w)
        keep = ~((ys >= top) & (ys < top + s) & (xs >= left) & (xs < left + s))
        return x * keep.unsqueeze(1).float()
    if group == 3:
        return torch.where(u(n, 1, 1, 1) < 0.5, x.flip(3), x)
    theta = torch.zeros(n, 2, 3, device=dev)
    if group == 4:
        theta[:, 0, 0] = u(n) * (1.2 - 1 / 1.2) + 1 / 1.2
        theta[:, 1, 1] = u(n) * (1.2 - 1 / 1.2) + 1 / 1.2
    else:
        a = (u(n) - 0.5) * 2 * 15 / 180 * math.pi
        theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = a.cos(), -a.sin(), a.sin(), a.cos()
    grid = F.affine_grid(theta, list(x.shape), align_corners=True)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def main():
    p = argparse.ArgumentParser()
    for name, default in [("width", 128), ("depth", 3), ("ipc", 10), ("syn-steps", 10), ("batch-syn", 100),
                          ("iters", 3), ("warmup", 1), ("channels", 1), ("image-size", 28), ("classes", 10),
                          ("threads", 2)]:
        p.add_argument("--" + name, type=int, default=default)
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (distill bench passes its --device)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    g = torch.Generator().manual_seed(0)
    shapes = convnet_shapes(a.channels, a.width, a.depth, a.classes, a.image_size)
    n = a.ipc * a.classes
    images = torch.randn(n, a.channels, a.image_size, a.image_size, generator=g).to(dev).requires_grad_(True)
    labels = torch.arange(a.classes).repeat_interleave(a.ipc).to(dev)
    start = torch.cat([torch.randn(math.prod(s[1]), generator=g) * 0.05 for s in shapes]).to(dev)
    target = start + 0.01 * torch.randn(start.shape, generator=g).to(dev)
    syn_lr = torch.tensor(0.01, device=dev).requires_grad_(True)
    opt_img = torch.optim.SGD([images], lr=100, momentum=0.5)
    opt_lr = torch.optim.SGD([syn_lr], lr=1e-5, momentum=0.5)

    def iteration():
        params = [start.clone().requires_grad_(True)]
        chunks = []
        for _ in range(a.syn_steps):
            if not chunks:
                chunks = list(torch.randperm(n, generator=g).to(dev).split(a.batch_syn))
            index = chunks.pop()
            x = dsa_single(images[index], g)
            ce = F.cross_entropy(forward(x, params[-1], shapes, a.depth), labels[index])
            grad = torch.autograd.grad(ce, params[-1], create_graph=True)[0]
            params.append(params[-1] - syn_lr * grad)
        loss = ((params[-1] - target) ** 2).sum() / ((start - target) ** 2).sum()
        opt_img.zero_grad()
        opt_lr.zero_grad()
        loss.backward()
        opt_img.step()
        opt_lr.step()
        return float(loss)

    for _ in range(a.warmup):
        iteration()
    t = time.perf_counter()
    for _ in range(a.iters):
        iteration()  # float(loss) waits for the device
    seconds = (time.perf_counter() - t) / a.iters
    print(json.dumps({"s_per_iter": seconds,
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


if __name__ == "__main__":
    main()
