"""Helpers of the deploy scenario: run the collection's playbooks against the lab the
way a user would, and look at the result from outside (HTTP and WebSockets through
nginx on each host, state files, units, the database on db1)."""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

PROJECT_TOOLS = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"]) / "tools"
sys.path.insert(0, str(PROJECT_TOOLS))
from loadgen import Load, WebSocketOpens  # noqa: E402,F401  (the tests' load generator)
from loadgen import WebSocket as _WebSocket  # noqa: E402

PROJECT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
SCENARIO = PROJECT / "molecule" / "deploy"
INVENTORIES = [PROJECT / "molecule" / "inventory", SCENARIO / "inventory"]
HOSTS = yaml.safe_load((INVENTORIES[0] / "hosts.yml").read_text())
WEB = sorted(HOSTS["webservers"]["hosts"])
SITE = "demo.test"
RELEASES = Path("/tmp/webstack-releases")


def address(name: str) -> str:
    for group in HOSTS.values():
        if name in group["hosts"]:
            return group["hosts"][name]["ansible_host"]
    raise KeyError(name)


class Run:
    """A finished ansible-playbook run: its exit code, output and per-host recap."""

    def __init__(self, proc: subprocess.CompletedProcess):
        self.rc = proc.returncode
        self.output = proc.stdout + proc.stderr
        self.recap = {
            m.group(1): {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
            for m in re.finditer(r"^(\S+)\s+:\s+(ok=.*)$", proc.stdout, re.M)
        }

    def changed(self, host: str) -> int:
        return self.recap.get(host, {}).get("changed", -1)

    def __repr__(self) -> str:
        return f"rc={self.rc}\n{self.output[-6000:]}"


def playbook_command(name: str, *args: str, **extra_vars) -> tuple[list[str], dict]:
    """argv and environment of ansible-playbook webstack.django.<name> on the scenario's inventories."""
    env = {**os.environ, "ANSIBLE_CONFIG": str(PROJECT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_COLLECTIONS_PATH": str(PROJECT / ".collections")}
    argv = [str(Path(sys.executable).parent / "ansible-playbook")]
    argv += [f"--inventory={inv}" for inv in INVENTORIES]
    argv += [f"webstack.django.{name}", *args]
    if extra_vars:
        argv += ["--extra-vars", json.dumps(extra_vars)]
    return argv, env


def playbook(name: str, *args: str, **extra_vars) -> Run:
    """Run webstack.django.<name> with the scenario's inventories, as a user would."""
    argv, env = playbook_command(name, *args, **extra_vars)
    return Run(subprocess.run(argv, env=env, capture_output=True, text=True, timeout=1200, check=False))


def start_playbook(name: str, *args: str, **extra_vars) -> subprocess.Popen:
    """Start webstack.django.<name> in the background, in its own process group (to kill it whole)."""
    argv, env = playbook_command(name, *args, **extra_vars)
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def get(host: str, path: str) -> tuple[http.client.HTTPResponse, bytes]:
    """GET a path through nginx on a web server, with the site's Host header."""
    conn = http.client.HTTPConnection(address(host), 80, timeout=10)
    try:
        conn.request("GET", path, headers={"Host": SITE})
        response = conn.getresponse()
        return response, response.read()
    finally:
        conn.close()


def health(host: str) -> dict:
    """/health/ through nginx on a web server, as JSON (with the HTTP status as http_status)."""
    response, body = get(host, "/health/")
    data = json.loads(body) if body.startswith(b"{") else {}
    return {**data, "http_status": response.status}


def WebSocket(host: str, path: str) -> _WebSocket:  # noqa: N802 (used like the class it returns)
    """A WebSocket through nginx on a lab web server, with the site's Host header."""
    return _WebSocket(address(host), path, SITE)


@pytest.fixture(scope="session")
def hosts():
    import testinfra

    inventory = str(INVENTORIES[0])
    return {name: testinfra.get_host(f"ansible://{name}", ansible_inventory=inventory)
            for name in [*WEB, "db1"]}


def state(host) -> dict:
    """The deploy state file of the demo app on a testinfra host."""
    return json.loads(host.file("/etc/ansible/facts.d/webstack_demo.fact").content_string)


def measured(step: str, results: dict) -> None:
    """Print each host's load result as a "measured:" line (the test report lists them)."""
    for host, result in results.items():
        print(f"measured: {step}, {host}: {result['failed']} failed of {result['total']} requests through nginx "
              f"(p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms)")
