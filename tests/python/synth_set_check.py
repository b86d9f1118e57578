"""Reads a recovered set (argv[1]) and its relabeled copy (argv[2]) written by `distill synth`."""
import sys

import torch

n, classes = int(sys.argv[3]), int(sys.argv[4])
hard = torch.load(sys.argv[1])
assert hard["images"].dtype == torch.float32 and hard["images"].shape == (n, 1, 8, 8), hard["images"].shape
assert hard["labels"].dtype == torch.int64
assert hard["labels"].tolist() == [i % classes for i in range(n)], hard["labels"].tolist()
assert hard["method"] == "committee-recover", hard["method"]
soft = torch.load(sys.argv[2])
assert torch.equal(soft["images"], hard["images"])
assert soft["labels"].dtype == torch.float32 and soft["labels"].shape == (n, classes)
assert torch.allclose(soft["labels"].sum(1), torch.ones(n), atol=1e-5), soft["labels"].sum(1)
assert bool((soft["labels"] >= 0).all())
assert soft["method"] == "committee-recover+committee-relabel", soft["method"]
assert "label_temperature" not in hard
# Relabelling keeps each image's own class (grids and exports follow it, not the argmax).
assert "classes" not in hard
assert soft["classes"].dtype == torch.int64 and soft["classes"].tolist() == hard["labels"].tolist()
assert soft["label_temperature"].item() == 4.0, soft["label_temperature"]  # synth.relabel.T
print("ok")
