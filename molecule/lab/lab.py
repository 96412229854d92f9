#!/usr/bin/env python3
"""Boot real systemd test hosts on this machine with systemd-nspawn.

The lab reads the hosts an Ansible inventory names (``ansible_host`` and the
``webstack_lab_*`` variables) and gives each one:

* a Debian base tree (built once with debootstrap, cached, shared read-only),
  booted with ``--volatile=overlay`` so every boot starts clean;
* its own network namespace with its own address on a bridge, NAT for
  outbound apt and pip, and this machine's CA bundle at
  ``/etc/webstack-lab/ca-bundle.crt``;
* SSH as root with a key the lab generates.

Everything the lab creates carries a mark (a name prefix, a link alias or an
iptables comment) so that ``down`` and the stale-state sweep at every ``up``
remove exactly what the lab made and nothing else.

Run as root: ``lab.py {base,up,down,status} -i INVENTORY`` (see ``--help``).
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import ipaddress
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

LAB_DIR = Path(os.environ.get("WEBSTACK_LAB_DIR", "/var/lib/webstack-lab"))
RUN_DIR = Path(os.environ.get("WEBSTACK_LAB_RUN_DIR", "/run/webstack-lab"))
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
GUEST_CA_BUNDLE = "/etc/webstack-lab/ca-bundle.crt"
MARK = "webstack-lab"

# Debian releases the lab can boot: image name -> debootstrap suite.
IMAGES = {"debian12": "bookworm", "debian13": "trixie"}
BASE_PACKAGES = (
    "systemd", "systemd-sysv", "dbus", "python3", "python3-apt", "openssh-server",
    "iproute2", "iputils-ping", "sudo", "ca-certificates",
)
# Bump when the customisation in _customise_base() changes: cached trees rebuild.
BASE_RECIPE_VERSION = "3"

LAB_NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,7}$")
HOST_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")


class LabError(Exception):
    """A problem the user can act on; printed without a traceback."""


def log(msg: str) -> None:
    # One write per line: base trees are built from several threads at once.
    sys.stdout.write(f"lab: {msg}\n")
    sys.stdout.flush()


def run(cmd: list[str], *, check: bool = True, capture: bool = False,
        timeout: float | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=check, text=True, timeout=timeout,
                          stdout=subprocess.PIPE if capture else None,
                          stderr=subprocess.PIPE if capture else None)


# --------------------------------------------------------------------------
# The lab description, read from an inventory
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class Host:
    name: str
    address: str
    image: str


@dataclass(frozen=True)
class Lab:
    name: str
    gateway: ipaddress.IPv4Interface
    hosts: tuple[Host, ...]

    @property
    def bridge(self) -> str:
        return f"wslb-{self.name}"

    def netns(self, host: Host) -> str:
        return f"wsl-{self.name}-{host.name}"

    def veth(self, host: Host) -> str:
        # Interface names are limited to 15 characters: use a short digest.
        digest = hashlib.sha1(f"{self.name}/{host.name}".encode()).hexdigest()[:8]
        return f"wslv{digest}"

    def machine(self, host: Host) -> str:
        return f"{self.name}-{host.name}"

    @property
    def mark(self) -> str:
        return f"{MARK}:{self.name}"

    @property
    def run_dir(self) -> Path:
        return RUN_DIR / self.name


def lab_from_inventory_data(data: dict) -> Lab:
    """Build a Lab from ``ansible-inventory --list`` output; raise LabError on bad input."""
    hostvars = data.get("_meta", {}).get("hostvars", {})
    if not hostvars:
        raise LabError("the inventory names no hosts")
    names = {hv.get("webstack_lab_name") for hv in hostvars.values()}
    if len(names) != 1 or None in names:
        raise LabError("every host needs the same webstack_lab_name (set it in group_vars/all)")
    lab_name = names.pop()
    if not LAB_NAME_RE.match(str(lab_name)):
        raise LabError(f"webstack_lab_name {lab_name!r} must match {LAB_NAME_RE.pattern}")
    gateways = {hv.get("webstack_lab_gateway") for hv in hostvars.values()}
    if len(gateways) != 1 or None in gateways:
        raise LabError("every host needs the same webstack_lab_gateway, e.g. 10.231.0.1/24")
    gateway_text = gateways.pop()
    try:
        gateway = ipaddress.IPv4Interface(gateway_text)
    except ValueError as exc:
        raise LabError(f"webstack_lab_gateway {gateway_text!r} is not an IPv4 address/prefix") from exc
    if gateway.network.prefixlen == 32 or gateway.ip == gateway.network.network_address:
        raise LabError(f"webstack_lab_gateway {gateway_text!r} must be a host address with a prefix")

    hosts = []
    seen_addresses: dict[str, str] = {}
    for name in sorted(hostvars):
        hv = hostvars[name]
        if not HOST_NAME_RE.match(name):
            raise LabError(f"host name {name!r} must match {HOST_NAME_RE.pattern}")
        address = hv.get("ansible_host")
        if not address:
            raise LabError(f"host {name}: ansible_host is not set")
        try:
            ip = ipaddress.IPv4Address(address)
        except ValueError as exc:
            raise LabError(f"host {name}: ansible_host {address!r} is not an IPv4 address") from exc
        if ip not in gateway.network or ip in (gateway.ip, gateway.network.broadcast_address):
            raise LabError(f"host {name}: ansible_host {address} is not a free address in {gateway.network}")
        if address in seen_addresses:
            raise LabError(f"hosts {seen_addresses[address]} and {name} share ansible_host {address}")
        seen_addresses[address] = name
        image = hv.get("webstack_lab_image", "debian12")
        if image not in IMAGES:
            raise LabError(f"host {name}: webstack_lab_image {image!r} is not one of {sorted(IMAGES)}")
        hosts.append(Host(name=name, address=str(ip), image=image))
    return Lab(name=lab_name, gateway=gateway, hosts=tuple(hosts))


def inventory_listing(inventory: str) -> dict:
    """``ansible-inventory --list`` of an inventory, from this Python's virtualenv."""
    tool = shutil.which("ansible-inventory", path=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    if tool is None:
        raise LabError("ansible-inventory not found: run from the project's virtualenv (make venv)")
    proc = run([tool, "-i", inventory, "--list"], capture=True, check=False)
    if proc.returncode != 0:
        raise LabError(f"ansible-inventory failed for {inventory}:\n{proc.stderr.strip()}")
    return json.loads(proc.stdout)


def load_lab(inventory: str) -> Lab:
    return lab_from_inventory_data(inventory_listing(inventory))


# --------------------------------------------------------------------------
# Base trees
# --------------------------------------------------------------------------

def apt_mirror() -> str:
    """The Debian mirror this machine's own apt uses (override: WEBSTACK_LAB_MIRROR)."""
    if os.environ.get("WEBSTACK_LAB_MIRROR"):
        return os.environ["WEBSTACK_LAB_MIRROR"]
    candidates = [Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list")]
    candidates += sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    candidates += sorted(Path("/etc/apt/sources.list.d").glob("*.list"))
    for path in candidates:
        if path.is_file():
            mirror = mirror_from_sources(path.read_text())
            if mirror:
                return mirror
    raise LabError("no Debian mirror found in this machine's apt sources: set WEBSTACK_LAB_MIRROR")


def mirror_from_sources(text: str) -> str | None:
    """First Debian archive URI in a deb822 ``.sources`` or one-line ``.list`` text."""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("URIs:"):
            for uri in line.split()[1:]:
                if uri.rstrip("/").endswith("/debian"):
                    return uri.rstrip("/")
        elif line.startswith("deb "):
            words = [w for w in line.split()[1:] if not w.startswith("[")]
            if words and words[0].rstrip("/").endswith("/debian"):
                return words[0].rstrip("/")
    return None


def base_recipe(image: str) -> str:
    return json.dumps({"suite": IMAGES[image], "packages": BASE_PACKAGES,
                       "version": BASE_RECIPE_VERSION}, sort_keys=True)


def base_path(image: str) -> Path:
    return LAB_DIR / "base" / image


def base_is_current(image: str) -> bool:
    stamp = base_path(image) / ".webstack-lab-base"
    return stamp.is_file() and stamp.read_text() == base_recipe(image)


def build_base(image: str, *, force: bool = False) -> None:
    """Build the base tree for ``image`` unless a current one is cached.

    A lock per image lets two labs come up at once: the second waits for the
    first one's build and then reuses it.
    """
    if base_is_current(image) and not force:
        return
    lock_path = LAB_DIR / "base" / f".{image}.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if base_is_current(image) and not force:
            return
        _build_base_locked(image, force=force)


def _build_base_locked(image: str, *, force: bool) -> None:
    final = base_path(image)
    work = final.with_name(final.name + ".tmp")
    done = work / ".webstack-debootstrap-ok"
    start = time.monotonic()
    if not done.is_file() or force:
        if work.exists():
            shutil.rmtree(work)
        mirror = apt_mirror()
        log(f"building base tree {image} ({IMAGES[image]}) with debootstrap")
        cmd = ["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
               IMAGES[image], str(work), mirror]
        logfile = LAB_DIR / "base" / f"{image}.debootstrap.log"
        with open(logfile, "w") as out:
            proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False)
        if proc.returncode != 0:
            raise LabError(f"debootstrap {image} failed (exit {proc.returncode}); see {logfile}")
        done.touch()
    _customise_base(work)
    (work / ".webstack-lab-base").write_text(base_recipe(image))
    done.unlink()
    if final.exists():
        shutil.rmtree(final)
    work.rename(final)
    log(f"base tree {image} ready in {time.monotonic() - start:.0f}s at {final}")


def build_bases(images: list[str], *, force: bool = False) -> None:
    """Build several base trees at once (debootstrap mostly waits on the network)."""
    with ThreadPoolExecutor(max_workers=max(1, len(images))) as pool:
        list(pool.map(lambda image: build_base(image, force=force), images))


def _customise_base(root: Path) -> None:
    """Make a debootstrapped tree boot cleanly as a lab host."""
    # nspawn --hostname and a transient machine id per boot.
    (root / "etc/hostname").unlink(missing_ok=True)
    (root / "etc/machine-id").write_text("")
    (root / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    # The lab key is bind-mounted to /root/.ssh/authorized_keys at boot.
    ssh_dir = root / "root/.ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    ssh_dir.chmod(0o700)
    (root / "etc/webstack-lab").mkdir(exist_ok=True)
    # Quick, quiet logins for Ansible.
    (root / "etc/ssh/sshd_config.d").mkdir(exist_ok=True)
    (root / "etc/ssh/sshd_config.d/webstack-lab.conf").write_text(
        "# webstack lab host\nUseDNS no\nPermitRootLogin prohibit-password\n")
    # Units that cannot work in a container without a real console or kernel access.
    for unit in ("getty@tty1.service", "console-getty.service", "serial-getty@.service"):
        link = root / "etc/systemd/system" / unit
        link.unlink(missing_ok=True)
        link.symlink_to("/dev/null")
    # Do not keep downloaded packages in every base.
    for deb in (root / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()


# --------------------------------------------------------------------------
# Finding what the lab made (for teardown and stale sweeps)
# --------------------------------------------------------------------------

def nspawn_pids(netns_prefix: str) -> list[int]:
    """PIDs of systemd-nspawn processes booted into a netns whose name starts with the prefix."""
    marker = f"--network-namespace-path=/run/netns/{netns_prefix}"
    pids = []
    for proc_dir in Path("/proc").iterdir():
        if not proc_dir.name.isdigit():
            continue
        try:
            argv = (proc_dir / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"systemd-nspawn") and any(
                a.decode(errors="replace").startswith(marker) for a in argv):
            pids.append(int(proc_dir.name))
    return sorted(pids)


def lab_netns(prefix: str) -> list[str]:
    out = run(["ip", "netns", "list"], capture=True).stdout
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    return sorted(n for n in names if n.startswith(prefix))


def has_mark(value: str, mark: str) -> bool:
    """Whether a link alias or rule comment carries the mark: ``webstack-lab:`` (every lab)
    is a prefix; ``webstack-lab:<lab>`` must be the whole mark or followed by ``/<host>``,
    so that lab ``test`` never claims what lab ``test2`` made."""
    if mark.endswith(":"):
        return value.startswith(mark)
    return value == mark or value.startswith(mark + "/")


def marked_links(mark_prefix: str) -> list[str]:
    """Links whose alias the lab set (``webstack-lab:<lab>`` or ``webstack-lab:<lab>/<host>``)."""
    out = run(["ip", "-j", "-d", "link", "show"], capture=True).stdout
    return sorted(link["ifname"] for link in json.loads(out or "[]")
                  if has_mark(str(link.get("ifalias", "")), mark_prefix))


def parse_marked_rules(listing: str, mark_prefix: str) -> list[list[str]]:
    """Rule specs (without ``-A``) in ``iptables -S`` output whose comment carries the mark."""
    rules = []
    for line in listing.splitlines():
        words = shlex.split(line)
        if words[:1] != ["-A"] or "--comment" not in words:
            continue
        comment = words[words.index("--comment") + 1]
        if has_mark(comment, mark_prefix):
            rules.append(words[1:])
    return rules


def marked_iptables_rules(mark_prefix: str) -> list[tuple[str, list[str]]]:
    """(table, rule-spec) of every iptables rule commented with the mark prefix."""
    return [(table, spec) for table in ("nat", "filter")
            for spec in parse_marked_rules(run(["iptables", "-w", "-t", table, "-S"], capture=True).stdout,
                                           mark_prefix)]


def sweep(mark_prefix: str, netns_prefix: str) -> list[str]:
    """Remove every host, namespace, link and rule carrying the mark; return what went."""
    removed = []
    pids = nspawn_pids(netns_prefix)
    for pid in pids:
        _terminate(pid)
    for pid in pids:
        if _wait_gone(pid, 30):
            removed.append(f"host pid {pid}")
        else:
            # The guest did not power off by itself: say so, it points at a real problem.
            os.kill(pid, signal.SIGKILL)
            _wait_gone(pid, 10)
            removed.append(f"host pid {pid} (killed: no orderly poweroff within 30s)")
    for ns in lab_netns(netns_prefix):
        run(["ip", "netns", "del", ns], check=False)
        removed.append(f"netns {ns}")
    for link in marked_links(mark_prefix):
        run(["ip", "link", "del", link], check=False, capture=True)
        removed.append(f"link {link}")
    for table, spec in marked_iptables_rules(mark_prefix):
        run(["iptables", "-w", "-t", table, "-D", *spec], check=False)
        removed.append(f"iptables {table} {spec[0]} rule")
    # systemd-nspawn leaves its mount-propagation directory behind (machine = <lab>-<host>).
    machine_prefix = netns_prefix.removeprefix("wsl-")
    for leftover in Path("/run/systemd/nspawn/propagate").glob(f"{machine_prefix}*"):
        shutil.rmtree(leftover, ignore_errors=True)
    removed += remove_cgroups(machine_prefix)
    return removed


def _terminate(pid: int) -> None:
    # SIGTERM makes systemd-nspawn send SIGRTMIN+3 to the container's systemd:
    # an orderly poweroff of the guest.
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass


def _exited(pid: int) -> bool:
    """True once the process is gone or a zombie (this machine's PID 1 reaps lazily)."""
    try:
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our own child
    except ChildProcessError:
        pass
    try:
        status_text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    return bool(re.search(r"^State:\s+Z", status_text, re.MULTILINE))


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _exited(pid):
            return True
        time.sleep(0.1)
    return _exited(pid)


# --------------------------------------------------------------------------
# Up
# --------------------------------------------------------------------------

def ssh_key() -> Path:
    key = LAB_DIR / "ssh" / "id_ed25519"
    if not key.is_file():
        key.parent.mkdir(parents=True, exist_ok=True)
        key.parent.chmod(0o700)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "webstack-lab", "-f", str(key)])
    return key


def ssh_base_args(key: Path) -> list[str]:
    return ["ssh", "-i", str(key), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=3"]


def setup_network(lab: Lab) -> None:
    br = lab.bridge
    run(["ip", "link", "add", br, "type", "bridge"])
    run(["ip", "link", "set", br, "alias", lab.mark])
    run(["ip", "addr", "add", str(lab.gateway), "dev", br])
    run(["ip", "link", "set", br, "up"])
    forward = Path("/proc/sys/net/ipv4/ip_forward")
    if forward.read_text().strip() != "1":
        forward.write_text("1\n")
    subnet = str(lab.gateway.network)
    comment = ["-m", "comment", "--comment", lab.mark]
    run(["iptables", "-w", "-t", "nat", "-A", "POSTROUTING", "-s", subnet, "!", "-o", br,
         *comment, "-j", "MASQUERADE"])
    run(["iptables", "-w", "-I", "FORWARD", "-i", br, *comment, "-j", "ACCEPT"])
    run(["iptables", "-w", "-I", "FORWARD", "-o", br, "-m", "conntrack", "--ctstate",
         "RELATED,ESTABLISHED", *comment, "-j", "ACCEPT"])
    for host in lab.hosts:
        ns, veth = lab.netns(host), lab.veth(host)
        run(["ip", "netns", "add", ns])
        run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns])
        run(["ip", "link", "set", veth, "alias", f"{lab.mark}/{host.name}"])
        run(["ip", "link", "set", veth, "master", br, "up"])
        prefix = lab.gateway.network.prefixlen
        run(["ip", "-n", ns, "addr", "add", f"{host.address}/{prefix}", "dev", "eth0"])
        run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        run(["ip", "-n", ns, "link", "set", "lo", "up"])
        run(["ip", "-n", ns, "route", "add", "default", "via", str(lab.gateway.ip)])


def cgroup_roots() -> list[Path]:
    """Hierarchies the guests' systemd uses: name=systemd and cgroup2 (hybrid), or cgroup2 alone."""
    hybrid = [Path("/sys/fs/cgroup/systemd"), Path("/sys/fs/cgroup/unified")]
    if any(p.is_dir() for p in hybrid):
        return [p for p in hybrid if p.is_dir()]
    return [Path("/sys/fs/cgroup")]


def host_cgroups(machine: str) -> list[Path]:
    return [root / MARK / machine for root in cgroup_roots()]


def remove_cgroups(machine_prefix: str) -> list[str]:
    """Remove the (empty, once the guest is gone) cgroup trees of matching machines."""
    removed = []
    for root in cgroup_roots():
        for top in sorted((root / MARK).glob(f"{machine_prefix}*")):
            # rmdir children before parents; cgroupfs only removes empty groups.
            for path in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts),
                               reverse=True):
                try:
                    path.rmdir()
                except OSError:
                    pass
            try:
                top.rmdir()
                removed.append(f"cgroup {top}")
            except OSError:
                pass
        try:
            (root / MARK).rmdir()  # only succeeds once no lab host is left
        except OSError:
            pass
    return removed


def boot(lab: Lab, host: Host, key: Path) -> int:
    lab.run_dir.mkdir(parents=True, exist_ok=True)
    console = lab.run_dir / f"{host.name}.console.log"
    cmd = [
        "systemd-nspawn", "--quiet", "-D", str(base_path(host.image)), "--boot",
        f"--machine={lab.machine(host)}", f"--hostname={host.name}",
        "--register=no", "--keep-unit", "--console=passive", "--link-journal=no",
        f"--network-namespace-path=/run/netns/{lab.netns(host)}",
        "--volatile=overlay", "--resolv-conf=copy-host", "--timezone=off",
        f"--bind-ro={key}.pub:/root/.ssh/authorized_keys",
        f"--bind-ro={HOST_CA_BUNDLE}:{GUEST_CA_BUNDLE}",
    ]
    # Without systemd as this machine's PID 1, nspawn puts every guest's payload in the
    # cgroup of whoever starts it: guests started from one cgroup would share one tree
    # and their systemd instances would manage (and kill) each other's units. Start each
    # guest from a cgroup of its own.
    cgroups = host_cgroups(lab.machine(host))
    for group in cgroups:
        group.mkdir(parents=True, exist_ok=True)

    def enter_own_cgroup() -> None:
        for group in cgroups:
            (group / "cgroup.procs").write_text(f"{os.getpid()}\n")

    with open(console, "w") as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=enter_own_cgroup)
    (lab.run_dir / f"{host.name}.pid").write_text(f"{proc.pid}\n")
    return proc.pid


def wait_running(lab: Lab, host: Host, key: Path, pid: int, timeout: float) -> float:
    """Wait until SSH answers and systemd reports 'running'; return seconds waited."""
    start = time.monotonic()
    deadline = start + timeout
    last = ""
    while time.monotonic() < deadline:
        if _exited(pid):
            console = (lab.run_dir / f"{host.name}.console.log").read_text()[-2000:]
            raise LabError(f"{host.name}: systemd-nspawn exited during boot:\n{console}")
        try:
            with socket.create_connection((host.address, 22), timeout=1):
                pass
        except OSError:
            time.sleep(0.3)
            continue
        remaining = max(5, int(deadline - time.monotonic()))
        proc = run([*ssh_base_args(key), f"root@{host.address}",
                    f"timeout {remaining} systemctl is-system-running --wait"],
                   capture=True, check=False, timeout=remaining + 10)
        last = (proc.stdout or proc.stderr).strip()
        if last == "running":
            return time.monotonic() - start
        if last == "degraded":
            failed = run([*ssh_base_args(key), f"root@{host.address}",
                          "for u in $(systemctl --failed --no-legend --plain | cut -d' ' -f1); do "
                          "echo \"== $u\"; journalctl -b -u \"$u\" -n 15 --no-pager; done"],
                         capture=True, check=False)
            raise LabError(f"{host.name}: systemd is degraded; failed units:\n{failed.stdout}")
        time.sleep(0.5)
    raise LabError(f"{host.name}: not running after {timeout:.0f}s (last answer: {last!r})")


def up(lab: Lab, timeout: float) -> None:
    for tool in ("systemd-nspawn", "debootstrap", "iptables", "ssh"):
        if shutil.which(tool) is None:
            raise LabError(f"{tool} is not installed: run 'make host-deps' (apt packages)")
    stale = sweep(lab.mark, f"wsl-{lab.name}-")
    if stale:
        log(f"removed stale state of lab {lab.name}: {', '.join(stale)}")
    build_bases(sorted({h.image for h in lab.hosts}))
    key = ssh_key()
    start = time.monotonic()
    try:
        setup_network(lab)
        pids = {host: boot(lab, host, key) for host in lab.hosts}
        with ThreadPoolExecutor(max_workers=len(lab.hosts)) as pool:
            waits = dict(zip(lab.hosts, pool.map(
                lambda h: wait_running(lab, h, key, pids[h], timeout), lab.hosts)))
    except BaseException:
        log("boot failed: tearing down what was made")
        sweep(lab.mark, f"wsl-{lab.name}-")
        raise
    state = {"lab": lab.name, "bridge": lab.bridge, "gateway": str(lab.gateway),
             "ssh_key": str(key),
             "hosts": {h.name: {"address": h.address, "image": h.image, "pid": pids[h],
                                "netns": lab.netns(h)} for h in lab.hosts}}
    (lab.run_dir / "state.json").write_text(json.dumps(state, indent=2) + "\n")
    for host in lab.hosts:
        log(f"{host.name:10} {host.address:15} {host.image:9} running after {waits[host]:.1f}s")
    log(f"lab {lab.name} up in {time.monotonic() - start:.1f}s; ssh -i {key} root@<address>")


def down(lab_name: str | None) -> None:
    mark = f"{MARK}:{lab_name}" if lab_name else f"{MARK}:"
    netns_prefix = f"wsl-{lab_name}-" if lab_name else "wsl-"
    start = time.monotonic()
    removed = sweep(mark, netns_prefix)
    run_dir = RUN_DIR / lab_name if lab_name else RUN_DIR
    if run_dir.exists():
        shutil.rmtree(run_dir)
    what = f"lab {lab_name}" if lab_name else "every lab"
    log(f"{what} down in {time.monotonic() - start:.1f}s ({len(removed)} items removed)")


def status(lab: Lab | None) -> int:
    prefix = f"wsl-{lab.name}-" if lab else "wsl-"
    mark = lab.mark if lab else f"{MARK}:"
    pids, netns = nspawn_pids(prefix), lab_netns(prefix)
    links, rules = marked_links(mark), marked_iptables_rules(mark)
    machine_prefix = prefix.removeprefix("wsl-")
    cgroups = [str(p) for root in cgroup_roots() for p in sorted((root / MARK).glob(f"{machine_prefix}*"))]
    print(json.dumps({"nspawn_pids": pids, "netns": netns, "links": links, "cgroups": cgroups,
                      "iptables_rules": [f"{t} {' '.join(s)}" for t, s in rules]}, indent=2))
    return 0 if (pids or netns or links or rules or cgroups) else 3


def where(inventory: str) -> None:
    """Print how to reach each host of an inventory's lab (used by `make demo`)."""
    listing = inventory_listing(inventory)
    lab = lab_from_inventory_data(listing)
    key = LAB_DIR / "ssh" / "id_ed25519"
    web = set(listing.get("webservers", {}).get("hosts", []))
    running = set(nspawn_pids(f"wsl-{lab.name}-"))
    print(f"\nLab '{lab.name}' ({len(running)} of {len(lab.hosts)} hosts running) - where to look:")
    for host in lab.hosts:
        print(f"  {host.name:8} {host.address:15} {host.image:9} ssh -i {key} root@{host.address}")
        if host.name in web:
            hostvars = listing.get("_meta", {}).get("hostvars", {}).get(host.name, {})
            site = (hostvars.get("webstack_nginx_server_names") or [host.name])[0]
            print(f"  {'':8} {'':15} {'':9} curl -H 'Host: {site}' http://{host.address}/health/")
    print(f"  Consoles: {lab.run_dir}/<host>.console.log   Journal: ssh in, then journalctl -b")
    print(f"  Stop it all: make lab-down LAB_INVENTORY={inventory}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_base = sub.add_parser("base", help="build (or reuse) the cached base trees")
    p_base.add_argument("images", nargs="*", default=sorted(IMAGES), help="default: all")
    p_base.add_argument("--force", action="store_true", help="rebuild even if cached")
    p_up = sub.add_parser("up", help="boot the hosts an inventory names")
    p_up.add_argument("-i", "--inventory", required=True)
    p_up.add_argument("--timeout", type=float, default=180, help="seconds per host to reach 'running'")
    p_down = sub.add_parser("down", help="power off and remove a lab (or every lab with --all)")
    group = p_down.add_mutually_exclusive_group(required=True)
    group.add_argument("-i", "--inventory")
    group.add_argument("--lab", help="a lab's name (webstack_lab_name), when its inventory is gone")
    group.add_argument("--all", action="store_true")
    p_where = sub.add_parser("where", help="print how to reach the hosts of an inventory")
    p_where.add_argument("-i", "--inventory", required=True)
    p_status = sub.add_parser("status", help="list what a lab (or every lab) has on this machine; exit 3 if nothing")
    p_status.add_argument("-i", "--inventory")
    args = parser.parse_args(argv)

    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, bridges, systemd-nspawn)")
    if args.command == "base":
        unknown = set(args.images) - set(IMAGES)
        if unknown:
            raise LabError(f"unknown image(s) {sorted(unknown)}; known: {sorted(IMAGES)}")
        build_bases(args.images, force=args.force)
        return 0
    if args.command == "up":
        up(load_lab(args.inventory), args.timeout)
        return 0
    if args.command == "where":
        where(args.inventory)
        return 0
    if args.command == "down":
        if args.lab is not None and not LAB_NAME_RE.match(args.lab):
            raise LabError(f"--lab {args.lab!r} must match {LAB_NAME_RE.pattern}")
        down(None if args.all else args.lab or load_lab(args.inventory).name)
        return 0
    return status(load_lab(args.inventory) if args.inventory else None)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except LabError as exc:
        print(f"lab: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
