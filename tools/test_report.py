#!/usr/bin/env python3
"""Write the test report (markdown) from the JSON files the pytest plugin left.

    tools/test_report.py .test-report docs/test-report.md

One section per pytest session in the order they ran (unit tests, demo app, lab,
then each molecule scenario), one table per test file: each scenario, input and
check as its test names it, with its result. A session that collected nothing, or
a failure anywhere, shows at the top.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

MARK = {"passed": "passed", "failed": "**FAILED**", "error": "**ERROR**", "skipped": "skipped"}


def describe(nodeid: str) -> tuple[str, str, str]:
    """(file, check, input) of a node id: test_12_bad_input_x[a-b] -> ('...', '12 bad input x', 'a-b')."""
    path, _, name = nodeid.partition("::")
    name = name.split("::")[-1]
    base, _, params = name.partition("[")
    check = re.sub(r"^test_", "", base).replace("_", " ")
    return path, check, params.rstrip("]")


def render(sessions: list[dict]) -> str:
    total = defaultdict(int)
    for session in sessions:
        for test in session["tests"]:
            total[test["outcome"]] += 1
    empty = [s["session"] for s in sessions if not s["tests"]]
    lines = [
        "# Test report",
        "",
        "Written by `make test` (tools/test_report.py, from what every pytest session of the run recorded).",
        f"Run finished {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(max(s['finished'] for s in sessions)))}"
        if sessions else "No session recorded anything.",
        "",
        f"**{total['passed']} passed, {total['failed']} failed, {total['error']} errors, {total['skipped']} skipped** "
        f"in {len(sessions)} sessions.",
        "",
    ]
    if empty:
        lines += [f"**Sessions that collected no test (a failure):** {', '.join(empty)}", ""]
    failed = [(s["session"], t) for s in sessions for t in s["tests"] if t["outcome"] in ("failed", "error")]
    if failed:
        lines += ["## Failures", ""] + [f"- {session}: `{t['nodeid']}`" for session, t in failed] + [""]
    lines += ["## Sessions", "", "| session | tests | passed | failed | skipped | time |", "|---|---:|---:|---:|---:|---:|"]
    for s in sessions:
        counts = defaultdict(int)
        for t in s["tests"]:
            counts[t["outcome"]] += 1
        seconds = sum(t["duration"] for t in s["tests"])
        lines.append(f"| {s['session']} | {len(s['tests'])} | {counts['passed']} | {counts['failed'] + counts['error']} "
                     f"| {counts['skipped']} | {seconds:.0f} s |")
    lines.append("")
    measured = [(s["session"], t) for s in sessions for t in s["tests"] if t.get("measured")]
    if measured:
        lines += ["## Measured", "", "What tests printed as measured (`measured: ` lines), e.g. requests through nginx "
                  "under load: failed of total.", ""]
        for name, t in measured:
            lines += [f"- {name}, {describe(t['nodeid'])[1]}: {line}" for line in t["measured"]]
        lines.append("")
    for s in sessions:
        lines += [f"## {s['session']}", ""]
        by_file: dict[str, list[dict]] = defaultdict(list)
        for t in s["tests"]:
            by_file[describe(t["nodeid"])[0]].append(t)
        for path, tests in by_file.items():
            lines += [f"### {path}", "", "| check | input | result | s |", "|---|---|---|---:|"]
            for t in tests:
                _, check, params = describe(t["nodeid"])
                doc = f" - {t['doc']}" if t.get("doc") else ""
                result = MARK.get(t["outcome"], t["outcome"])
                if t["outcome"] == "skipped" and t.get("reason"):
                    result += f" ({t['reason']})"
                cell = (check + doc).replace("|", "\\|")
                lines.append(f"| {cell} | {params.replace('|', chr(92) + '|')} | {result} | {t['duration']:.1f} |")
            lines.append("")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    source, target = Path(argv[0]), Path(argv[1])
    sessions = sorted((json.loads(p.read_text()) for p in source.glob("*.json")), key=lambda s: s["finished"])
    target.write_text(render(sessions) + "\n")
    print(f"test report: {target} ({sum(len(s['tests']) for s in sessions)} tests in {len(sessions)} sessions)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
