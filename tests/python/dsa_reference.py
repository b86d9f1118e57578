"""Applies DSA draws saved by the C++ test with torch.nn.functional, from the definitions:
brightness x + b; saturation (x - mean_c) s + mean_c; contrast (x - mean_chw) c + mean_chw;
crop = integer translation (content moves down/right by shift_y/shift_x, zero fill); cutout =
zeroed square at (top, left); flip = mirror along the width; scale and rotate = affine_grid +
grid_sample (bilinear, zeros, align_corners=True) with theta [[sx, 0, 0], [0, sy, 0]] and
[[cos a, -sin a, 0], [sin a, cos a, 0]]."""
import sys

import torch
import torch.nn.functional as F


def translate(x, dy, dx):
    n, c, h, w = x.shape
    out = torch.zeros_like(x)
    for i in range(n):
        sy, sx = int(dy[i]), int(dx[i])
        src = x[i, :, max(0, -sy):h - max(0, sy), max(0, -sx):w - max(0, sx)]
        out[i, :, max(0, sy):max(0, sy) + src.shape[1], max(0, sx):max(0, sx) + src.shape[2]] = src
    return out


def cutout(x, top, left, size):
    out = x.clone()
    for i in range(x.shape[0]):
        t, l = int(top[i]), int(left[i])
        out[i, :, max(0, t):max(0, t + int(size[0])), max(0, l):max(0, l + int(size[1]))] = 0
    return out


def affine(x, theta):
    grid = F.affine_grid(theta, list(x.shape), align_corners=True)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def apply(d, name):
    x = d[name + ".x"].double()
    for group in d[name + ".groups"].split(","):
        get = lambda k: d[name + "." + k].double()
        if group == "color":
            x = x + get("brightness").view(-1, 1, 1, 1)
            m = x.mean(1, keepdim=True)
            x = (x - m) * get("saturation").view(-1, 1, 1, 1) + m
            m = x.mean((1, 2, 3), keepdim=True)
            x = (x - m) * get("contrast").view(-1, 1, 1, 1) + m
        elif group == "crop":
            x = translate(x, d[name + ".shift_y"], d[name + ".shift_x"])
        elif group == "cutout":
            x = cutout(x, d[name + ".cutout_top"], d[name + ".cutout_left"], d[name + ".cutout_size"])
        elif group == "flip":
            f = d[name + ".flip"].bool().view(-1, 1, 1, 1)
            x = torch.where(f, x.flip(3), x)
        elif group == "scale":
            sx, sy = get("scale_x"), get("scale_y")
            z = torch.zeros_like(sx)
            x = affine(x, torch.stack([torch.stack([sx, z, z], 1), torch.stack([z, sy, z], 1)], 1))
        elif group == "rotate":
            a = get("angle")
            c, s, z = a.cos(), a.sin(), torch.zeros_like(a)
            x = affine(x, torch.stack([torch.stack([c, -s, z], 1), torch.stack([s, c, z], 1)], 1))
        else:
            raise ValueError(group)
    return x.float()


d = torch.load(sys.argv[1])
out = {name + ".y": apply(d, name) for name in d["cases"].split(",")}
torch.save(out, sys.argv[2])
