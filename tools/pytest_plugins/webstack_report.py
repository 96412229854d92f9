"""pytest plugin: record every test's outcome for the test report (docs/test-report.md).

Loaded into every pytest session of `make test` (unit tests, the demo app's tests,
the lab's tests and each molecule scenario's testinfra run) through PYTEST_PLUGINS.
When WEBSTACK_REPORT_DIR is set, each session writes one JSON file there: its
name (the molecule scenario, or the directory pytest ran in), and per test its
node id, docstring, outcome and duration, and the lines it printed that start with
"measured: " (numbers such as the failed/total requests of a load). tools/test_report.py
turns the files into markdown.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

_RESULTS: dict[str, dict] = {}
_DOCS: dict[str, str] = {}


def _session_name(config) -> str:
    scenario = os.environ.get("MOLECULE_SCENARIO_NAME")
    if scenario:
        return f"molecule scenario {scenario}"
    root = Path(str(config.rootpath))
    args = [a for a in config.args if not a.startswith("-")]
    target = Path(args[0]) if args else Path(".")
    if not target.is_absolute():
        target = Path(str(config.invocation_params.dir)) / target
    try:
        return str(target.resolve().relative_to(root.resolve())) or root.name
    except ValueError:
        return str(target)


def pytest_collection_modifyitems(session, config, items):
    for item in items:
        doc = getattr(getattr(item, "function", None), "__doc__", None) or ""
        _DOCS[item.nodeid] = " ".join(doc.strip().split("\n\n")[0].split())


# A test prints a line starting with this to have it in the report (e.g. the failed/total of a load).
MEASURED = "measured: "


def pytest_runtest_logreport(report):
    entry = _RESULTS.setdefault(report.nodeid, {"nodeid": report.nodeid, "outcome": "passed", "duration": 0.0})
    entry["duration"] += report.duration
    # Later phases' reports repeat what earlier ones captured: read the call's only.
    output = report.capstdout if report.when == "call" else ""
    measured = [line[len(MEASURED):].strip() for line in (output or "").splitlines() if line.startswith(MEASURED)]
    if measured:
        entry.setdefault("measured", []).extend(measured)
    if report.failed:
        entry["outcome"] = "error" if report.when != "call" else "failed"
    elif report.skipped and entry["outcome"] == "passed":
        entry["outcome"] = "skipped"
        if isinstance(report.longrepr, tuple):
            entry["reason"] = report.longrepr[2]


def pytest_sessionfinish(session, exitstatus):
    directory = os.environ.get("WEBSTACK_REPORT_DIR")
    if not directory:
        return
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    tests = [{**entry, "doc": _DOCS.get(nodeid, "")} for nodeid, entry in _RESULTS.items()]
    data = {"session": _session_name(session.config), "finished": time.time(), "exitstatus": int(exitstatus),
            "collected": session.testscollected, "tests": tests}
    (out / f"{time.time_ns()}-{os.getpid()}.json").write_text(json.dumps(data, indent=1) + "\n")
