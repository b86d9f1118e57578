"""Reads a distill set file (argv[1]), checks its layout, writes a soft-label set (argv[2])."""
import sys

import torch

s = torch.load(sys.argv[1])
assert s["images"].dtype == torch.float32 and s["images"].shape == (6, 1, 4, 4), s["images"].shape
assert s["labels"].dtype == torch.int64 and s["labels"].tolist() == [0, 0, 1, 1, 2, 2]
assert s["num_classes"] == 3 and abs(float(s["lr"]) - 0.02) < 1e-7
assert s["mean"].tolist() == [0.5] and s["std"].tolist() == [0.25]
assert s["dataset"] == "toy" and s["method"] == "test"
soft = torch.nn.functional.one_hot(s["labels"], 3).float() * 0.8 + 0.2 / 3
torch.save({"images": s["images"], "labels": soft, "mean": s["mean"], "std": s["std"]}, sys.argv[2])
