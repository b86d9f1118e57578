"""Python PyTorch reference for `distill bench train`: the same ConvNet training/eval workload.

Prints one JSON line: train_images_per_s, eval_images_per_s, peak_rss_mib. Run by the C++
benchmark in the same invocation so the two are compared as a ratio on the same machine state.
"""
import argparse
import json
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def convnet(channels, width, depth, classes, size):
    layers, in_ch = [], channels
    for d in range(depth):
        pad = 3 if channels == 1 and d == 0 else 1
        size = size + 2 * pad - 2
        layers += [nn.Conv2d(in_ch, width, 3, padding=pad), nn.GroupNorm(width, width, affine=True),
                   nn.ReLU(), nn.AvgPool2d(2, 2)]
        in_ch, size = width, size // 2
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(width * size * size, classes))


def main():
    p = argparse.ArgumentParser()
    for name, default in [("width", 128), ("depth", 3), ("batch", 256), ("steps", 20), ("warmup", 3),
                          ("channels", 1), ("image-size", 28), ("classes", 10), ("threads", 2)]:
        p.add_argument("--" + name, type=int, default=default)
    p.add_argument("--arch", default="convnet")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    net = convnet(a.channels, a.width, a.depth, a.classes, a.image_size)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(a.batch, a.channels, a.image_size, a.image_size)
    y = torch.randint(a.classes, (a.batch,))

    def step():
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()

    for _ in range(a.warmup):
        step()
    t = time.perf_counter()
    for _ in range(a.steps):
        step()
    train_s = time.perf_counter() - t
    with torch.no_grad():
        for _ in range(a.warmup):
            net(x)
        t = time.perf_counter()
        for _ in range(a.steps):
            net(x).sum().item()
        eval_s = time.perf_counter() - t
    images = a.batch * a.steps
    print(json.dumps({"train_images_per_s": images / train_s, "eval_images_per_s": images / eval_s,
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


if __name__ == "__main__":
    main()
