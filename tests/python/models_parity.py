"""Reference forward passes for tests/src/models/models_test.cpp.

argv[1] is a folder written by the C++ test: cases.json lists the cases, each with its
architecture, options and a <case>.pt holding x, the flat params (and batch-norm buffers) that
distill initialized, and distill's own outputs. For every case this script builds the network as
ordinary torch.nn modules -- written here independently after the DC/DSA/MTT reference networks,
or torchvision's resnet18 itself -- loads the flat vector by iterating module.parameters() in
order, runs it in eval and train mode and writes results.pt (its outputs) and results.json (its
parameter names/shapes and the differences it saw) back into the folder.
"""
import json
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F


# ---------------------------------------------------------------- DC/DSA/MTT-style networks


def conv_out(size, kernel, stride=1, padding=0):
    return (size + 2 * padding - kernel) // stride + 1


class ConvNet(nn.Module):
    """The ConvNet of the DC/DSA/MTT code: depth x [conv3x3 - norm - act - pool] + Linear."""

    def __init__(self, channel, num_classes, width, depth, norm, act, pooling, im_size):
        super().__init__()
        layers = []
        in_channels, size = channel, im_size
        for d in range(depth):
            padding = 3 if channel == 1 and d == 0 else 1
            layers.append(nn.Conv2d(in_channels, width, kernel_size=3, padding=padding))
            size = conv_out(size, 3, 1, padding)
            if norm == "instancenorm":
                layers.append(nn.GroupNorm(width, width, affine=True))
            elif norm == "batchnorm":
                layers.append(nn.BatchNorm2d(width))
            elif norm == "groupnorm":
                layers.append(nn.GroupNorm(4, width, affine=True))
            elif norm == "layernorm":
                layers.append(nn.LayerNorm([width, size, size], elementwise_affine=True))
            else:
                assert norm == "none", norm
            layers.append({"relu": nn.ReLU(), "sigmoid": nn.Sigmoid(),
                           "leakyrelu": nn.LeakyReLU(negative_slope=0.01)}[act])
            if pooling == "avgpool":
                layers.append(nn.AvgPool2d(kernel_size=2, stride=2))
                size //= 2
            elif pooling == "maxpool":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                size //= 2
            else:
                assert pooling == "none", pooling
            in_channels = width
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(width * size * size, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


class MLP(nn.Module):
    def __init__(self, in_features, hidden, num_classes):
        super().__init__()
        sizes = [in_features] + list(hidden) + [num_classes]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))

    def forward(self, x):
        h = x.flatten(1)
        for layer in self.layers[:-1]:
            h = F.relu(layer(h))
        return self.layers[-1](h)


class LeNet(nn.Module):
    def __init__(self, channel, num_classes, im_size):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channel, 6, kernel_size=5, padding=2 if channel == 1 else 0),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=2, stride=2),
            nn.Conv2d(6, 16, kernel_size=5),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=2, stride=2),
        )
        flat = self.features(torch.zeros(1, channel, im_size, im_size)).numel()
        self.fc_1 = nn.Linear(flat, 120)
        self.fc_2 = nn.Linear(120, 84)
        self.fc_3 = nn.Linear(84, num_classes)

    def forward(self, x):
        h = F.relu(self.fc_1(self.features(x).flatten(1)))
        return self.fc_3(F.relu(self.fc_2(h)))


class AlexNet(nn.Module):
    """The 5-conv AlexNet of the DC/DSA benchmarks."""

    def __init__(self, channel, num_classes, im_size):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channel, 128, kernel_size=5, stride=1, padding=4 if channel == 1 else 2),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=2, stride=2),
            nn.Conv2d(128, 192, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=2, stride=2),
            nn.Conv2d(192, 256, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(256, 192, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(192, 192, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=2, stride=2),
        )
        with torch.no_grad():
            flat = self.features(torch.zeros(1, channel, im_size, im_size)).numel()
        self.fc = nn.Linear(flat, num_classes)

    def forward(self, x):
        return self.fc(self.features(x).flatten(1))


VGG11 = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]


class VGG(nn.Module):
    """VGG-11 of the DC code: conv3x3 - norm - ReLU, max-pools, one Linear."""

    def __init__(self, channel, num_classes, norm, im_size):
        super().__init__()
        layers, in_channels = [], channel
        for i, v in enumerate(VGG11):
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                continue
            layers += [
                nn.Conv2d(in_channels, v, kernel_size=3,
                          padding=3 if channel == 1 and i == 0 else 1),
                nn.GroupNorm(v, v, affine=True) if norm == "instancenorm" else nn.BatchNorm2d(v),
                nn.ReLU(),
            ]
            in_channels = v
        self.features = nn.Sequential(*layers)
        with torch.no_grad():
            self.features.eval()
            flat = self.features(torch.zeros(1, channel, im_size, im_size)).numel()
        self.classifier = nn.Linear(flat, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


def make_norm(norm, c):
    return nn.GroupNorm(c, c, affine=True) if norm == "instancenorm" else nn.BatchNorm2d(c)


class BasicBlock(nn.Module):
    def __init__(self, in_planes, planes, stride, norm):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = make_norm(norm, planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = make_norm(norm, planes)
        self.downsample = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), make_norm(norm, planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(out + shortcut)


class ResNet18(nn.Module):
    """The DC code's ResNet18 (CIFAR stem), with torchvision's attribute names."""

    def __init__(self, channel, num_classes, norm):
        super().__init__()
        self.conv1 = nn.Conv2d(channel, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = make_norm(norm, 64)
        in_planes = 64
        for i, planes in enumerate([64, 128, 256, 512]):
            blocks = []
            for b in range(2):
                stride = 2 if i > 0 and b == 0 else 1
                blocks.append(BasicBlock(in_planes, planes, stride, norm))
                in_planes = planes
            setattr(self, "layer%d" % (i + 1), nn.Sequential(*blocks))
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


def torchvision_resnet18(channel, num_classes, norm, stem):
    import torchvision

    norm_layer = (lambda c: nn.GroupNorm(c, c, affine=True)) if norm == "instancenorm" else None
    model = torchvision.models.resnet18(num_classes=num_classes, norm_layer=norm_layer)
    if stem == "cifar":
        model.conv1 = nn.Conv2d(channel, 64, 3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    elif channel != 3:
        model.conv1 = nn.Conv2d(channel, 64, 7, stride=2, padding=3, bias=False)
    return model


def build(case):
    arch, o = case["arch"], case["options"]
    c, s, k = case["channels"], case["image_size"], case["num_classes"]
    if case["reference"] == "torchvision":
        norm = "batchnorm" if arch == "resnet18bn" else "instancenorm"
        return torchvision_resnet18(c, k, norm, o["stem"]), "fc"
    if arch.startswith("convnet"):
        depth = {"convnetd4": 4, "convnetd5": 5}.get(arch, o["depth"])
        return ConvNet(c, k, o["width"], depth, o["norm"], o["act"], o["pool"], s), "classifier"
    if arch == "mlp":
        return MLP(c * s * s, o["hidden"], k), None
    if arch == "lenet":
        return LeNet(c, k, s), "fc_3"
    if arch == "alexnet":
        return AlexNet(c, k, s), "fc"
    if arch in ("vgg11", "vgg11bn"):
        return VGG(c, k, "batchnorm" if arch == "vgg11bn" else "instancenorm", s), "classifier"
    if arch in ("resnet18", "resnet18bn"):
        assert o["stem"] == "cifar"
        return ResNet18(c, k, "batchnorm" if arch == "resnet18bn" else "instancenorm"), "fc"
    raise ValueError("unknown arch " + arch)


# ---------------------------------------------------------------- comparison


def rel_diff(ours, theirs):
    """max |a - b| relative to max(1, max |b|) (logits and variances can be large)."""
    scale = max(1.0, theirs.abs().max().item())
    return (ours.double() - theirs.double()).abs().max().item() / scale


def running_stats(model):
    return [b for n, b in model.named_buffers() if n.endswith(("running_mean", "running_var"))]


def run_case(folder, case, results, report):
    data = torch.load(os.path.join(folder, case["file"]))
    torch.manual_seed(0)
    model, head_name = build(case)
    params = list(model.parameters())
    names = [n for n, _ in model.named_parameters()]
    entry = {
        "num_params": sum(p.numel() for p in params),
        "names": names,
        "shapes": [list(p.shape) for p in params],
        "num_buffers": sum(b.numel() for b in running_stats(model)),
    }
    report[case["name"]] = entry
    flat = data["params"]
    if entry["num_params"] != flat.numel():
        entry["error"] = "parameter count %d != distill's %d" % (entry["num_params"], flat.numel())
        return
    with torch.no_grad():
        offset = 0
        for p in params:
            p.copy_(flat[offset:offset + p.numel()].view_as(p))
            offset += p.numel()
        buffers = running_stats(model)
        if buffers:
            flat_buffers = data["buffers"]
            if entry["num_buffers"] != flat_buffers.numel():
                entry["error"] = "buffer count %d != distill's %d" % (
                    entry["num_buffers"], flat_buffers.numel())
                return
            offset = 0
            for b in buffers:
                b.copy_(flat_buffers[offset:offset + b.numel()].view_as(b))
                offset += b.numel()

    captured = {}
    if head_name is not None:
        getattr(model, head_name).register_forward_pre_hook(
            lambda module, inputs: captured.__setitem__("embedding", inputs[0].detach().clone()))

    x = data["x"]
    name = case["name"]
    with torch.no_grad():
        model.eval()
        out_eval = model(x)
        results[name + ".out_eval"] = out_eval
        diffs = {"eval": rel_diff(data["out_eval"], out_eval)}
        if "embedding" in captured:
            results[name + ".embedding"] = captured["embedding"]
            diffs["embedding"] = rel_diff(data["embedding"], captured["embedding"])
        model.train()
        out_train = model(x)
        results[name + ".out_train"] = out_train
        diffs["train"] = rel_diff(data["out_train"], out_train)
        if buffers:
            after = torch.cat([b.reshape(-1) for b in running_stats(model)])
            results[name + ".buffers_train"] = after
            diffs["buffers"] = rel_diff(data["buffers_train"], after)
    entry["diffs"] = diffs


def main():
    folder = sys.argv[1]
    torch.set_num_threads(1)
    with open(os.path.join(folder, "cases.json")) as f:
        cases = json.load(f)["cases"]
    results, report = {}, {}
    for case in cases:
        try:
            run_case(folder, case, results, report)
        except Exception as e:  # reported per case; the C++ test fails that case
            report.setdefault(case["name"], {})["error"] = "%s: %s" % (type(e).__name__, e)
        entry = report[case["name"]]
        print("%-45s %s" % (case["name"], entry.get("error") or " ".join(
            "%s %.2e" % kv for kv in entry["diffs"].items())))
    torch.save(results, os.path.join(folder, "results.pt"))
    with open(os.path.join(folder, "results.json"), "w") as f:
        json.dump({"torch": torch.__version__, "cases": report}, f)


if __name__ == "__main__":
    main()
