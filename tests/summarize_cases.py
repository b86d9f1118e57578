#!/usr/bin/python3
"""Counts the test cases of one ctest run from its JUnit file (ctest --output-junit) and names
every skipped case with the reason GoogleTest printed, so a run that skipped is visible."""
import sys
import xml.etree.ElementTree as ET


def skip_reason(output):
    # GoogleTest prints the GTEST_SKIP message on the line(s) before "[  SKIPPED ]".
    lines = [line for line in (output or "").splitlines() if line.strip()]
    for i, line in enumerate(lines):
        if "[  SKIPPED ]" in line:
            reason = [l.strip() for l in lines[max(0, i - 2):i] if "Skipped" not in l
                      and not l.startswith("[")]
            return " ".join(reason) or "(no message)"
    return "(no message)"


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: summarize_cases.py ctest-junit.xml")
    try:
        root = ET.parse(sys.argv[1]).getroot()
    except (OSError, ET.ParseError) as error:
        sys.exit(f"summarize_cases.py: cannot read {sys.argv[1]}: {error}")
    cases = root.iter("testcase")
    ran = passed = failed = 0
    skipped = []
    for case in cases:
        status = case.get("status", "")
        if status == "notrun" or case.find("skipped") is not None:
            skipped.append((case.get("name"), skip_reason(case.findtext("system-out"))))
            continue
        ran += 1
        if status == "fail" or case.find("failure") is not None:
            failed += 1
        else:
            passed += 1
    print(f"test cases: {ran + len(skipped)} listed, {ran} ran, {passed} passed, {failed} failed, "
          f"{len(skipped)} skipped")
    for name, reason in skipped:
        print(f"  skipped {name}: {reason}")
    sys.exit(1 if ran + len(skipped) == 0 else 0)


main()
