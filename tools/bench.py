#!/usr/bin/env python3
"""`make bench`: deploy, switch and roll back the demo app on the benchmark lab
(bench/inventory: web1-web4 on Debian 12, db1) and measure, in one run:

- a first deploy on 1 host (web1) and on 3 hosts (web2-web4), and their ratio;
- a no-change redeploy (and the same with webstack_deploy_converge=always);
- under load through nginx on web1 (8 keep-alive clients): a redeploy of a new
  release, a gunicorn -> uvicorn switch, a hybrid gunicorn + daphne deploy (new
  WebSocket connections opened all along), a rollback (and the time from the
  playbook's start to the previous release serving), a switch to daphne; then,
  on the same host, the seed documents' own procedures on their own configuration
  (bench/seed.yml): `systemctl stop uvicorn; systemctl start gunicorn;
  systemctl reload nginx`, and `systemctl restart gunicorn`;
- requests per second through nginx per server kind, ours next to the seed's.

Writes docs/benchmarks/results.json, results.md and timeline.png (requests and
errors per 100 ms of each step under load, the action and the switch marked).
The lab is booted at the start and removed at the end (--keep leaves it up).

    .venv/bin/python tools/bench.py [--keep] [--out docs/benchmarks]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
from loadgen import Load, WebSocketOpens  # noqa: E402

INVENTORY = ROOT / "bench" / "inventory"
RELEASES = Path("/tmp/webstack-bench")
SITE, SEED_SITE, SEED_PORT = "demo.test", "seed.test", 8080
CLIENTS = 8
BIN = Path(sys.executable).parent
KEY = "/var/lib/webstack-lab/ssh/id_ed25519"
HOSTS = yaml.safe_load((INVENTORY / "hosts.yml").read_text())


def address(name: str) -> str:
    for group in HOSTS.values():
        if name in group["hosts"]:
            return group["hosts"][name]["ansible_host"]
    raise KeyError(name)


def log(message: str) -> None:
    print(f"bench: {message}", flush=True)


# -- driving the lab -----------------------------------------------------------------
def ansible_env() -> dict:
    return {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_COLLECTIONS_PATH": str(ROOT / ".collections"),
            "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}


def playbook(name: str, *args: str, timing: Path | None = None, **extra_vars) -> dict:
    """Run a playbook (webstack.django.<name>, or a path) on the bench lab; return rc and wall time.
    With timing, the task_timing callback (bench/callback_plugins) writes each task's time there."""
    target = name if name.endswith(".yml") else f"webstack.django.{name}"
    env = ansible_env()
    if timing:
        timing.unlink(missing_ok=True)
        env.update(ANSIBLE_CALLBACK_PLUGINS=str(ROOT / "bench" / "callback_plugins"),
                   ANSIBLE_CALLBACKS_ENABLED="task_timing", WEBSTACK_TASK_TIMING=str(timing))
    argv = [str(BIN / "ansible-playbook"), f"--inventory={INVENTORY}", target, *args]
    if extra_vars:
        argv += ["--extra-vars", json.dumps(extra_vars)]
    began, cpu = time.monotonic(), os.times()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=1800, check=False)
    wall = time.monotonic() - began
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-8000:] + proc.stderr[-4000:])
        raise SystemExit(f"bench: {target} {' '.join(args)} {extra_vars} failed (rc={proc.returncode})")
    after = os.times()
    controller_cpu = (after.children_user - cpu.children_user) + (after.children_system - cpu.children_system)
    result = {"rc": proc.returncode, "wall_s": round(wall, 1), "controller_cpu_s": round(controller_cpu, 1)}
    if timing:
        result["slowest_tasks"] = slowest(timing)
    return result


def slowest(timing: Path, count: int = 8) -> list[dict]:
    """The slowest tasks of a run, from the task_timing callback: a task's time runs from its start on
    every host to the next task's (its slowest host), summed when a task runs more than once."""
    totals: dict[str, float] = {}
    for line in timing.read_text().splitlines():
        row = json.loads(line)
        totals[row["task"]] = totals.get(row["task"], 0.0) + row["seconds"]
    return [{"task": task, "s": round(sec, 1)}
            for task, sec in sorted(totals.items(), key=lambda item: -item[1])[:count]]


def ssh(host: str, command: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ssh", "-i", KEY, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                           "-o", "LogLevel=ERROR", f"root@{address(host)}", command],
                          capture_output=True, text=True, timeout=300, check=True)


def lab(*args: str) -> None:
    subprocess.run([sys.executable, str(ROOT / "molecule" / "lab" / "lab.py"), *args, "-i", str(INVENTORY)],
                   env=ansible_env(), check=True)


def make_releases() -> None:
    """r1, r2, r3: the demo project, each with a different comment (three release ids)."""
    subprocess.run(["rm", "-rf", str(RELEASES)], check=True)
    RELEASES.mkdir(parents=True)
    for name in ("r1", "r2", "r3"):
        target = RELEASES / name
        subprocess.run(["cp", "-a", str(ROOT / "examples" / "demoapp"), str(target)], check=True)
        subprocess.run(["rm", "-rf", str(target / "tests"), str(target / "db.sqlite3"), str(target / "staticfiles")],
                       check=True)
        with open(target / "demoapp" / "urls.py", "a", encoding="utf-8") as urls:
            urls.write(f"# benchmark release {name}\n")


def active(host: str = "web1") -> dict:
    return json.loads(ssh(host, "cat /etc/ansible/facts.d/webstack_demo.fact").stdout)["active"]


# -- measuring -------------------------------------------------------------------
def under_load(name: str, action, *, site: str = SITE, port: int = 80, websockets: bool = False,
               before: float = 2.0, after: float = 3.0, target: str = "") -> dict:
    """Run action() while CLIENTS clients load web1 through nginx; return the step's numbers.

    target: the `release/server` that should answer after the action; the step then
    reports when it first answered (seconds after the action started) and from when
    it answered alone.
    """
    load = Load(address("web1"), site, port=port, clients=CLIENTS, duration=900).start()
    opens = WebSocketOpens(address("web1"), site, port=port).start() if websockets else None
    time.sleep(before)
    action_start = load.mark()
    detail = action() or {}
    action_end = load.mark()
    time.sleep(after)
    load.stop()
    if opens:
        opens.stop()
    summary = load.summary()
    step = {
        "step": name,
        "total": summary["total"], "failed": summary["failed"], "ok": summary["ok"],
        "by_status": summary["by_status"], "errors": summary["errors"],
        "keepalive_retries": summary["keepalive_retries"],
        "p50_ms": summary["p50_ms"], "p99_ms": summary["p99_ms"], "max_ms": summary["max_ms"],
        "wall_s": round(action_end - action_start, 1),
        "action_at": round(action_start, 2), "action_end": round(action_end, 2),
        "answered_by": summary["answered_by"],
        "timeline": summary["timeline"],
        **detail,
    }
    answers = sorted((s.at, s.answered_by) for s in load.samples if s.answered_by)
    before_action = [by for at, by in answers if at < action_start]
    if before_action:
        old = max(set(before_action), key=before_action.count)
        switch = next((at for at, by in answers if at >= action_start and by != old), None)
        step["answered_before"] = old
        step["switch_s"] = round(switch - action_start, 1) if switch is not None else None
    if target:
        first = next((at for at, by in answers if by == target and at >= action_start), None)
        last_other = max((at for at, by in answers if by != target), default=None)
        step["target"] = target
        step["target_first_s"] = round(first - action_start, 1) if first is not None else None
        step["target_alone_s"] = round(max(last_other or 0, first or 0) - action_start, 1) if first is not None else None
    if opens:
        step["websocket_opens"] = opens.summary()
        step["websocket_timeline"] = opens.results
    log(f"{name}: {step['failed']} failed of {step['total']}, p50 {step['p50_ms']} ms, p99 {step['p99_ms']} ms, "
        f"{step['wall_s']} s" + (f", websockets {step['websocket_opens']}" if opens else ""))
    return step


def throughput(label: str, kind: str, site: str = SITE, port: int = 80, seconds: float = 5.0, rounds: int = 3,
               between=None) -> dict:
    """Requests per second on /health/ through nginx on web1 (CLIENTS keep-alive clients):
    the median of `rounds` runs of `seconds` (between(), if given, runs before each)."""
    Load(address("web1"), site, port=port, clients=CLIENTS, duration=2).run()  # warm up
    runs = []
    for _ in range(rounds):
        if between:
            between()
        runs.append(Load(address("web1"), site, port=port, clients=CLIENTS, duration=seconds).run().summary())
    runs.sort(key=lambda r: r["rps"])
    median = runs[len(runs) // 2]
    row = {"setup": label, "kind": kind, "rps": median["rps"], "rps_runs": [r["rps"] for r in runs],
           "failed": sum(r["failed"] for r in runs), "total": sum(r["total"] for r in runs),
           "p50_ms": median["p50_ms"], "p99_ms": median["p99_ms"]}
    log(f"throughput {label} ({kind}): {row['rps']} requests/s (runs {row['rps_runs']}), {row['failed']} failed")
    return row


def side_by_side(kind: str, rounds: int = 3) -> list[dict]:
    """Ours (port 80, demo.test) and the seed's (port 8080, seed.test), one round each in turn."""
    ours, seed = [], []
    for _ in range(rounds):
        ours.append(throughput("webstack.django", kind, rounds=1))
        seed.append(throughput("seed", kind, SEED_SITE, SEED_PORT, rounds=1))

    def merge(rows: list[dict]) -> dict:
        rows = sorted(rows, key=lambda r: r["rps"])
        return {**rows[len(rows) // 2], "rps_runs": [r["rps"] for r in rows],
                "failed": sum(r["failed"] for r in rows), "total": sum(r["total"] for r in rows)}

    pair = [merge(ours), merge(seed)]
    pair[0]["ratio_to_seed"] = round(pair[0]["rps"] / pair[1]["rps"], 2) if pair[1]["rps"] else None
    return pair


def answering() -> str:
    """What /health/ on web1 reports now, as the load generator records it (release/server)."""
    state = active()
    return f"{state['release']}/{state['kind']}"


# -- the run ---------------------------------------------------------------------
def run(out: Path, keep: bool) -> dict:
    results: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "clients": CLIENTS,
                     "machine": {"cpus": os.cpu_count(), "kernel": platform.release()}}
    (ROOT / "build").mkdir(exist_ok=True)
    log("booting the lab (bench/inventory)")
    lab("up")
    try:
        playbook(str(ROOT / "molecule" / "shared" / "database.yml"))
        make_releases()
        r1, r2, r3 = (str(RELEASES / name) for name in ("r1", "r2", "r3"))

        log("first deploy on 1 host (web1)")
        one = playbook("deploy", "--limit=web1", webstack_release_source=r1, timing=ROOT / "build" / "bench-timing-first.jsonl")
        log(f"first deploy on 1 host: {one['wall_s']} s; on 3 hosts (web2-web4)")
        three = playbook("deploy", "--limit=web2,web3,web4", webstack_release_source=r1,
                         timing=ROOT / "build" / "bench-timing-first3.jsonl")
        log(f"first deploy on 3 hosts: {three['wall_s']} s; no-change redeploy on web1")
        nochange = playbook("deploy", "--limit=web1", webstack_release_source=r1)
        nochange_full = playbook("deploy", "--limit=web1", webstack_release_source=r1,
                                 webstack_deploy_converge="always")
        results["deploy_times"] = {
            "first_1_host_s": one["wall_s"], "first_3_hosts_s": three["wall_s"],
            "ratio_3_to_1": round(three["wall_s"] / one["wall_s"], 2),
            "no_change_s": nochange["wall_s"], "no_change_ratio": round(nochange["wall_s"] / one["wall_s"], 3),
            "no_change_converge_always_s": nochange_full["wall_s"],
            "no_change_converge_always_ratio": round(nochange_full["wall_s"] / one["wall_s"], 3),
            "first_1_host_slowest_tasks": one["slowest_tasks"],
            "first_3_hosts_slowest_tasks": three["slowest_tasks"],
            "first_1_host_controller_cpu_s": one["controller_cpu_s"],
            "first_3_hosts_controller_cpu_s": three["controller_cpu_s"],
        }
        log(f"deploy times: {results['deploy_times']}")

        steps = []

        def deploy(**extra):
            return lambda: playbook("deploy", "--limit=web1", **extra)

        def rollback(timing: Path | None = None):
            return lambda: playbook("rollback", "--limit=web1", timing=timing)

        r1_gunicorn = answering()
        steps.append(under_load("redeploy, new release (gunicorn)", deploy(webstack_release_source=r2)))
        steps.append(under_load("rollback to the previous release (gunicorn)",
                                rollback(ROOT / "build" / "bench-timing-rollback.jsonl"), target=r1_gunicorn))
        steps.append(under_load("switch gunicorn -> uvicorn (new release)",
                                deploy(webstack_release_source=r2, webstack_deploy_server="uvicorn")))
        r2_uvicorn = answering()
        steps.append(under_load("hybrid deploy, gunicorn + daphne (new release)",
                                deploy(webstack_release_source=r3, webstack_deploy_server="hybrid"), websockets=True))
        steps.append(under_load("rollback from hybrid to uvicorn", rollback(), websockets=True, target=r2_uvicorn))
        steps.append(under_load("switch uvicorn -> daphne", deploy(webstack_release_source=r2,
                                                                   webstack_deploy_server="daphne"), websockets=True))

        log("the seed's configuration on web1 (bench/seed.yml): uvicorn on 127.0.0.1:8000, nginx on :8080")
        playbook(str(ROOT / "bench" / "seed.yml"))
        seed_switch = "systemctl stop uvicorn; systemctl start gunicorn; systemctl reload nginx"
        steps.append(under_load(f"seed: {seed_switch}", lambda: {"command": seed_switch, **_ssh_timed(seed_switch)},
                                site=SEED_SITE, port=SEED_PORT))
        seed_restart = "systemctl restart gunicorn"
        steps.append(under_load(f"seed: {seed_restart}", lambda: {"command": seed_restart, **_ssh_timed(seed_restart)},
                                site=SEED_SITE, port=SEED_PORT))

        log("requests per second, ours and the seed's side by side (rounds alternate)")
        rates = [throughput("webstack.django", "daphne (1 instance)")]
        playbook("deploy", "--limit=web1", webstack_release_source=r2, webstack_deploy_server="gunicorn")
        rates += side_by_side("gunicorn (sync, 2 workers)")
        # What our defaults cost: every request in the journal, workers replaced every 1000 +- 100 requests.
        playbook("deploy", "--limit=web1", webstack_release_source=r2, webstack_deploy_server="gunicorn",
                 webstack_gunicorn_access_log=False, webstack_gunicorn_max_requests=0)
        rates.append(throughput("webstack.django, webstack_gunicorn_access_log=false, webstack_gunicorn_max_requests=0",
                                "gunicorn (sync, 2 workers)"))
        playbook("deploy", "--limit=web1", webstack_release_source=r2, webstack_deploy_server="uvicorn")
        ssh("web1", "systemctl stop gunicorn; systemctl start uvicorn")
        time.sleep(2)
        rates += side_by_side("uvicorn (2 workers)")
        results["steps"] = steps
        results["throughput"] = rates
        results["rollback"] = [{"step": s["step"], "wall_s": s["wall_s"], "previous_serving_s": s.get("target_first_s"),
                                "previous_alone_s": s.get("target_alone_s")}
                               for s in steps if s["step"].startswith("rollback")]
    finally:
        if not keep:
            log("removing the lab")
            lab("down")
    results["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    write(results, out)
    return results


def _ssh_timed(command: str) -> dict:
    began = time.monotonic()
    ssh("web1", command)
    return {"command_s": round(time.monotonic() - began, 2)}


# -- output ----------------------------------------------------------------------
def markdown(results: dict) -> str:
    d = results["deploy_times"]
    rollbacks = results["rollback"]
    lines = [
        "# Benchmark results",
        "",
        f"`make bench`, {results['started']} to {results['finished']}: one run on the benchmark lab "
        f"(systemd-nspawn hosts on one machine with {results['machine']['cpus']} CPUs; the load generator, "
        f"ansible-playbook and every host share them). Load: {results['clients']} keep-alive clients looping "
        "on `/health/` through nginx on web1. A request fails when it gets no HTTP answer or a status "
        "outside 200-399; a request on a kept-alive connection that nginx closed before answering is sent once "
        "more, as browsers do, and counted under *retries*.",
        "",
        "## Steps under load",
        "",
        "| step | failed / total | p50 ms | p99 ms | wall s | retries | notes |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in results["steps"]:
        notes = []
        if s["failed"]:
            notes.append("statuses " + ", ".join(f"{k}: {v}" for k, v in s["by_status"].items() if not k.startswith(("2", "3")))
                         + (", errors " + json.dumps(s["errors"]) if s["errors"] else ""))
        if "websocket_opens" in s:
            w = s["websocket_opens"]
            notes.append(f"new WebSockets: {w['ok']} of {w['opened']} echoed")
        if s.get("target_first_s") is not None:
            notes.append(f"previous release answering {s['target_first_s']} s after the start, alone after "
                         f"{s['target_alone_s']} s")
        elif s.get("switch_s") is not None:
            notes.append(f"new answers from {s['switch_s']} s after the start")
        lines.append(f"| {s['step']} | **{s['failed']}** / {s['total']} | {s['p50_ms']} | {s['p99_ms']} | "
                     f"{s['wall_s']} | {s['keepalive_retries']} | {'; '.join(notes)} |")
    lines += [
        "",
        "*wall s*: the playbook (or the seed's commands) from start to end; the load ran 2 s before and 3 s after.",
        "",
        "## Deploy and rollback times (no load)",
        "",
        "| measure | seconds | ratio |",
        "|---|---|---|",
        f"| first deploy, 1 host | {d['first_1_host_s']} | 1 |",
        f"| first deploy, 3 hosts | {d['first_3_hosts_s']} | {d['ratio_3_to_1']} (target 1.5 or less) |",
        f"| no-change redeploy | {d['no_change_s']} | {d['no_change_ratio']} of a first deploy (target 0.25 or less) |",
        f"| no-change redeploy, `webstack_deploy_converge=always` | {d['no_change_converge_always_s']} | "
        f"{d['no_change_converge_always_ratio']} |",
    ]
    for rb in rollbacks:
        lines += [
            f"| {rb['step']}, under load: playbook start to previous release serving | {rb['previous_serving_s']} | "
            "target 15 or less |",
            f"| {rb['step']}, under load: playbook start to previous release serving alone | {rb['previous_alone_s']} | |",
            f"| {rb['step']}, under load: whole playbook (drain and summary included) | {rb['wall_s']} | |",
        ]
    lines += [
        "",
        "## Requests per second through nginx (web1, same client)",
        "",
        "| setup | server | requests/s (median) | runs | ours / seed | failed | p50 ms | p99 ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results["throughput"]:
        runs = ", ".join(str(x) for x in r.get("rps_runs", []))
        ratio = r.get("ratio_to_seed")
        lines.append(f"| {r['setup']} | {r['kind']} | {r['rps']} | {runs} | {'' if ratio is None else ratio} | "
                     f"{r['failed']} | {r['p50_ms']} | {r['p99_ms']} |")
    lines += ["", "## Where the time goes", "", "Slowest tasks of the first deploy on 1 host (seconds):", ""]
    lines += [f"- {t['s']} {t['task']}" for t in d.get("first_1_host_slowest_tasks", [])]
    if d.get("first_3_hosts_slowest_tasks"):
        lines += ["", "The same on 3 hosts (each task's time is the slowest host's):", ""]
        lines += [f"- {t['s']} {t['task']}" for t in d["first_3_hosts_slowest_tasks"]]
        lines += ["", f"CPU time of ansible-playbook itself (controller): {d['first_1_host_controller_cpu_s']} s for "
                  f"1 host, {d['first_3_hosts_controller_cpu_s']} s for 3 hosts."]
    rollback = next((s for s in results["steps"] if s["step"].startswith("rollback")), {})
    if rollback.get("slowest_tasks"):
        lines += ["", "Slowest tasks of the rollback under load (seconds):", ""]
        lines += [f"- {t['s']} {t['task']}" for t in rollback["slowest_tasks"]]
    lines += ["", "## Timeline", "", "![requests and errors per 100 ms](timeline.png)", ""]
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = results["steps"]
    fig, axes = plt.subplots(len(steps), 1, figsize=(11, 2.3 * len(steps)), sharex=False)
    for ax, s in zip(axes, steps):
        t = [b["t"] for b in s["timeline"]]
        ax.plot(t, [b["requests"] for b in s["timeline"]], color="tab:blue", linewidth=0.8, label="requests / 100 ms")
        ax.bar(t, [b.get("errors", 0) for b in s["timeline"]], width=0.1, color="tab:red", label="failed / 100 ms")
        ax.axvline(s["action_at"], color="black", linestyle="--", linewidth=0.8, label="action starts / ends")
        ax.axvline(s["action_end"], color="black", linestyle="--", linewidth=0.8)
        if s.get("switch_s") is not None:
            ax.axvline(s["action_at"] + s["switch_s"], color="tab:green", linewidth=1.2,
                       label="first answer from the new slot" if s.get("target_first_s") is None
                       else "previous release answers")
        failed = [at for at, outcome in s.get("websocket_timeline", []) if outcome != "ok"]
        if failed:
            ax.plot(failed, [0] * len(failed), "x", color="tab:purple", label="WebSocket open failed")
        ax.set_title(f"{s['step']}: {s['failed']} failed of {s['total']}", fontsize=9, loc="left")
        ax.set_ylabel("per 100 ms", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6, loc="lower left", ncol=4)
    axes[-1].set_xlabel("seconds since the load started")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def write(results: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (out / "results.md").write_text(markdown(results))
    plot(results, out / "timeline.png")
    log(f"wrote {out}/results.json, results.md, timeline.png")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks")
    parser.add_argument("--keep", action="store_true", help="leave the lab up at the end")
    parser.add_argument("--render", action="store_true", help="only rewrite results.md and timeline.png from results.json")
    args = parser.parse_args(argv)
    if args.render:
        results = json.loads((args.out / "results.json").read_text())
        write(results, args.out)
        return 0
    results = run(args.out, args.keep)
    ours = [s for s in results["steps"] if not s["step"].startswith("seed")]
    return 0 if all(s["failed"] == 0 for s in ours) else 1


if __name__ == "__main__":
    sys.exit(main())
