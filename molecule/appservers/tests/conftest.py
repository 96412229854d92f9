"""Shared helpers of the appservers scenario's tests."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

PROJECT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
SCENARIO = PROJECT / "molecule" / "appservers"
INVENTORY = PROJECT / "molecule" / "inventory"
APPS = yaml.safe_load((SCENARIO / "vars" / "apps.yml").read_text())["test_apps"]


def units_of(app):
    """The systemd units the converge started for a test app."""
    if app["role"] == "daphne":
        return [f"{app['app']}-blue-daphne@{n}.service" for n in (1, 2)]
    return [f"{app['app']}-blue-{app['role']}.service"]


def socket_of(unit):
    """The unix socket of a unit (name <app>-blue-<server>[@N].service)."""
    app, rest = unit.split("-blue-", 1)
    name = rest.removesuffix(".service").replace("@", "-")
    return f"/run/{app}/blue-{name}.sock"


def run_playbook(playbook, extra_vars):
    """Run one of the scenario's playbooks from the controller; return the finished process."""
    env = {**os.environ, "ANSIBLE_CONFIG": str(PROJECT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    return subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), f"--inventory={INVENTORY}",
         str(SCENARIO / playbook), "--extra-vars", yaml.safe_dump(extra_vars, default_flow_style=True)],
        env=env, capture_output=True, text=True, timeout=600, check=False,
    )


@pytest.fixture(scope="session")
def web1():
    import testinfra

    return testinfra.get_host("ansible://web1", ansible_inventory=str(INVENTORY))
