"""The one place the experiments' table writers touch README.md: a named block between
`<!-- table:NAME -->` and `<!-- /table:NAME -->` is replaced, written to a temporary file first
and renamed, so an interrupted writer never leaves a half-written README."""
import json
import os
import pathlib
import re
import sys

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def write_block(name, lines, readme=README):
    start, end = f"<!-- table:{name} -->", f"<!-- /table:{name} -->"
    text = readme.read_text()
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        sys.exit(f"{readme} has no {start} ... {end} block")
    temporary = readme.with_name(readme.name + ".tmp")
    temporary.write_text(pattern.sub(lambda _: start + "\n" + "\n".join(lines) + "\n" + end, text))
    os.replace(temporary, readme)


def check_block(name, lines, source, readme=README):
    """Exits 1 unless README's block `name` holds exactly `lines` (a table drawn from `source`)."""
    block = "\n".join([f"<!-- table:{name} -->"] + lines + [f"<!-- /table:{name} -->"])
    if block not in readme.read_text():
        sys.exit(f"{readme.name}'s table:{name} differs from what {source} gives")


def load_summary(path, name):
    """A results summary file ({"table", "dataset", "rows"}), empty when not written yet."""
    if not path.exists():
        return {"table": name, "dataset": "fashion-mnist", "rows": []}
    return json.loads(path.read_text())


def write_summary(path, summary):
    """Writes a results summary file through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(summary, indent=2) + "\n")
    os.replace(temporary, path)
