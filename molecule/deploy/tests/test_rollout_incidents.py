"""Incidents, after the rollout (test_rollout.py ends with r8 on gunicorn in both hosts' active slot).

Each test plays one incident of issue 14 on the real hosts, with load running wherever the site serves, and
checks what a user would see: what nginx answers, which slot and environment serve, the state file.
The tests run in order; each starts from what the one before left.
"""

from __future__ import annotations

import http.server
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import yaml

from conftest import RELEASES, SCENARIO, SITE, WEB, Load, address, health, measured, playbook, start_playbook, state
from test_rollout import FOOTPRINT, lab

ENV_VALUES = yaml.safe_load((SCENARIO / "inventory" / "group_vars" / "webservers.yml").read_text())[
    "webstack_env_file_values"]

GIT_DIR = Path("/tmp/webstack-git")
BARE = GIT_DIR / "demo.git"
WORK = GIT_DIR / "work"
SEEN: dict[str, str] = {}
GOOD_DB_PASSWORD = "lab-only-db-password"


def git(*args: str, cwd: Path = WORK) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "lab", "GIT_AUTHOR_EMAIL": "lab@demo.test",
           "GIT_COMMITTER_NAME": "lab", "GIT_COMMITTER_EMAIL": "lab@demo.test"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


def commit_release(note: str) -> str:
    """Commit r4's code with a note in urls.py to the bare repository; return the commit's release id."""
    (WORK / "demoapp" / "urls.py").write_text((RELEASES / "r4" / "demoapp" / "urls.py").read_text() + f"# {note}\n")
    git("add", "-A")
    git("commit", "-q", "-m", note)
    git("push", "-q", "origin", "HEAD:main")
    return git("rev-parse", "HEAD")[:12]


def git_vars(**extra) -> dict:
    return {"webstack_release_source": "", "webstack_release_git_repo": str(BARE),
            "webstack_release_git_version": "main", **extra}


def under_load(name: str, *args: str, **extra):
    loads = [Load(address(host), SITE, clients=2, duration=600).start() for host in WEB]
    run = playbook(name, *args, **extra)
    time.sleep(1)
    return run, {host: load.stop().summary() for host, load in zip(WEB, loads)}


def no_failed_requests(results: dict, step: str) -> None:
    measured(step, results)
    for host, result in results.items():
        assert result["total"] > 20, (step, host, result["total"])
        assert result["failed"] == 0, (step, host, result["by_status"], result["errors"])


def serving(hosts) -> dict:
    """{host: (release, server kind, active slot)}, asserting nginx answers 200 from the recorded active slot."""
    out = {}
    for name in WEB:
        answer = health(name)
        active = state(hosts[name])["active"]
        assert answer["http_status"] == 200, (name, answer)
        assert answer["release"] == active["release"] and answer["slot"] == active["slot"], (name, answer, active)
        out[name] = (answer["release"], answer["server"], active["slot"])
    return out


def release_with_migration(name: str, migration: str) -> Path:
    """A release on the controller: r4 and one more (no-op) migration of the pulse app."""
    path = RELEASES / name
    if not path.exists():
        shutil.copytree(RELEASES / "r4", path)
        (path / "pulse" / "migrations" / f"{migration}.py").write_text(
            "from django.db import migrations\n\n\nclass Migration(migrations.Migration):\n"
            "    dependencies = [(\"pulse\", \"0003_noop\")]\n"
            "    operations = [migrations.RunPython(migrations.RunPython.noop, migrations.RunPython.noop)]\n")
    return path


def slot_files_sum(host, slot: str) -> str:
    """A checksum of what a slot runs with: its unit files, server configuration and env file (mode and owner too)."""
    return host.check_output(
        f"cd / && for f in etc/systemd/system/demo-{slot}-* etc/demo/{slot}-* etc/demo/{slot}.env; do "
        f"[ -f \"$f\" ] && stat -c '%n %a %U %G' \"$f\" && cat \"$f\"; done | sha256sum")


def words(text: str) -> str:
    """Output with Ansible's line wrapping undone (warnings are wrapped to the terminal width)."""
    return " ".join(text.split())


def env_of(host, slot: str) -> str:
    return host.check_output(f"cat /etc/demo/{slot}.env")


def test_21_two_deploys_from_a_git_repository_under_load(hosts):
    """The README's way: a git repository (a bare one on the controller). Two commits, two deploys, 0 failed;
    the prune step after the switch runs (it once failed there and stopped the new slot)."""
    shutil.rmtree(GIT_DIR, ignore_errors=True)
    GIT_DIR.mkdir()
    git("init", "-q", "--bare", "-b", "main", str(BARE), cwd=GIT_DIR)
    shutil.copytree(RELEASES / "r4", WORK)
    git("init", "-q", "-b", "main")
    git("remote", "add", "origin", str(BARE))
    SEEN["git1"] = commit_release("git release one")
    run, results = under_load("deploy", **git_vars())
    assert run.rc == 0, run
    no_failed_requests(results, "git deploy 1")
    assert {r for r, _, _ in serving(hosts).values()} == {SEEN["git1"]}
    # The second commit goes to uvicorn, with one more variable in the environment.
    SEEN["git2"] = commit_release("git release two")
    run, results = under_load("deploy", **git_vars(webstack_deploy_server="uvicorn"))
    assert run.rc == 0, run
    no_failed_requests(results, "git deploy 2")
    now = serving(hosts)
    assert {(r, k) for r, k, _ in now.values()} == {(SEEN["git2"], "uvicorn")}
    for name in WEB:
        st = state(hosts[name])
        assert st["previous"]["release"] == SEEN["git1"] and st["previous"]["server"] == "gunicorn"
        assert "pending" not in st
        releases = hosts[name].check_output("ls /srv/demo/releases").split()
        assert SEEN["git1"] in releases and SEEN["git2"] in releases
    # What git1's slot went live with (test_23 checks that the rollback puts exactly this back).
    SEEN["git1 files"] = {name: slot_files_sum(hosts[name], state(hosts[name])["previous"]["slot"]) for name in WEB}


def test_22_a_bad_env_value_never_reaches_the_live_slot(hosts):
    """A secret rotation gone wrong (a wrong DB password) fails the deploy. The live slot keeps its own env file:
    SIGKILLed, systemd restarts it and it serves again within 15 s; powered off and booted, the host serves the
    live release."""
    before = serving(hosts)
    live = {name: state(hosts[name])["active"]["slot"] for name in WEB}
    live_env = {name: env_of(hosts[name], live[name]) for name in WEB}
    bad = {**ENV_VALUES, "DB_PASSWORD": "wrong-password-on-purpose"}
    run = playbook("deploy", **git_vars(webstack_deploy_server="uvicorn", webstack_env_file_values=bad))
    assert run.rc != 0, run
    assert "wrong-password-on-purpose" not in run.output
    assert serving(hosts) == before
    for name in WEB:
        assert env_of(hosts[name], live[name]) == live_env[name]
        assert GOOD_DB_PASSWORD in live_env[name]
        assert not hosts[name].file("/var/lib/webstack/demo.lock").exists

    # SIGKILL every process of the live unit on web1: systemd starts it again with the live slot's env file.
    web1 = hosts[WEB[0]]
    unit = state(web1)["active"]["units"][0]
    web1.run_expect([0], f"systemctl kill --signal=SIGKILL {unit}")
    deadline = time.monotonic() + 15
    answer = {}
    while time.monotonic() < deadline:
        try:
            answer = health(WEB[0])
        except OSError:
            answer = {}
        if answer.get("http_status") == 200:
            break
        time.sleep(0.3)
    assert answer.get("http_status") == 200, answer
    assert f"EnvironmentFile=/etc/demo/{live[WEB[0]]}.env" in web1.check_output(f"systemctl cat {unit}")
    assert serving(hosts) == before

    # Power off web1 and boot it: it serves the live release with the live environment.
    lab("poweroff", WEB[0])
    lab("boot", WEB[0])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if health(WEB[0]).get("http_status") == 200:
                break
        except OSError:
            pass
        time.sleep(0.5)
    assert serving(hosts) == before


def test_23_the_hotfix_incident_rolls_back_to_the_release_before(hosts):
    """git2 is active (uvicorn), git1 previous (gunicorn). test_22's failed deploy wrote a wrong DB password into
    git1's slot; the hotfix (r5, on daphne) then fails its probe in that slot too, rewriting its units and
    environment. Rollback, under load, serves git1 again on gunicorn with git1's environment: the slot's files are
    put back exactly as they went live."""
    before = serving(hosts)
    previous = {name: state(hosts[name])["previous"] for name in WEB}
    files_of = SEEN["git1 files"]
    run = playbook("deploy", webstack_release_source=str(RELEASES / "r5"), webstack_deploy_server="daphne",
                   webstack_django_environment={"HOTFIX": "r5"}, webstack_django_probe_retries=3)
    assert run.rc != 0, run
    assert serving(hosts) == before
    for name in WEB:  # the failed deploy rewrote the previous slot's units and environment
        slot = previous[name]["slot"]
        assert slot_files_sum(hosts[name], slot) != files_of[name]
        assert "HOTFIX=r5" in hosts[name].check_output(f"cat /etc/systemd/system/demo-{slot}-daphne@.service")
    run, results = under_load("rollback")
    assert run.rc == 0, run
    no_failed_requests(results, "rollback after a failed hotfix")
    now = serving(hosts)
    for name in WEB:
        assert now[name] == (SEEN["git1"], "gunicorn-sync", previous[name]["slot"]), now
        env = env_of(hosts[name], previous[name]["slot"])
        assert GOOD_DB_PASSWORD in env and "wrong-password-on-purpose" not in env
        assert slot_files_sum(hosts[name], previous[name]["slot"]) == files_of[name]
        assert "HOTFIX" not in hosts[name].check_output(f"systemctl cat demo-{previous[name]['slot']}-gunicorn.service")


class SlowServer(http.server.BaseHTTPRequestHandler):
    """A public health URL that takes 20 s to answer: the window between nginx's switch and the state write."""

    def do_GET(self):  # noqa: N802
        time.sleep(20)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_24_a_run_killed_between_the_switch_and_the_state_write_is_reconciled(hosts):
    """The deploy is killed after nginx switched and before the state was written. The next runs reconcile the
    state with what nginx routes to: status reports the new slot, the next deploy takes it as active, and a
    rollback goes back to the slot before. 0 failed requests throughout."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SlowServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    before = serving(hosts)
    loads = [Load(address(host), SITE, clients=2, duration=600).start() for host in WEB]
    try:
        proc = start_playbook("deploy", webstack_release_source=str(RELEASES / "r8"),
                              webstack_deploy_public_health_url=url)
        deadline = time.monotonic() + 300
        while True:
            routed = {name: hosts[name].run(
                "grep -o 'unix:/run/demo/[a-z]*-' /etc/nginx/webstack/demo.upstream.conf | head -1").stdout
                for name in WEB}
            if all(f"/{before[name][2]}-" not in routed[name] for name in WEB):
                break
            assert proc.poll() is None and time.monotonic() < deadline, "the deploy never switched nginx"
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        new_slot = {name: ("green" if before[name][2] == "blue" else "blue") for name in WEB}
        for name in WEB:
            st = state(hosts[name])
            assert st["active"]["slot"] == before[name][2] and st["pending"]["to"]["slot"] == new_slot[name]
        status = playbook("status")
        assert status.rc == 0, status
        assert "interrupted after nginx switched" in words(status.output), status
        run = playbook("deploy", webstack_release_source=str(RELEASES / "r8"), webstack_deploy_force_unlock=True)
        assert run.rc == 0, run
        now = serving(hosts)
        for name in WEB:
            assert now[name][2] == new_slot[name]
            assert state(hosts[name])["previous"]["slot"] == before[name][2]
        back = playbook("rollback")
        assert back.rc == 0, back
    finally:
        results = {host: load.stop().summary() for host, load in zip(WEB, loads)}
        server.shutdown()
    no_failed_requests(results, "killed between switch and state write, deploy, rollback")
    assert serving(hosts) == before


def test_25_a_torn_state_file_is_recovered(hosts):
    """A state file torn by a crash: the playbooks recover it (from its last good copy, reconciled with what nginx
    routes to) with a warning; the read-only ones write nothing, the next run that takes the lock writes it back."""
    before = serving(hosts)
    web1 = hosts[WEB[0]]
    fact = "/etc/ansible/facts.d/webstack_demo.fact"
    web1.run_expect([0], f"truncate -s 10 {fact}")
    status = playbook("status", webstack_deploy_hosts=WEB[0])
    assert status.rc == 0, status
    assert "recovered from the last good copy" in words(status.output), status
    assert web1.file(fact).size == 10  # status only reads
    run = playbook("maintenance", webstack_maintenance="off", webstack_deploy_hosts=WEB[0])
    assert run.rc == 0, run
    recovered = state(web1)
    assert recovered["active"]["slot"] == before[WEB[0]][2] and recovered["active"]["release"] == before[WEB[0]][0]
    assert serving(hosts) == before


def test_26_check_mode_of_a_deploy_changes_nothing(hosts):
    """--check with a release that has an unapplied migration: nothing changes on the hosts or in the database,
    and the run says what it would apply."""
    r9 = release_with_migration("r9", "0004_check_mode")
    before = {name: hosts[name].check_output(FOOTPRINT) for name in WEB}
    run = playbook("deploy", "--check", webstack_release_source=str(r9))
    for name in WEB:
        assert hosts[name].check_output(FOOTPRINT) == before[name], (name, run)
    applied = hosts["db1"].check_output(
        "runuser -u postgres -- psql -d demo -tAc \"select count(*) from django_migrations where name='0004_check_mode'\"")
    assert applied.strip() == "0", run


def test_27_maintenance_during_a_deploy_is_refused_and_the_deploy_ends_consistent(hosts):
    """maintenance takes the deploy lock: while a deploy runs it is refused, and the deploy ends with nginx, the
    state and the units in agreement."""
    proc = start_playbook("deploy", webstack_release_source=str(RELEASES / "r7"))
    deadline = time.monotonic() + 180
    while not all(hosts[name].file("/var/lib/webstack/demo.lock").exists for name in WEB):
        assert proc.poll() is None and time.monotonic() < deadline, "the deploy never took its lock"
        time.sleep(0.2)
    refused = playbook("maintenance", webstack_maintenance="on")
    output, _ = proc.communicate(timeout=900)
    assert refused.rc != 0 and "Another run is deploying" in refused.output, refused
    assert proc.returncode == 0, output[-6000:]
    now = serving(hosts)
    for name in WEB:
        st = state(hosts[name])
        assert not st.get("maintenance", False) and "pending" not in st
        assert get_status(name, "/") == 200
        routed = hosts[name].check_output("grep -c 'unix:/run/demo/%s-' /etc/nginx/webstack/demo.upstream.conf"
                                          % now[name][2])
        assert int(routed) >= 1
        for unit in st["active"]["units"]:
            assert hosts[name].service(unit).is_running


def test_28_an_env_file_edited_by_hand_goes_to_the_idle_slot_not_into_the_live_one(hosts):
    """The live slot's env file changed outside the role: the next deploy notices, writes the environment into the
    idle slot and switches to it; the live slot is never restarted in place."""
    before = serving(hosts)
    web1 = hosts[WEB[0]]
    live = before[WEB[0]][2]
    unit = state(web1)["active"]["units"][0]
    since = web1.check_output("date +%s")
    web1.run_expect([0], f"echo 'EDITED_BY_HAND=1' >> /etc/demo/{live}.env")
    run, results = under_load("deploy", webstack_release_source=str(RELEASES / "r7"))
    assert run.rc == 0, run
    no_failed_requests(results, "deploy after a hand edit of the live env file")
    now = serving(hosts)
    assert now[WEB[0]][0] == before[WEB[0]][0] and now[WEB[0]][2] != live  # same release, the other slot
    assert "EDITED_BY_HAND" not in env_of(web1, now[WEB[0]][2])
    assert now[WEB[1]] == before[WEB[1]]  # nothing changed there
    # The old live unit was stopped after the switch, never started (restarted) during the deploy.
    journal = web1.check_output(f"journalctl --no-pager -o cat -u {unit} --since=@{since}")
    assert "Stopped" in journal and "Started" not in journal, journal


def get_status(host: str, path: str) -> int:
    from conftest import get

    return get(host, path)[0].status


def test_29_the_migrate_host_is_chosen_among_the_hosts_whose_build_succeeded(hosts):
    """web1 (the play's first host) fails its build (its pip points at an index that does not answer). web2 is
    then the one that applies the new release's migration, once, and switches; web1 keeps serving its release.
    Once web1's pip is repaired, the next deploy switches web1 too, with nothing left to migrate."""
    r10 = release_with_migration("r10", "0004_chosen_host")
    web1, web2 = hosts[WEB[0]], hosts[WEB[1]]
    before = serving(hosts)
    web1.run_expect([0], "printf '[global]\\nindex-url = http://127.0.0.1:9/simple\\ntimeout = 2\\nretries = 0\\n'"
                         " > /etc/pip.conf")
    try:
        run = playbook("deploy", webstack_release_source=str(r10))
    finally:
        web1.run_expect([0], "rm -f /etc/pip.conf")
    assert run.rc != 0, run
    assert run.recap[WEB[0]]["failed"] >= 1 and run.recap[WEB[1]]["failed"] == 0, run.recap
    now = serving(hosts)
    assert now[WEB[0]] == before[WEB[0]]
    assert now[WEB[1]][0] != before[WEB[1]][0]
    applied = hosts["db1"].check_output(
        "runuser -u postgres -- psql -d demo -tAc \"select count(*) from django_migrations where name='0004_chosen_host'\"")
    assert applied.strip() == "1"
    assert "0004_chosen_host" in web2.file("/var/log/webstack-demo.log").content_string
    again = playbook("deploy", webstack_release_source=str(r10))
    assert again.rc == 0, again
    assert {r for r, _, _ in serving(hosts).values()} == {now[WEB[1]][0]}
