"""Reference forward pass for tests/diffusion/unet_denoiser_test.cpp.

argv[1] is a folder written by the C++ test: cases.json lists the cases (image shape, class
count, U-Net options and distill's parameter names/shapes); <case>.pt holds x, c_noise, labels and
the flat params distill initialized. For every case this script builds the U-Net as ordinary
torch.nn modules, written here from the DDPM/ADM description in diffusion/unet_denoiser.h (not
from the C++), checks that its named_parameters() have the same names and shapes in the same
order, loads the flat vector by iterating module.parameters(), and writes <case>_ref.pt with its
output.
"""
import json
import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F


def sinusoidal(c_noise, dim):
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=c_noise.dtype) / half)
    angles = (1000.0 * c_noise)[:, None] * freqs[None, :]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)


class Attention(nn.Module):
    def __init__(self, channels, groups, heads):
        super().__init__()
        self.groups, self.heads = groups, heads
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        n, c, h, w = x.shape
        d = c // self.heads
        q, k, v = self.qkv(self.norm(x)).reshape(n, 3, self.heads, d, h * w).unbind(1)
        # scores[q_pos, k_pos]: softmax over the keys
        scores = torch.einsum("nhdq,nhdk->nhqk", q, k) / math.sqrt(d)
        out = torch.einsum("nhqk,nhdk->nhdq", scores.softmax(-1), v)
        return x + self.proj(out.reshape(n, c, h, w))


class ResBlock(nn.Module):
    def __init__(self, cin, cout, emb_dim, groups, heads, attention):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, cout)
        self.norm2 = nn.GroupNorm(groups, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None
        self.attn = Attention(cout, groups, heads) if attention else None

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        out = (self.skip(x) if self.skip is not None else x) + h
        return self.attn(out) if self.attn is not None else out


class Down(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.op = nn.Conv2d(c, c, 3, stride=2, padding=1)

    def forward(self, x, emb):
        return self.op(x)


class Up(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x, emb):
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class UNet(nn.Module):
    def __init__(self, image_channels, size, num_classes, channels, channel_mult, res_blocks,
                 attention_max_size, groups, heads):
        super().__init__()
        self.channels, self.num_classes = channels, num_classes
        emb = 4 * channels
        self.embed = nn.Sequential(nn.Linear(channels, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.label_embed = nn.Embedding(num_classes + 1, emb) if num_classes > 0 else None
        self.input = nn.Conv2d(image_channels, channels, 3, padding=1)
        down, skips, c, s = [], [channels], channels, size
        for level, mult in enumerate(channel_mult):
            for _ in range(res_blocks):
                down.append(ResBlock(c, channels * mult, emb, groups, heads,
                                     s <= attention_max_size))
                c = channels * mult
                skips.append(c)
            if level + 1 < len(channel_mult):
                down.append(Down(c))
                skips.append(c)
                s //= 2
        self.down = nn.ModuleList(down)
        self.mid = nn.ModuleList([ResBlock(c, c, emb, groups, heads, True),
                                  ResBlock(c, c, emb, groups, heads, False)])
        up = []
        for level in reversed(range(len(channel_mult))):
            for _ in range(res_blocks + 1):
                up.append(ResBlock(c + skips.pop(), channels * channel_mult[level], emb, groups,
                                   heads, s <= attention_max_size))
                c = channels * channel_mult[level]
            if level > 0:
                up.append(Up(c))
                s *= 2
        self.up = nn.ModuleList(up)
        self.out_norm = nn.GroupNorm(groups, c)
        self.out_conv = nn.Conv2d(c, image_channels, 3, padding=1)
        self.groups = groups

    def forward(self, x, c_noise, labels):
        emb = self.embed(sinusoidal(c_noise, self.channels))
        if self.label_embed is not None:
            if labels is None:
                labels = torch.full((x.shape[0],), self.num_classes, dtype=torch.long)
            emb = emb + self.label_embed(labels)
        h = self.input(x)
        skips = [h]
        for block in self.down:
            h = block(h, emb)
            skips.append(h)
        for block in self.mid:
            h = block(h, emb)
        for block in self.up:
            if isinstance(block, Up):
                h = block(h, emb)
            else:
                h = block(torch.cat([h, skips.pop()], 1), emb)
        return self.out_conv(F.silu(self.out_norm(h)))


def main():
    folder = sys.argv[1]
    with open(os.path.join(folder, "cases.json")) as f:
        cases = json.load(f)
    for case in cases:
        o = case["options"]
        net = UNet(case["channels"], case["size"], case["num_classes"], o["channels"],
                   o["channel_mult"], o["res_blocks"], o["attention_max_size"], o["groups"],
                   o["heads"]).double()
        ours = [[n, list(p.shape)] for n, p in net.named_parameters()]
        if ours != case["params"]:
            for a, b in zip(ours, case["params"]):
                if a != b:
                    print("first difference:", a, "vs distill", b)
                    break
            raise SystemExit("%s: parameter names/shapes differ (%d vs %d tensors)"
                             % (case["name"], len(ours), len(case["params"])))
        data = torch.load(os.path.join(folder, case["name"] + ".pt"))
        flat = data["params"].double()
        offset = 0
        with torch.no_grad():
            for p in net.parameters():
                p.copy_(flat[offset:offset + p.numel()].view_as(p))
                offset += p.numel()
        assert offset == flat.numel(), (offset, flat.numel())
        labels = data["labels"] if "labels" in data else None
        with torch.no_grad():
            out = net(data["x"].double(), data["c_noise"].double(), labels)
        torch.save({"out": out}, os.path.join(folder, case["name"] + "_ref.pt"))
        print(case["name"], "ok", tuple(out.shape))


if __name__ == "__main__":
    main()
