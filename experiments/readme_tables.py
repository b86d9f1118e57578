"""The one place the experiments' table writers touch README.md: a named block between
`<!-- table:NAME -->` and `<!-- /table:NAME -->` is replaced, written to a temporary file first
and renamed, so an interrupted writer never leaves a half-written README."""
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
