"""README tables of issue 24's reliability scripts, from their committed results:
`table:kill-resume` from experiments/results/reliability/kill_resume.json (kill_resume.sh) and
`table:seeded-outputs` from seeded_outputs_before.json / seeded_outputs_after.json
(seeded_outputs.sh run before and after a refactor of the loops), `table:parse-time` from
parse_time.json (parse_time.sh)."""
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
from readme_tables import write_block  # noqa: E402

RESULTS = pathlib.Path(__file__).resolve().parent.parent / "results" / "reliability"


def kill_resume_lines():
    run = json.loads((RESULTS / "kill_resume.json").read_text())
    lines = [
        f"{run['kills_per_command']} kills asked per command; commit {run['commit']}, "
        f"{run['torch']}, {run['date']} (`experiments/reliability/kill_resume.sh`).",
        "",
        "| command | kills | in a write | resumed | cycles | identical | lost | straight run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    rows = run["rows"]
    for row in rows:
        lines.append(
            f"| {row['command']} | {row['kills']} | {row.get('in_write', 0)} | {row['resumed']} "
            f"| {row['cycles']} | {row['identical']} | {row['lost']} "
            f"| {row['straight_ms'] / 1000:.1f} s |")
    cycles = sum(r["cycles"] for r in rows)
    identical = sum(r["identical"] for r in rows)
    lost = sum(r["lost"] for r in rows)
    lines += ["", f"In all: {sum(r['kills'] for r in rows)} kills, "
              f"{sum(r.get('in_write', 0) for r in rows)} of them inside an atomic write; "
              f"{identical} of {cycles} cycles ended byte-identical to the straight run, "
              f"{lost} lost work."]
    return lines


def seeded_outputs_lines():
    before = json.loads((RESULTS / "seeded_outputs_before.json").read_text())
    after = json.loads((RESULTS / "seeded_outputs_after.json").read_text())
    hashes = {(r["command"], r["file"]): r["sha256"] for r in after["outputs"]}
    lines = [
        f"Before: commit {before['commit']}; after: commit {after['commit']}"
        f"{' (with uncommitted changes)' if after['sources_modified'] else ''}; {after['torch']}.",
        "",
        "| job | file | SHA-256 (first 16) before | after | identical |",
        "|---|---|---|---|---|",
    ]
    for r in before["outputs"]:
        now = hashes.get((r["command"], r["file"]), "")
        lines.append(f"| {r['command']} | `{r['file']}` | `{r['sha256'][:16]}` | `{now[:16]}` "
                     f"| {'yes' if now == r['sha256'] else '**no**'} |")
    return lines


def parse_time_lines():
    run = json.loads((RESULTS / "parse_time.json").read_text())
    rows = run["rows"]
    seconds = sorted(r["seconds"] for r in rows)
    ok = [r for r in rows if r["exit_code"] == 2 and r["message_found"] and not r["folder_created"]]
    by_command = {}
    for r in rows:
        words = r["args"].split()
        name = " ".join(words[:2]) if words[0] in ("synth", "diffusion", "committee") else words[0]
        by_command.setdefault(name, []).append(r["seconds"])
    lines = [
        f"{len(rows)} bad settings (`tests/src/cli/data/bad_settings.tsv`) on the full Fashion-MNIST "
        f"configuration; commit {run['commit']}, load {run['load']} "
        "(`experiments/reliability/parse_time.sh`): "
        f"{len(ok)} of {len(rows)} exit 2 naming the key, no run folder made; "
        f"slowest {seconds[-1]:.2f} s, median {seconds[len(seconds) // 2]:.2f} s.",
        "",
        "| command | cases | slowest s |",
        "|---|---|---|",
    ]
    for name, times in sorted(by_command.items()):
        lines.append(f"| {name} | {len(times)} | {max(times):.2f} |")
    return lines


if __name__ == "__main__":
    if (RESULTS / "parse_time.json").exists():
        write_block("parse-time", parse_time_lines())
    if (RESULTS / "kill_resume.json").exists():
        write_block("kill-resume", kill_resume_lines())
    if (RESULTS / "seeded_outputs_after.json").exists():
        write_block("seeded-outputs", seeded_outputs_lines())
