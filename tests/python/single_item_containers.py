"""Writes torch.save files whose pickles use APPEND / SETITEM (one-element lists, one-key dicts),
which LibTorch 1.13's unpickler cannot read directly, for the C++ rewrite test (argv[1] = folder).
Values are arange-based so the C++ side can check them exactly."""
import sys

import torch

folder = sys.argv[1]
t = lambda n, k: torch.arange(n, dtype=torch.float32) + k
# An MTT buffer holding one expert with two epochs of two parameters, the last epoch shorter.
torch.save([[[t(3, 0), t(2, 10)], [t(3, 20)]]], folder + "/one_expert.pt")
torch.save({"images": t(4, 0)}, folder + "/one_key.pt")
torch.save({"a": [t(2, 5)], "b": {"c": t(1, 7)}, "n": 3, "s": "x"}, folder + "/nested.pt")
