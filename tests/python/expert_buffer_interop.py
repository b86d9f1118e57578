"""Checks a distill expert buffer against the MTT reference layout and writes one back."""
import sys

import torch
import torch.nn as nn

buffer = torch.load(sys.argv[1])
# The tiny ConvNet of the C++ test: conv3x3(1->4, pad 3) + GroupNorm(4, 4) + linear(4*6*6 -> 3).
net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=3), nn.GroupNorm(4, 4), nn.ReLU(), nn.AvgPool2d(2),
                    nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
shapes = [tuple(p.shape) for p in net.parameters()]
assert isinstance(buffer, list) and len(buffer) == 2, type(buffer)
for expert in buffer:
    assert isinstance(expert, list) and len(expert) == 3
    for epoch in expert:
        assert [tuple(t.shape) for t in epoch] == shapes, [tuple(t.shape) for t in epoch]
flat = torch.cat([p.reshape(-1) for p in buffer[1][2]])  # what the reference's matching code does
out = []
for expert in buffer:
    out.append([[p * 2 for p in epoch] for epoch in expert[1:]])
torch.save(out, sys.argv[2])
print("flat", flat.numel())
