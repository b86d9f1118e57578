"""A distilled set as the Python reference code saves it (MTT/DATM: bare tensors written with
torch.save), for `distill import`: images_best.pt (N,1,8,8), hard labels (labels_ids.pt), learned
logits (labels_logits.pt, with their softmax in expected_probabilities.pt for the check),
probability rows (labels_probabilities.pt) and a learned lr (syn_lr_best.pt, a 0-dim tensor that
requires grad, as MTT keeps it).

    reference_set_files.py OUT_DIR
"""
import os
import sys

import torch

out = sys.argv[1]
torch.manual_seed(0)
images = torch.randn(6, 1, 8, 8)
ids = torch.tensor([0, 0, 1, 1, 2, 2])
logits = torch.randn(6, 3) * 3
probabilities = torch.softmax(torch.randn(6, 3), 1)
lr = torch.tensor(0.0123, requires_grad=True)
torch.save(images, os.path.join(out, "images_best.pt"))
torch.save(ids, os.path.join(out, "labels_ids.pt"))
torch.save(logits, os.path.join(out, "labels_logits.pt"))
torch.save(torch.softmax(logits, 1), os.path.join(out, "expected_probabilities.pt"))
torch.save(probabilities, os.path.join(out, "labels_probabilities.pt"))
torch.save(lr, os.path.join(out, "syn_lr_best.pt"))
torch.save(images[:, :, :7, :7].contiguous(), os.path.join(out, "images_7x7.pt"))
torch.save(ids[:5].clone(), os.path.join(out, "labels_five.pt"))
torch.save({"images": images}, os.path.join(out, "a_dict.pt"))
