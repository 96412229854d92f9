"""tools/test_report.py and its pytest plugin: what ran, with which input, and how it ended."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import test_report  # noqa: E402


def session(name, tests, finished=1.0):
    return {"session": name, "finished": finished, "exitstatus": 0, "collected": len(tests), "tests": tests}


def result(nodeid, outcome="passed", doc=""):
    return {"nodeid": nodeid, "outcome": outcome, "duration": 1.25, "doc": doc}


def test_the_report_names_each_check_with_its_input_and_puts_failures_first():
    text = test_report.render([
        session("tests/unit", [result("test_a.py::test_ok")]),
        session("molecule scenario deploy", [
            result("tests/test_rollout.py::test_12_bad_input_fails[gunicorn-wrong type]", doc="Each bad value is refused."),
            result("tests/test_rollout.py::test_19_socket_taken", outcome="failed"),
        ], finished=2.0),
        session("molecule scenario web", [], finished=3.0),
    ])
    assert "**2 passed, 1 failed, 0 errors, 0 skipped** in 3 sessions." in text
    assert text.index("## Failures") < text.index("## Sessions")
    assert "- molecule scenario deploy: `tests/test_rollout.py::test_19_socket_taken`" in text
    assert "collected no test (a failure):** molecule scenario web" in text
    assert "| 12 bad input fails - Each bad value is refused. | gunicorn-wrong type | passed | 1.2 |" in text
    assert "| 19 socket taken |  | **FAILED** |" in text


def test_the_plugin_records_a_pytest_session(tmp_path):
    (tmp_path / "test_sample.py").write_text(
        "import pytest\n\n"
        "def test_one():\n    '''It works.'''\n\n"
        "@pytest.mark.parametrize('x', [1, 2])\ndef test_two(x):\n    assert x == 1\n\n"
        "@pytest.mark.skip(reason='not here')\ndef test_three():\n    pass\n\n"
        "def test_four():\n    print('noise')\n    print('measured: deploy web1: 0 failed of 1234')\n")
    report_dir = tmp_path / "report"
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT / "tools" / "pytest_plugins"),
           "PYTEST_PLUGINS": "webstack_report", "WEBSTACK_REPORT_DIR": str(report_dir)}
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                   cwd=tmp_path, env=env, capture_output=True, check=False)
    [data] = [json.loads(p.read_text()) for p in report_dir.glob("*.json")]
    outcomes = {t["nodeid"].split("::")[1]: t["outcome"] for t in data["tests"]}
    assert outcomes == {"test_one": "passed", "test_two[1]": "passed", "test_two[2]": "failed", "test_three": "skipped",
                        "test_four": "passed"}
    assert [t.get("measured") for t in data["tests"] if t["nodeid"].endswith("test_four")] == [
        ["deploy web1: 0 failed of 1234"]]
    assert [t["doc"] for t in data["tests"] if t["nodeid"].endswith("test_one")] == ["It works."]
    assert data["collected"] == 5
    text = test_report.render([data])
    assert "## Measured" in text and "four: deploy web1: 0 failed of 1234" in text
