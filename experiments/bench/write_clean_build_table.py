#!/usr/bin/env python3
"""README block `table:clean-build` from runs/bench/clean_build.json
(experiments/bench/clean_build.sh): the wall time of a clean build plus the whole test suite.

    experiments/bench/write_clean_build_table.py [CLEAN_BUILD_JSON]
"""
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import readme_tables  # noqa: E402

path = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else
                    pathlib.Path(__file__).resolve().parents[2] / "runs" / "bench" /
                    "clean_build.json")
r = json.loads(path.read_text())


def minutes(seconds):
    whole_minutes, rest = divmod(round(seconds), 60)
    return f"{whole_minutes} min {rest:02d} s"


lines = [f"A clean build of everything plus the whole test suite (`experiments/bench/clean_build.sh`: "
         f"a fresh clone of `{r['commit']}`, ccache off, {r['cores']} cores, 1-minute load average "
         f"{r['load_average_1min_at_start']:.1f} at the start and "
         f"{r['load_average_1min_at_end']:.1f} at the end) took {minutes(r['total_s'])}: "
         f"build {minutes(r['build_s'])}, tests {minutes(r['test_s'])} ({r['ctest']})."]
print("\n".join(lines))
readme_tables.write_block("clean-build", lines)
