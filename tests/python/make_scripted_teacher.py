"""A TorchScript teacher as a Python user exports one, and its logits on the C++ test's inputs.

    make_scripted_teacher.py MODULE_OUT INPUTS_PT LOGITS_OUT
"""
import sys

import torch

torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 16), torch.nn.ReLU(),
                          torch.nn.Linear(16, 3)).eval()
torch.jit.script(net).save(sys.argv[1])
x = torch.load(sys.argv[2])["x"]
with torch.no_grad():
    # Two keys: LibTorch 1.13 cannot unpickle a dict with exactly one key.
    torch.save({"logits": net(x), "rows": x.shape[0]}, sys.argv[3])
