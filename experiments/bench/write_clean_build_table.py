#!/usr/bin/env python3
"""README block `table:clean-build` from experiments/results/bench/clean_build_<line>.json
(experiments/bench/clean_build.sh, one file per LibTorch line): the wall time of a clean build plus
the whole test suite.

    experiments/bench/write_clean_build_table.py [RESULTS_DIR]
"""
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import readme_tables  # noqa: E402

folder = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else
                      pathlib.Path(__file__).resolve().parents[1] / "results" / "bench")
LINES = {"debian": "Debian's libtorch-dev", "wheel": "PyPI's torch wheel (CUDA build)"}


def minutes(seconds):
    whole_minutes, rest = divmod(round(seconds), 60)
    return f"{whole_minutes} min {rest:02d} s"


rows = []
for line in LINES:
    path = folder / f"clean_build_{line}.json"
    if not path.exists():
        continue
    r = json.loads(path.read_text())
    if line != "wheel":
        install = "Debian packages"
    elif r["install_s"] < 5:
        install = "wheels already in the cache"
    else:
        install = f"{minutes(r['install_s'])} (download + unpack)"
    rows.append(f"| {LINES[line]} | {r['libtorch']} | `{r['commit']}` | {install} | "
                f"{minutes(r['build_s'])} | {minutes(r['test_s'])} | {minutes(r['total_s'])} | "
                f"{r['ctest']} | {r['load_average_1min_at_start']:.1f} / "
                f"{r['load_average_1min_at_end']:.1f} |")
if not rows:
    sys.exit(f"no clean_build_<line>.json in {folder}")
lines = ["A clean build of everything plus the whole test suite, per LibTorch line "
         "(`experiments/bench/clean_build.sh`: a fresh clone, ccache off, "
         f"{r['cores']} cores; the wheel's download is outside the build time):",
         "",
         "| LibTorch line | version | commit | install | build | tests | build + tests | ctest | "
         "load avg start / end |",
         "|---|---|---|---|---|---|---|---|---|"] + rows
print("\n".join(lines))
readme_tables.write_block("clean-build", lines)
