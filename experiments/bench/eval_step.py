"""Python PyTorch reference for `distill bench eval`: students trained as the MTT/DC evaluation
protocol trains them (evaluate_synset: ConvNet-3 with instance norm, SGD lr .01 momentum .9
weight decay 5e-4, lr x0.1 at half, batch 256 reshuffled every epoch, DSA on every batch).

Trains one student for --steps steps (whole epochs) after --warmup steps and prints one JSON
line: steps_per_s (student steps per second), peak_rss_mib. Written for this benchmark from the
papers' description of the protocol, not copied from the reference repositories.
"""
import argparse
import json
import os
import resource
import sys
import time

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mtt_step import dsa_single  # noqa: E402  (the same DSA as the mtt benchmark)
from train_step import convnet  # noqa: E402  (the same ConvNet as the train benchmark)


def train_student(model, images, labels, epochs, generator):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, [epochs // 2], 0.1)
    n = images.shape[0]
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, 256):
            index = order[start:start + 256]
            x = dsa_single(images[index], generator)
            loss = nn.functional.cross_entropy(model(x), labels[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        scheduler.step()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--ipc", type=int, default=10)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--image-size", type=int, default=28)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    g = torch.Generator().manual_seed(0)
    n = a.ipc * a.classes
    images = torch.randn(n, a.channels, a.image_size, a.image_size, generator=g).to(a.device)
    labels = torch.arange(a.classes).repeat_interleave(a.ipc).to(a.device)
    batches = (n + 255) // 256
    epochs = lambda steps: max(1, (steps + batches - 1) // batches)
    if a.warmup > 0:
        model = convnet(a.channels, a.width, a.depth, a.classes, a.image_size).to(a.device)
        train_student(model, images, labels, epochs(a.warmup), g)
    model = convnet(a.channels, a.width, a.depth, a.classes, a.image_size).to(a.device)
    start = time.perf_counter()
    train_student(model, images, labels, epochs(a.steps), g)
    if a.device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    print(json.dumps({"steps_per_s": epochs(a.steps) * batches / seconds,
                      "steps": epochs(a.steps) * batches,
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


if __name__ == "__main__":
    main()
