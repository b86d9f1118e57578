"""What the multi-process benchmark scripts share: the machine's state beside the figures, and
one atomic write of the JSON result (printed too)."""
import json
import os


def machine():
    """Load and cores at the end of a run: other jobs sharing the cores skew the figures."""
    return {"load_average_1min_at_end": os.getloadavg()[0], "cores": os.cpu_count()}


def write(path, result):
    temporary = path + ".tmp"
    with open(temporary, "w") as f:
        json.dump(result, f, indent=2)
    os.replace(temporary, path)
    print(json.dumps(result, indent=2))
