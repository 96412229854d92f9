"""The lab itself, on real hosts: boot, isolation, stale-state sweeps, poweroff and boot on a
kept disk, and clean teardown.

Uses its own lab ("itest", 10.231.2.0/24) so it never touches the molecule or demo labs.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import lab
import pytest

LAB_PY = Path(__file__).resolve().parents[2] / "molecule" / "lab" / "lab.py"
KEY = lab.LAB_DIR / "ssh" / "id_ed25519"
ADDRESSES = {"h12": "10.231.2.12", "h13": "10.231.2.13"}

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")


@pytest.fixture(scope="module")
def inventory(tmp_path_factory):
    root = tmp_path_factory.mktemp("inventory")
    (root / "group_vars").mkdir()
    (root / "hosts.yml").write_text(
        "all:\n  hosts:\n"
        f"    h12:\n      ansible_host: {ADDRESSES['h12']}\n      webstack_lab_image: debian12\n"
        f"    h13:\n      ansible_host: {ADDRESSES['h13']}\n      webstack_lab_image: debian13\n"
    )
    (root / "group_vars" / "all.yml").write_text("webstack_lab_name: itest\nwebstack_lab_gateway: 10.231.2.1/24\n")
    yield str(root)
    subprocess.run([sys.executable, str(LAB_PY), "down", "-i", str(root)], check=False)


def lab_cmd(*args, check=True):
    return subprocess.run([sys.executable, str(LAB_PY), *args], check=check, text=True, capture_output=True)


def ssh(address, command):
    return subprocess.run([*lab.ssh_base_args(KEY), f"root@{address}", command],
                          text=True, capture_output=True, timeout=60)


def status_is_empty(inventory):
    return lab_cmd("status", "-i", inventory, check=False).returncode == 3


def test_up_boots_every_host_with_systemd_running(inventory):
    lab_cmd("up", "-i", inventory)
    for name, address in ADDRESSES.items():
        result = ssh(address, "hostname; ps -p 1 -o comm=; systemctl is-system-running")
        assert result.stdout.split() == [name, "systemd", "running"], result.stderr


def guest_init_cgroup(nspawn_pid):
    children = subprocess.run(["pgrep", "-P", str(nspawn_pid)], capture_output=True, text=True).stdout.split()
    assert len(children) == 1
    lines = Path(f"/proc/{children[0]}/cgroup").read_text().splitlines()
    return next(line.split(":", 2)[2] for line in lines if line.split(":")[1] in ("name=systemd", ""))


def test_each_host_has_its_own_cgroup_tree(inventory):
    """Guests sharing one tree fight over unit cgroups (units fail with 219/CGROUP)."""
    groups = {guest_init_cgroup(pid) for pid in lab.nspawn_pids("wsl-itest-")}
    assert groups == {"/webstack-lab/itest-h12/payload/init.scope", "/webstack-lab/itest-h13/payload/init.scope"}
    for address in ADDRESSES.values():
        assert ssh(address, "systemd-run --unit=labprobe sleep 600").returncode == 0
    assert ssh(ADDRESSES["h12"], "systemctl stop labprobe").returncode == 0
    assert ssh(ADDRESSES["h13"], "systemctl is-active labprobe").stdout.strip() == "active"


def test_up_after_lost_state_replaces_the_stale_hosts(inventory):
    old_pids = set(lab.nspawn_pids("wsl-itest-"))
    assert len(old_pids) == 2
    subprocess.run(["rm", "-rf", str(lab.RUN_DIR / "itest")], check=True)
    result = lab_cmd("up", "-i", inventory)
    assert "removed stale state of lab itest" in result.stdout
    new_pids = set(lab.nspawn_pids("wsl-itest-"))
    assert len(new_pids) == 2 and not (new_pids & old_pids)
    assert ssh(ADDRESSES["h13"], "systemctl is-system-running").stdout.strip() == "running"


def test_down_leaves_nothing_and_spares_what_others_made(inventory):
    # Things another tool made, with names and comments close to the lab's.
    subprocess.run(["ip", "netns", "add", "wslx-foreign"], check=True)
    subprocess.run(["ip", "link", "add", "wslx-br", "type", "bridge"], check=True)
    foreign_rule = ["FORWARD", "-i", "wslx-br", "-m", "comment", "--comment", "webstack-other", "-j", "ACCEPT"]
    subprocess.run(["iptables", "-w", "-A", *foreign_rule], check=True)
    try:
        result = lab_cmd("down", "-i", inventory)
        assert "killed" not in result.stdout, "a host did not power off by itself"
        assert status_is_empty(inventory)
        assert not lab.nspawn_pids("wsl-itest-")
        assert "wslx-foreign" in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert subprocess.run(["ip", "link", "show", "wslx-br"], capture_output=True).returncode == 0
        assert subprocess.run(["iptables", "-w", "-C", *foreign_rule], capture_output=True).returncode == 0
    finally:
        subprocess.run(["iptables", "-w", "-D", *foreign_rule], check=False)
        subprocess.run(["ip", "link", "del", "wslx-br"], check=False)
        subprocess.run(["ip", "netns", "del", "wslx-foreign"], check=False)


def test_interrupted_up_is_cleaned_up(inventory):
    proc = subprocess.Popen([sys.executable, str(LAB_PY), "up", "-i", inventory],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Kill it hard once the network exists but before the hosts are up.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and "wsl-itest-h12" not in lab.lab_netns("wsl-itest-"):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not status_is_empty(inventory), "the interrupted run should have left state to sweep"
    lab_cmd("down", "-i", inventory)
    assert status_is_empty(inventory)


def connect_outcome(address, port=22, timeout=5):
    """'open', 'refused', 'unreachable' (an ICMP error or failed ARP) or 'timeout' (no answer at all)."""
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return "open"
    except ConnectionRefusedError:
        return "refused"
    except TimeoutError:
        return "timeout"
    except OSError as exc:
        return f"unreachable ({exc})"


def test_poweroff_keeps_the_disk_and_boot_comes_back_on_it(inventory):
    lab_cmd("up", "-i", inventory)
    assert ssh(ADDRESSES["h12"], "echo survived > /root/poweroff-probe; sync").returncode == 0
    boot_id = ssh(ADDRESSES["h12"], "cat /proc/sys/kernel/random/boot_id").stdout.strip()
    assert boot_id

    lab_cmd("poweroff", "-i", inventory, "--host", "h12")
    # A dead machine: the connection attempt gets no answer at all (no reset, no ICMP error).
    assert connect_outcome(ADDRESSES["h12"]) == "timeout"
    state = json.loads(lab_cmd("status", "-i", inventory).stdout)
    assert state["hosts"] == {"h12": "powered off", "h13": "running"}
    assert len(state["nspawn_pids"]) == 1 and "wsl-itest-h13" in state["netns"]
    assert ssh(ADDRESSES["h13"], "systemctl is-system-running").stdout.strip() == "running"
    assert "is not running" in lab_cmd("poweroff", "-i", inventory, "--host", "h12", check=False).stderr
    assert "is running" in lab_cmd("boot", "-i", inventory, "--host", "h13", check=False).stderr
    assert "not part of lab itest" in lab_cmd("boot", "-i", inventory, "--host", "h99", check=False).stderr

    lab_cmd("boot", "-i", inventory, "--host", "h12")
    result = ssh(ADDRESSES["h12"], "cat /root/poweroff-probe; cat /proc/sys/kernel/random/boot_id; "
                                   "systemctl is-system-running")
    probe, new_boot_id, running = result.stdout.split()
    assert (probe, running) == ("survived", "running")
    assert new_boot_id != boot_id

    lab_cmd("down", "-i", inventory)
    assert status_is_empty(inventory)
    assert "/webstack-lab/hosts/itest" not in Path("/proc/self/mountinfo").read_text()
    assert not (lab.HOSTS_DIR / "itest").exists()
    assert not lab.lab_loop_devices("itest")


def test_up_starts_every_host_from_an_empty_disk(inventory):
    lab_cmd("up", "-i", inventory)
    assert ssh(ADDRESSES["h12"], "touch /root/leftover").returncode == 0
    lab_cmd("up", "-i", inventory)
    assert ssh(ADDRESSES["h12"], "test -e /root/leftover").returncode == 1
    lab_cmd("down", "-i", inventory)
    assert status_is_empty(inventory)
