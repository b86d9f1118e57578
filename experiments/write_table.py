#!/usr/bin/env python3
"""Writes a results table from distill `results.json` files into README.md between markers.

    experiments/write_table.py NAME "caption" results1.json [results2.json ...]

replaces the block between `<!-- table:NAME -->` and `<!-- /table:NAME -->` in README.md with the
caption and the evaluation table (one row per set x model: mean ± std of last-epoch test accuracy,
best-epoch mean, runs). The table is `distill report --format markdown`'s output, the code that
draws the same table in run reports, so a README table and a report never disagree. The binary is
$DISTILL, else ${BUILD_DIR:-build}/src/distill. Numbers come only from the files given.
"""
import os
import pathlib
import subprocess
import sys

import readme_tables


def distill_binary():
    if os.environ.get("DISTILL"):
        return os.environ["DISTILL"]
    root = pathlib.Path(__file__).resolve().parent.parent
    return str(pathlib.Path(os.environ.get("BUILD_DIR", root / "build")) / "src" / "distill")


def eval_table(paths):
    """The Markdown lines of the evaluation table of these results files (or run folders)."""
    done = subprocess.run([distill_binary(), "report", "--format", "markdown", *map(str, paths)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"write_table.py: distill report failed ({done.returncode}):\n{done.stderr}")
    return done.stdout.rstrip("\n").split("\n")


def main():
    name, caption, paths = sys.argv[1], sys.argv[2], sys.argv[3:]
    readme_tables.write_block(name, [caption, ""] + eval_table(paths))


if __name__ == "__main__":
    main()
