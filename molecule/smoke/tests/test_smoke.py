"""Smoke checks of the lab hosts, run by testinfra over the molecule inventory."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

INVENTORY = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"]) / "molecule" / "inventory"


@pytest.fixture(scope="module")
def addresses():
    """Every inventory host's address, read with ansible-inventory on the controller."""
    tool = Path(sys.executable).parent / "ansible-inventory"
    listing = json.loads(subprocess.check_output([str(tool), "-i", str(INVENTORY), "--list"]))
    return {name: hv["ansible_host"] for name, hv in listing["_meta"]["hostvars"].items()}


def _vars(host):
    return host.ansible.get_variables()


def test_systemd_is_pid_1_and_running(host):
    assert host.check_output("ps -p 1 -o comm=") == "systemd"
    # `is-system-running` exits non-zero for anything but "running".
    assert host.run("systemctl is-system-running").stdout.strip() == "running"
    assert host.run("systemctl --failed --no-legend --plain").stdout.strip() == ""


def test_os_release_matches_lab_image(host):
    expected = {"debian12": ("bookworm", "12"), "debian13": ("trixie", "13")}[_vars(host)["webstack_lab_image"]]
    assert host.system_info.distribution == "debian"
    assert host.system_info.codename == expected[0]
    assert host.file("/etc/os-release").contains(f'VERSION_ID="{expected[1]}"')


def test_hostname_and_own_address(host):
    variables = _vars(host)
    assert host.check_output("hostname") == variables["inventory_hostname"]
    addresses = host.check_output("ip -4 -o addr show dev eth0")
    assert f"inet {variables['ansible_host']}/" in addresses


def test_sshd_serves_root_by_key_only(host):
    assert host.service("ssh").is_running
    # Root may log in with a key, never with a password.
    assert "permitrootlogin without-password" in host.check_output("sshd -T")


def test_hosts_reach_each_other(host, addresses):
    me = _vars(host)["inventory_hostname"]
    assert len(addresses) >= 3
    for peer, address in sorted(addresses.items()):
        if peer != me:
            assert host.run(f"ping -c1 -W2 {address}").rc == 0, f"{me} cannot reach {peer} at {address}"


def test_pip_reaches_the_package_index_with_the_lab_ca_bundle(host):
    ca_bundle = _vars(host)["webstack_lab_ca_bundle"]
    assert host.file(ca_bundle).is_file
    result = host.run(
        "set -e; d=$(mktemp -d); python3 -m venv $d/venv; "
        f"$d/venv/bin/pip download --quiet --no-deps --cert {ca_bundle} --dest $d/dl six; "
        "ls $d/dl; rm -rf $d"
    )
    assert result.rc == 0, result.stderr
    assert result.stdout.startswith("six-")
