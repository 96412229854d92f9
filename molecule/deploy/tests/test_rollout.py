"""The rollout of the issue, step by step, on web1 (Debian 12) and web2 (Debian 13).

converge did step 1 (first deploy on gunicorn, twice: molecule's idempotence).
Each later test runs one playbook as a user would, then looks from outside:
/health/ through nginx on every host says which release and server kind answer,
the migration of r2 has run exactly once, and running the same step again
changes nothing. The tests run in order; each builds on the one before.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import (INVENTORIES, PROJECT, RELEASES, SITE, WEB, Load, Run, WebSocket, address, get, health,
                      measured, playbook, start_playbook, state)

R2 = str(RELEASES / "r2")
SEEN: dict[str, str] = {}


def serving(hosts, kind: str, slot: str) -> str:
    """Assert every web server serves one release on `kind` from `slot`; return the release."""
    answers = {name: health(name) for name in WEB}
    for name, answer in answers.items():
        assert answer["http_status"] == 200, (name, answer)
        assert answer["server"] == kind, (name, answer)
        active = state(hosts[name])["active"]
        assert active["slot"] == slot, (name, active)
        assert answer["release"] == active["release"], (name, answer, active)
        for unit in active["units"]:
            assert hosts[name].service(unit).is_running, (name, unit)
    releases = {answer["release"] for answer in answers.values()}
    assert len(releases) == 1, f"hosts serve different releases: {answers}"
    return releases.pop()


def migration_runs(hosts) -> int:
    """How many times r2's data migration has run (it adds one row per run)."""
    out = hosts["db1"].check_output(
        "runuser -u postgres -- psql -d demo -tAc \"select count(*) from pulse_hit where release='migration-0002'\"")
    return int(out.strip())


def migrate_audit_lines(hosts) -> int:
    """Audit log lines, over all web servers, of a deploy that applied r2's migration."""
    return sum(int(hosts[name].check_output("grep -c ' migrate: .*0002_record_migration' /var/log/webstack-demo.log || true") or 0)
               for name in WEB)


def slot_units_stopped(hosts, slot: str) -> None:
    for name in WEB:
        out = hosts[name].check_output(f"systemctl list-units --state=active --plain --no-legend 'demo-{slot}-*' || true")
        assert out.strip() == "", (name, out)


NOTHING_CHANGED = "Nothing changed since the last full deploy"


def rerun_changes_nothing(name: str, *args, full: bool = False, **extra) -> None:
    """The same run again changes nothing. A deploy is run as is (it finds nothing changed
    and only probes through nginx) and, with full=True, with webstack_deploy_converge=always
    (every role runs, and each finds its work done)."""
    again = playbook(name, *args, **extra)
    assert again.rc == 0, again
    for host in WEB:
        assert again.changed(host) == 0, (host, again.recap, again)
    if name == "deploy":
        assert again.output.count(NOTHING_CHANGED) == len(WEB), again
    if name == "deploy" and full:
        every = playbook(name, *args, **{**extra, "webstack_deploy_converge": "always"})
        assert every.rc == 0, every
        assert NOTHING_CHANGED not in every.output, every
        for host in WEB:
            assert every.changed(host) == 0, (host, every.recap, every)


def test_1_first_deploy_on_gunicorn(hosts):
    SEEN["r1"] = serving(hosts, "gunicorn-sync", "blue")
    assert migration_runs(hosts) == 0
    for name in WEB:
        env = hosts[name].file("/etc/demo/blue.env")
        assert (env.user, env.group, env.mode) == ("root", "demo", 0o640)
        assert not hosts[name].file("/etc/demo/green.env").exists


def test_2_new_release_migrates_once(hosts):
    run = playbook("deploy", webstack_release_source=R2)
    assert run.rc == 0, run
    SEEN["r2"] = serving(hosts, "gunicorn-sync", "green")
    assert SEEN["r2"] != SEEN["r1"]
    assert migration_runs(hosts) == 1
    assert migrate_audit_lines(hosts) == 1
    slot_units_stopped(hosts, "blue")
    rerun_changes_nothing("deploy", webstack_release_source=R2, full=True)
    assert migration_runs(hosts) == 1


def test_2b_a_hand_edit_is_repaired_by_the_next_deploy(hosts):
    """Nothing changed but a file: the next deploy runs the roles (no "nothing changed"
    shortcut), puts the file back, and the one after finds nothing to do."""
    site = "/etc/nginx/sites-available/demo.conf"
    web1 = hosts[WEB[0]]
    original = web1.file(site).content_string
    web1.check_output(f"echo '# edited by hand' >> {site}")
    run = playbook("deploy", webstack_release_source=R2)
    assert run.rc == 0, run
    assert run.output.count(NOTHING_CHANGED) == len(WEB) - 1, run  # web2 only
    assert run.changed(WEB[0]) > 0, run.recap
    assert web1.file(site).content_string == original
    again = playbook("deploy", webstack_release_source=R2)
    assert again.rc == 0 and again.output.count(NOTHING_CHANGED) == len(WEB), again
    assert serving(hosts, "gunicorn-sync", "green") == SEEN["r2"]


def test_3_switch_to_uvicorn(hosts):
    run = playbook("deploy", webstack_release_source=R2, webstack_deploy_server="uvicorn")
    assert run.rc == 0, run
    assert serving(hosts, "uvicorn", "blue") == SEEN["r2"]
    slot_units_stopped(hosts, "green")
    ws = WebSocket(WEB[0], "/ws/echo/")
    assert ws.status == 101
    ws.send("through nginx to uvicorn")
    assert ws.receive() == "through nginx to uvicorn"
    ws.close()
    rerun_changes_nothing("deploy", webstack_release_source=R2, webstack_deploy_server="uvicorn")
    assert migration_runs(hosts) == 1


def test_4_rollback_to_gunicorn(hosts):
    run = playbook("rollback")
    assert run.rc == 0, run
    assert serving(hosts, "gunicorn-sync", "green") == SEEN["r2"]
    slot_units_stopped(hosts, "blue")
    for name in WEB:
        assert state(hosts[name])["active"]["rolled_back_from"] == SEEN["r2"]
    rerun_changes_nothing("rollback")
    assert serving(hosts, "gunicorn-sync", "green") == SEEN["r2"]
    assert migration_runs(hosts) == 1


def test_5_hybrid_gunicorn_and_daphne(hosts):
    run = playbook("deploy", webstack_release_source=R2, webstack_deploy_server="hybrid")
    assert run.rc == 0, run
    assert serving(hosts, "gunicorn-sync", "blue") == SEEN["r2"]
    for name in WEB:
        active = state(hosts[name])["active"]
        assert active["server"] == "hybrid" and active["websocket_paths"] == ["/ws/"]
        assert any("daphne@" in unit for unit in active["units"])
    # A broadcast sent through web1 reaches a client connected to web2 (Redis on db1).
    listener = WebSocket(WEB[1], "/ws/broadcast/")
    sender = WebSocket(WEB[0], "/ws/broadcast/")
    assert (listener.status, sender.status) == (101, 101)
    sender.send(json.dumps({"hello": "from web1"}))
    got = json.loads(listener.receive())
    assert got["message"] == {"hello": "from web1"}
    assert got["from"] == hosts[WEB[0]].check_output("hostname")
    listener.close()
    sender.close()
    rerun_changes_nothing("deploy", webstack_release_source=R2, webstack_deploy_server="hybrid", full=True)
    assert migration_runs(hosts) == 1


def test_6_rollback_from_hybrid(hosts):
    run = playbook("rollback")
    assert run.rc == 0, run
    assert serving(hosts, "gunicorn-sync", "green") == SEEN["r2"]
    slot_units_stopped(hosts, "blue")
    for name in WEB:
        assert state(hosts[name])["active"]["server"] == "gunicorn"
    rerun_changes_nothing("rollback")
    assert migration_runs(hosts) == 1


def test_7_broken_release_stops_on_the_first_host(hosts):
    releases_before = {name: hosts[name].check_output("ls /srv/demo/releases") for name in WEB}
    run = playbook("deploy", webstack_release_source=str(RELEASES / "r3"), webstack_deploy_serial=1)
    assert run.rc != 0, run
    assert run.recap[WEB[0]]["failed"] >= 1, run
    assert "broken on purpose" in run.output
    # The site keeps serving the old release everywhere; the second host was never touched.
    assert serving(hosts, "gunicorn-sync", "green") == SEEN["r2"]
    assert hosts[WEB[1]].check_output("ls /srv/demo/releases") == releases_before[WEB[1]]
    assert "deploy FAILED" in hosts[WEB[0]].file("/var/log/webstack-demo.log").content_string
    assert not hosts[WEB[0]].file("/var/lib/webstack/demo.lock").exists
    slot_units_stopped(hosts, "blue")


def test_9_health_and_status(hosts):
    run = playbook("health")
    assert run.rc == 0, run
    assert "healthy, release " + SEEN["r2"] in run.output
    status = playbook("status")
    assert status.rc == 0, status
    assert f"release {SEEN['r2']}" in status.output and "rolled back from" in status.output


def test_9b_maintenance_on_and_off(hosts):
    run = playbook("maintenance", webstack_maintenance="on")
    assert run.rc == 0, run
    for name in WEB:
        response, _ = get(name, "/")
        assert response.status == 503 and response.getheader("Retry-After"), name
    # The health path still reaches the app, so a deploy can probe through nginx.
    assert serving(hosts, "gunicorn-sync", "green") == SEEN["r2"]
    assert all(state(hosts[name])["maintenance"] is True for name in WEB)
    run = playbook("maintenance", webstack_maintenance="off")
    assert run.rc == 0, run
    for name in WEB:
        assert get(name, "/")[0].status == 200, name


def test_10_rollback_to_a_pruned_release_is_refused(hosts):
    before = {name: state(hosts[name]) for name in WEB}
    run = playbook("rollback", webstack_rollback_release="000000000000")
    assert run.rc != 0
    assert "not on this host" in run.output
    assert {name: state(hosts[name]) for name in WEB} == before


def test_11_a_kind_switch_with_pending_migrations_is_refused(hosts):
    run = playbook("deploy", webstack_release_source=str(RELEASES / "r4"), webstack_deploy_server="uvicorn")
    assert run.rc != 0
    assert "unapplied migrations (pulse.0003_noop)" in run.output
    assert "webstack_deploy_allow_kind_switch_with_migrations" in run.output
    assert serving(hosts, "gunicorn-sync", "green") == SEEN["r2"]
    out = hosts["db1"].check_output("runuser -u postgres -- psql -d demo -tAc \"select count(*) from django_migrations where name='0003_noop'\"")
    assert out.strip() == "0"


# What a deploy may change on a host: its checksum before and after a refused run must match.
FOOTPRINT = ("find /etc/nginx /etc/systemd/system /srv/demo /etc/demo /etc/ansible /var/lib/webstack -xdev "
             "-printf '%p %y %m %u %g %s %T@ %l\\n' 2>/dev/null | sort | sha256sum")
SECRET = "lab-only-secret-key-3b9f0c7e21d84a6f9e5b-deploy-scenario-x7"

# Bad input, table-driven: every role the deploy runs, each kind of mistake. Each must be
# refused in preflight with a message naming the option, before any host changes.
BAD_INPUT = [
    # role, kind of mistake, extra vars, the option the message must name. One case per role and kind of check
    # here; tests/unit/test_bad_input_validate.py runs every validator's cases without a lab.
    ("deploy", "unknown option", {"webstack_deploy_sevrer": "uvicorn"}, "webstack_deploy_sevrer"),
    ("env_file", "missing required value", {"webstack_env_file_values": {"DJANGO_SETTINGS_MODULE": "demoapp.settings"}},
     "DJANGO_SECRET_KEY"),
    ("env_file", "key with a newline", {"webstack_env_file_values": {
        "DJANGO_SECRET_KEY": SECRET, "DJANGO_SETTINGS_MODULE": "demoapp.settings", "DJANGO_ALLOWED_HOSTS": "demo.test",
        "A\n": "x"}}, "webstack_env_file_values"),
    ("release", "out of range", {"webstack_release_keep": 0}, "webstack_release_keep"),
    ("release", "id ..", {"webstack_release_id": ".."}, "webstack_release_id"),
    ("release", "id .", {"webstack_release_id": "."}, "webstack_release_id"),
    ("release", "id with a newline", {"webstack_release_id": "r1\n"}, "webstack_release_id"),
    ("gunicorn", "unknown choice", {"webstack_gunicorn_worker_class": "eventlet"}, "webstack_gunicorn_worker_class"),
    ("uvicorn", "wrong type", {"webstack_deploy_server": "uvicorn", "webstack_uvicorn_workers": "many"},
     "webstack_uvicorn_workers"),
    ("daphne", "out of range", {"webstack_deploy_server": "hybrid", "webstack_daphne_instances": 99},
     "webstack_daphne_instances"),
    ("nginx", "injection", {"webstack_nginx_client_max_body_size": "10m;evil"}, "webstack_nginx_client_max_body_size"),
    ("app servers", "bad name", {"webstack_django_project": "my-proj"}, "webstack_django_project"),
    ("app servers", "path with a newline", {"webstack_django_writable_paths": ["/srv/demo/x\nExecStartPre=+/bin/true"]},
     "webstack_django_writable_paths"),
    ("app servers", "environment value with a newline",
     {"webstack_django_environment": {"A": "x\nExecStartPre=+/bin/true"}}, "webstack_django_environment"),
]


@pytest.mark.parametrize("role, mistake, bad, option", BAD_INPUT,
                         ids=[f"{role}-{mistake}-{option}" for role, mistake, _, option in BAD_INPUT])
def test_12_bad_input_fails_in_preflight_and_changes_nothing(hosts, role, mistake, bad, option):
    before = {name: hosts[name].check_output(FOOTPRINT) for name in WEB}
    # A new release (r4): a run that got past preflight would build it.
    run = playbook("deploy", webstack_release_source=str(RELEASES / "r4"), **bad)
    assert run.rc != 0, run
    assert option in run.output, run
    assert SECRET not in run.output
    for name in WEB:
        assert run.changed(name) == 0, run.recap
        assert hosts[name].check_output(FOOTPRINT) == before[name], f"{name} changed after a refused run"


def under_load(name: str, **extra) -> tuple[Run, dict]:
    """Run a playbook while 2 clients per web server keep requesting /health/ through nginx."""
    loads = [Load(address(host), SITE, clients=2, duration=600).start() for host in WEB]
    run = playbook(name, **extra)
    time.sleep(1)
    results = {host: load.stop().summary() for host, load in zip(WEB, loads)}
    return run, results


@pytest.mark.parametrize("step, name, extra, kind, slot", [
    ("new release", "deploy", {"webstack_release_source": str(RELEASES / "r4")}, "gunicorn-sync", "blue"),
    ("switch to uvicorn", "deploy", {"webstack_release_source": str(RELEASES / "r4"), "webstack_deploy_server": "uvicorn"},
     "uvicorn", "green"),
    ("rollback", "rollback", {}, "gunicorn-sync", "blue"),
])
def test_13_no_failed_request_under_load(hosts, step, name, extra, kind, slot):
    before = {health(host)["release"] + "/" + health(host)["server"] for host in WEB}
    run, results = under_load(name, **extra)
    assert run.rc == 0, run
    serving(hosts, kind, slot)
    after = {health(host)["release"] + "/" + health(host)["server"] for host in WEB}
    measured(step, results)
    for host, result in results.items():
        print(step, host, {k: v for k, v in result.items() if k != "timeline"})
        assert result["total"] > 100, (step, host, result["total"])
        assert result["failed"] == 0, (step, host, result["by_status"], result["errors"])
        # The load saw the switch: answers from the old slot, then from the new one.
        assert set(result["answered_by"]) == before | after, (step, host, result["answered_by"])


# -- faults --------------------------------------------------------------------------
# After test_13 every host serves release r4 on gunicorn from slot blue.

def serving_now(hosts) -> dict:
    """What each web server serves through nginx, and its recorded active slot."""
    return {name: (health(name)["release"], health(name)["server"], state(hosts[name])["active"]["slot"]) for name in WEB}


def test_14_a_release_whose_health_fails_is_never_switched_to(hosts):
    before = serving_now(hosts)
    # Three probes are enough to refuse it (the default waits 30 s for a slow start).
    run = playbook("deploy", webstack_release_source=str(RELEASES / "r5"), webstack_django_probe_retries=3)
    assert run.rc != 0, run
    assert serving_now(hosts) == before
    for name in WEB:
        assert "deploy FAILED" in hosts[name].file("/var/log/webstack-demo.log").content_string.splitlines()[-1]
        assert not hosts[name].file("/var/lib/webstack/demo.lock").exists
    slot_units_stopped(hosts, "green")


def test_15_a_failed_migration_stops_the_rollout_before_any_host_switches(hosts):
    before = serving_now(hosts)
    run = playbook("deploy", webstack_release_source=str(RELEASES / "r6"))  # both hosts in one batch
    assert run.rc != 0, run
    assert "fails on purpose" in run.output
    assert "no slot starts on it" in run.output, run
    assert serving_now(hosts) == before
    slot_units_stopped(hosts, "green")
    out = hosts["db1"].check_output(
        "runuser -u postgres -- psql -d demo -tAc \"select count(*) from django_migrations where name='0004_fails'\"")
    assert out.strip() == "0"


def test_16_a_killed_app_server_is_brought_back_by_systemd(hosts):
    web1 = hosts[WEB[0]]
    unit = state(web1)["active"]["units"][0]
    pid = web1.check_output(f"systemctl show -p MainPID --value {unit}")
    web1.run_expect([0], f"kill -KILL {pid}")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        new_pid = web1.check_output(f"systemctl show -p MainPID --value {unit}")
        if new_pid not in ("0", pid) and health(WEB[0])["http_status"] == 200:
            break
        time.sleep(0.5)
    assert new_pid not in ("0", pid), "systemd did not start the unit again"
    assert health(WEB[0])["http_status"] == 200
    assert web1.service(unit).is_running


def wait_for_lock(hosts, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not all(hosts[name].file("/var/lib/webstack/demo.lock").exists for name in WEB):
        assert time.monotonic() < deadline, "the deploy never took its lock"
        time.sleep(0.2)


def test_17_an_interrupted_deploy_leaves_the_site_serving_and_a_stale_lock_the_next_run_can_take_over(hosts):
    before = serving_now(hosts)
    loads = [Load(address(host), SITE, clients=2, duration=600).start() for host in WEB]
    proc = start_playbook("deploy", webstack_release_source=str(RELEASES / "r7"))
    wait_for_lock(hosts)
    time.sleep(3)  # inside the build
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    time.sleep(2)
    results = {host: load.stop().summary() for host, load in zip(WEB, loads)}
    measured("deploy killed during its build", results)
    for host, result in results.items():
        assert result["total"] > 20 and result["failed"] == 0, (host, result["by_status"], result["errors"])
    assert serving_now(hosts) == before
    refused = playbook("deploy", webstack_release_source=str(RELEASES / "r7"))
    assert refused.rc != 0
    assert "webstack_deploy_force_unlock" in refused.output and " age " in refused.output, refused
    assert serving_now(hosts) == before
    run = playbook("deploy", webstack_release_source=str(RELEASES / "r7"), webstack_deploy_force_unlock=True)
    assert run.rc == 0, run
    assert "Took over a deploy lock" in run.output
    SEEN["r7"] = serving(hosts, "gunicorn-sync", "green")
    for name in WEB:
        assert not hosts[name].file("/var/lib/webstack/demo.lock").exists


def test_18_a_second_deploy_at_the_same_time_is_refused(hosts):
    first = start_playbook("deploy", webstack_release_source=str(RELEASES / "r4"))
    wait_for_lock(hosts)
    second = playbook("deploy", webstack_release_source=str(RELEASES / "r4"))
    output, _ = first.communicate(timeout=900)
    assert second.rc != 0
    assert "Another run is deploying" in second.output, second
    assert first.returncode == 0, output[-6000:]
    serving(hosts, "gunicorn-sync", "blue")


# A stray HTTP server on a unix socket, answering every request as "squatter".
SQUATTER = """
import http.server, json, socketserver, sys

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"status": "ok", "server": "squatter", "release": "squatter"}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def address_string(self):
        return "unix"

class Server(socketserver.UnixStreamServer):
    def get_request(self):
        return self.socket.accept()[0], ("unix", 0)

Server(sys.argv[1], Handler).serve_forever()
"""


def test_19_a_socket_path_taken_by_something_else(hosts):
    """web1: a stray server listens on the new slot's socket path (the unit takes the path over);
    web2: a directory is there (refused, naming the path; web2 keeps serving). Under load: 0 failed."""
    before = serving_now(hosts)  # r4, gunicorn, blue
    web1, web2 = hosts[WEB[0]], hosts[WEB[1]]
    sock = "/run/demo/green-gunicorn.sock"
    script = base64.b64encode(SQUATTER.encode()).decode()
    web1.run_expect([0], f"echo {script} | base64 -d > /tmp/squatter.py && systemd-run --quiet --unit=webstack-squatter "
                         f"--uid=demo --gid=www-data python3 /tmp/squatter.py {sock}")
    web2.run_expect([0], f"mkdir {sock}")
    try:
        deadline = time.monotonic() + 20
        while "squatter" not in web1.run(f"curl -s --unix-socket {sock} http://x/health/").stdout:
            assert time.monotonic() < deadline, "the stray server did not start"
            time.sleep(0.2)
        loads = [Load(address(host), SITE, clients=2, duration=600).start() for host in WEB]
        run = playbook("deploy", webstack_release_source=str(RELEASES / "r7"))
        results = {host: load.stop().summary() for host, load in zip(WEB, loads)}
        measured("socket path taken (web1 stray server, web2 directory)", results)
        assert run.rc != 0, run
        assert f"{sock} (directory) is not a socket" in run.output, run
        for host, result in results.items():
            assert result["total"] > 20 and result["failed"] == 0, (host, result["by_status"], result["errors"])
        # web1 went on: its unit took the path over, and nginx reaches the unit, not the stray server.
        answer = health(WEB[0])
        assert (answer["release"], answer["server"], answer["slot"]) == (SEEN["r7"], "gunicorn-sync", "green"), answer
        assert "squatter" not in web1.check_output(f"curl -s --unix-socket {sock} http://x/health/")
        # web2 refused before installing the unit, and serves what it served.
        assert serving_now(hosts)[WEB[1]] == before[WEB[1]]
        assert not web2.service("demo-green-gunicorn.service").is_running
        for name in WEB:
            assert not hosts[name].file("/var/lib/webstack/demo.lock").exists
    finally:
        web1.run("systemctl stop webstack-squatter; rm -f /tmp/squatter.py")
        web2.run(f"rmdir {sock}")
    again = playbook("deploy", webstack_release_source=str(RELEASES / "r7"))
    assert again.rc == 0, again
    assert serving(hosts, "gunicorn-sync", "green") == SEEN["r7"]


def lab(command: str, *hosts_: str) -> None:
    """Power a lab host off (pull the plug: its disk keeps what was written) or boot it again."""
    argv = [sys.executable, str(PROJECT / "molecule" / "lab" / "lab.py"), command, "-i", str(INVENTORIES[0])]
    for name in hosts_:
        argv += ["--host", name]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def audit_lines(host) -> int:
    return len(host.file("/var/log/webstack-demo.log").content_string.splitlines())


def test_20_a_host_powered_off_in_the_middle_of_a_serial_1_rollout(hosts):
    """serial: 1. web1 loses power while its batch builds r8: the rollout stops there
    (max_fail_percentage 0) and web2, not reached yet, is untouched. web1 boots again on
    its disk, its lock from the earlier boot left behind; the next run takes that lock over
    and completes on both hosts."""
    first, second = WEB
    before = serving_now(hosts)  # r7, gunicorn, green
    untouched = (state(hosts[second]), audit_lines(hosts[second]))
    proc = start_playbook("deploy", webstack_release_source=str(RELEASES / "r8"), webstack_deploy_serial=1)
    deadline = time.monotonic() + 180
    while not hosts[first].file("/var/lib/webstack/demo.lock").exists:
        assert time.monotonic() < deadline, "web1's batch never took its lock"
        time.sleep(0.2)
    time.sleep(3)  # inside the build
    lab("poweroff", first)
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode != 0, output[-6000:]
    assert f"fatal: [{first}]: UNREACHABLE!" in output, output[-6000:]
    # The rollout stopped before web2's batch: nothing ran there.
    assert f"[{second}]" not in output, output[-6000:]
    assert (state(hosts[second]), audit_lines(hosts[second])) == untouched
    answer = health(second)
    assert (answer["release"], answer["server"], state(hosts[second])["active"]["slot"]) == before[second]
    assert not hosts[second].file("/var/lib/webstack/demo.lock").exists

    lab("boot", first)
    assert hosts[first].file("/var/lib/webstack/demo.lock").exists  # the disk kept it
    run = playbook("deploy", webstack_release_source=str(RELEASES / "r8"), webstack_deploy_serial=1)
    assert run.rc == 0, run
    assert "taken before this host last booted" in run.output, run
    SEEN["r8"] = serving(hosts, "gunicorn-sync", "blue")
    assert SEEN["r8"] not in (SEEN["r7"], before[first][0])
