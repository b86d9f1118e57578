"""Python PyTorch reference for `distill bench train`: the same ConvNet or ResNet-18 training/eval
workload.

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


class BasicBlock(nn.Module):
    def __init__(self, norm, in_ch, out_ch, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = norm(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = norm(out_ch)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False),
                                          norm(out_ch))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet18(nn.Module):
    """src/models/resnet.cpp's ResNet-18: instance norm as GroupNorm(C, C) for `resnet18`, batch
    norm for `resnet18bn`; the cifar stem (3x3, stride 1) or the imagenet one (7x7/2 + max-pool);
    global average pool."""

    def __init__(self, arch, stem, channels, classes):
        super().__init__()
        norm = nn.BatchNorm2d if arch == "resnet18bn" else (lambda c: nn.GroupNorm(c, c))
        imagenet = stem == "imagenet"
        self.stem = nn.Sequential(
            nn.Conv2d(channels, 64, 7 if imagenet else 3, 2 if imagenet else 1,
                      3 if imagenet else 1, bias=False),
            norm(64), nn.ReLU(), *([nn.MaxPool2d(3, 2, 1)] if imagenet else []))
        blocks, in_ch = [], 64
        for layer, width in enumerate([64, 128, 256, 512]):
            for block in range(2):
                blocks.append(BasicBlock(norm, in_ch, width, 2 if layer > 0 and block == 0 else 1))
                in_ch = width
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(512, classes)

    def forward(self, x):
        return self.fc(self.blocks(self.stem(x)).mean((2, 3)))


def main():
    p = argparse.ArgumentParser()
    for name, default in [("width", 128), ("depth", 3), ("batch", 256), ("steps", 20), ("warmup", 3),
                          ("channels", 1), ("image-size", 28), ("classes", 10), ("threads", 2)]:
        p.add_argument("--" + name, type=int, default=default)
    p.add_argument("--arch", default="convnet", choices=["convnet", "resnet18", "resnet18bn"])
    p.add_argument("--stem", default="cifar", choices=["cifar", "imagenet"])
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (distill bench passes its --device)")
    a = p.parse_args()
    dev = torch.device(a.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    if a.arch == "convnet":
        net = convnet(a.channels, a.width, a.depth, a.classes, a.image_size)
    else:
        net = ResNet18(a.arch, a.stem, a.channels, a.classes)
    net = net.to(dev)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(a.batch, a.channels, a.image_size, a.image_size).to(dev)
    y = torch.randint(a.classes, (a.batch,)).to(dev)

    def step():
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()

    for _ in range(a.warmup):
        step()
    sync()
    t = time.perf_counter()
    for _ in range(a.steps):
        step()
    sync()
    train_s = time.perf_counter() - t
    with torch.no_grad():
        for _ in range(a.warmup):
            net(x)
        sync()
        t = time.perf_counter()
        for _ in range(a.steps):
            net(x).sum().item()
        eval_s = time.perf_counter() - t
    images = a.batch * a.steps
    print(json.dumps({"train_images_per_s": images / train_s, "eval_images_per_s": images / eval_s,
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


if __name__ == "__main__":
    main()
