"""A torch.save dataset as a Python user would write it: uint8 N,H,W images, int labels."""
import sys

import torch

images = torch.arange(6 * 4 * 5).reshape(6, 4, 5).remainder(256).to(torch.uint8)
images[5, 3, 4] = 255
labels = torch.tensor([0, 1, 2, 0, 1, 2])
torch.save({"images": images, "labels": labels, "test_images": images, "test_labels": labels},
           sys.argv[1])
