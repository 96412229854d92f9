"""tools/bench.py's report: the markdown table says what the numbers say."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import bench  # noqa: E402


def step(name, failed, total, **extra):
    return {"step": name, "failed": failed, "total": total, "ok": total - failed,
            "by_status": {"200": total - failed, **({"502": failed} if failed else {})}, "errors": {},
            "keepalive_retries": 1, "p50_ms": 3.5, "p99_ms": 40.0, "max_ms": 90.0, "wall_s": 30.2,
            "action_at": 2.0, "action_end": 32.2, "answered_by": {}, "timeline": [], **extra}


RESULTS = {
    "started": "2026-12-01T00:00:00Z", "finished": "2026-12-01T00:10:00Z", "clients": 8,
    "machine": {"cpus": 2, "kernel": "6"},
    "deploy_times": {"first_1_host_s": 60.0, "first_3_hosts_s": 80.0, "ratio_3_to_1": 1.33, "no_change_s": 4.5,
                     "no_change_ratio": 0.075, "no_change_converge_always_s": 27.0,
                     "no_change_converge_always_ratio": 0.45,
                     "first_1_host_slowest_tasks": [{"task": "Install the release's requirements", "s": 12.8}]},
    "rollback": [{"step": "rollback (to uvicorn)", "wall_s": 14.0, "previous_serving_s": 6.1, "previous_alone_s": 6.5}],
    "steps": [step("redeploy", 0, 9000),
              step("rollback (to uvicorn)", 0, 5000, target_first_s=6.1, target_alone_s=6.5,
                   websocket_opens={"opened": 100, "ok": 100, "failed": 0, "failures": {}}),
              step("seed: systemctl restart gunicorn", 297, 6773)],
    "throughput": [{"setup": "webstack.django", "kind": "gunicorn", "rps": 950.0, "rps_runs": [940.0, 950.0, 990.0],
                    "ratio_to_seed": 1.06, "failed": 0, "total": 9000, "p50_ms": 8, "p99_ms": 20},
                   {"setup": "seed", "kind": "gunicorn", "rps": 900.0, "rps_runs": [900.0], "failed": 0, "total": 9000,
                    "p50_ms": 8, "p99_ms": 20}],
}


def test_the_table_shows_failed_of_total_for_each_step():
    text = bench.markdown(json.loads(json.dumps(RESULTS)))
    assert "| redeploy | **0** / 9000 |" in text
    assert "| seed: systemctl restart gunicorn | **297** / 6773 |" in text
    assert "statuses 502: 297" in text
    assert "new WebSockets: 100 of 100 echoed" in text
    assert "previous release answering 6.1 s after the start" in text
    assert "| first deploy, 3 hosts | 80.0 | 1.33 (target 1.5 or less) |" in text
    assert "- 12.8 Install the release's requirements" in text
    assert "| rollback (to uvicorn), under load: playbook start to previous release serving | 6.1 |" in text
    assert "| webstack.django | gunicorn | 950.0 | 940.0, 950.0, 990.0 | 1.06 |" in text


def test_slowest_sums_repeated_tasks(tmp_path):
    timing = tmp_path / "t.jsonl"
    rows = [{"task": "a", "seconds": 1.0}, {"task": "b", "seconds": 0.5}, {"task": "a", "seconds": 2.0}]
    timing.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert bench.slowest(timing) == [{"task": "a", "s": 3.0}, {"task": "b", "s": 0.5}]
