#!/usr/bin/env python3
"""Boot real systemd test hosts on this machine with systemd-nspawn.

The lab reads the hosts an Ansible inventory names (``ansible_host`` and the
``webstack_lab_*`` variables) and gives each one:

* a Debian base tree (built once with debootstrap, cached, shared read-only)
  as the lower layer of an overlayfs the lab mounts itself, with the host's own
  upper layer on disk under ``LAB_DIR/hosts/<lab>/<host>/``: ``up`` starts every
  host from an empty upper layer (a clean host), and what a host writes survives
  a ``poweroff`` (the plug pulled: every process SIGKILLed, the address silent)
  and the next ``boot`` of that host, like a real disk;
* its own network namespace with its own address on a bridge, NAT for
  outbound apt and pip, and this machine's CA bundle at
  ``/etc/webstack-lab/ca-bundle.crt``;
* SSH as root with a key the lab generates.

Everything the lab creates carries a mark (a name prefix, a link alias or an
iptables comment) so that ``down`` and the stale-state sweep at every ``up``
remove exactly what the lab made and nothing else.

Run as root: ``lab.py {base,up,down,status} -i INVENTORY`` and
``lab.py {poweroff,boot} -i INVENTORY --host NAME`` (see ``--help``).
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
# Each host's disk: <lab>/<host>/disk.img (sparse ext4 image, loop-mounted at <lab>/<host>/disk,
# holding the overlay's upper/ and work/) and the merged tree it boots from, <lab>/<host>/root.
HOSTS_DIR = LAB_DIR / "hosts"
DISK_SIZE = os.environ.get("WEBSTACK_LAB_DISK_SIZE", "16G")
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

    def mac(self, host: Host) -> str:
        """The host's eth0 address: fixed, so that after a poweroff and boot (a new netns and
        veth) the neighbour caches of this machine and of the other hosts stay right, as
        with a real machine's NIC. Locally administered, unicast."""
        digest = hashlib.sha1(f"mac/{self.name}/{host.name}".encode()).digest()
        return ":".join(f"{b:02x}" for b in (0x02 | (digest[0] & 0xfc), *digest[1:6]))

    def machine(self, host: Host) -> str:
        return f"{self.name}-{host.name}"

    @property
    def mark(self) -> str:
        return f"{MARK}:{self.name}"

    @property
    def run_dir(self) -> Path:
        return RUN_DIR / self.name

    def host_dir(self, host: Host) -> Path:
        return HOSTS_DIR / self.name / host.name

    def root(self, host: Host) -> Path:
        """The merged overlay tree the host boots from."""
        return self.host_dir(host) / "root"

    @property
    def disks_dir(self) -> Path:
        return HOSTS_DIR / self.name

    def disk_mark(self, host: Host) -> str:
        """The overlay mount's source name: ``webstack-lab:<lab>/<host>``, matched with has_mark."""
        return f"{self.mark}/{host.name}"

    def host(self, name: str) -> Host:
        for host in self.hosts:
            if host.name == name:
                return host
        raise LabError(f"host {name!r} is not part of lab {self.name} ({', '.join(h.name for h in self.hosts)})")


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

def nspawn_pids(netns_prefix: str, *, exact: bool = False) -> list[int]:
    """PIDs of systemd-nspawn processes booted into a netns whose name starts with the prefix
    (with ``exact``: whose name is the prefix, so host web1 is not web10)."""
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
                (a.decode(errors="replace") == marker) if exact else a.decode(errors="replace").startswith(marker)
                for a in argv):
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


def unescape_mountinfo(field: str) -> str:
    """A /proc/self/mountinfo field with its octal escapes (``\\040`` for a space) decoded."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_mounts_under(mountinfo: str, top: Path) -> list[str]:
    """Mount points at or below ``top`` in a mountinfo text, the latest mount first (the
    order to unmount them in: a host's overlay before the disk that holds its upper layer,
    the lab's own bind mount last). Paths match by whole components: ``hosts/test`` never
    claims ``hosts/test2/...``."""
    top_text = str(top).rstrip("/")
    points = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) > 4:
            point = unescape_mountinfo(fields[4])
            if point == top_text or point.startswith(f"{top_text}/"):
                points.append(point)
    return points[::-1]


def lab_mounts(lab_name: str | None) -> list[str]:
    """The host disks a lab (every lab without a name) has mounted: loop disks and overlays."""
    return parse_mounts_under(Path("/proc/self/mountinfo").read_text(),
                              HOSTS_DIR / lab_name if lab_name else HOSTS_DIR)


def loop_backing_files() -> dict[str, str]:
    """Backing file -> loop device, for every attached loop device."""
    files = {}
    for backing in sorted(Path("/sys/block").glob("loop*/loop/backing_file")):
        try:
            files[backing.read_text().strip()] = f"/dev/{backing.parent.parent.name}"
        except OSError:
            pass
    return files


def lab_loop_devices(lab_name: str | None) -> list[str]:
    """Loop devices whose backing file is a disk image of the lab (left if an unmount failed)."""
    top = f"{HOSTS_DIR / lab_name if lab_name else HOSTS_DIR}/"
    return sorted(dev for path, dev in loop_backing_files().items() if path.startswith(top))


def disk_dirs(lab_name: str | None) -> list[Path]:
    """Host disk directories of a lab (``HOSTS_DIR/<lab>/<host>``), or of every lab."""
    tops = [HOSTS_DIR / lab_name] if lab_name else sorted(p for p in HOSTS_DIR.glob("*") if p.is_dir())
    return sorted(p for top in tops if top.is_dir() for p in top.iterdir())


def remove_nspawn_locks(root: str) -> None:
    """The lock files systemd-nspawn leaves when it is killed: ``.#root.lck`` beside the tree
    and ``/run/systemd/nspawn/locks/inode-<dev>:<ino>`` (a new device at every overlay mount)."""
    try:
        st = os.stat(root)
    except OSError:
        return
    Path(f"/run/systemd/nspawn/locks/inode-{st.st_dev}:{st.st_ino}").unlink(missing_ok=True)
    Path(root).with_name(f".#{Path(root).name}.lck").unlink(missing_ok=True)


def unmount(point: str, *, lazy: bool = True) -> bool:
    """Unmount a host disk (and drop nspawn's lock files on it); with ``lazy``, lazily if
    something still holds it. True when it is gone."""
    remove_nspawn_locks(point)
    if run(["umount", point], check=False, capture=True).returncode == 0:
        return True
    return lazy and run(["umount", "--lazy", point], check=False, capture=True).returncode == 0


def remove_disks(lab_name: str | None) -> list[str]:
    """Unmount a lab's host disks and delete their directories (every lab's without a name)."""
    removed = []
    for point in lab_mounts(lab_name):
        if unmount(point):
            removed.append(f"mount {point}")
    for device in lab_loop_devices(lab_name):
        run(["losetup", "-d", device], check=False, capture=True)
        removed.append(f"loop device {device}")
    still_mounted = lab_mounts(lab_name)
    for directory in disk_dirs(lab_name):
        # Never delete through a tree that is still mounted (that would write whiteouts into it).
        if any(m == str(directory) or m.startswith(f"{directory}/") for m in still_mounted):
            continue
        shutil.rmtree(directory, ignore_errors=True)
        removed.append(f"disk {directory}")
    for top in ([HOSTS_DIR / lab_name] if lab_name else [*HOSTS_DIR.glob("*"), HOSTS_DIR]):
        try:
            top.rmdir()  # only once empty
        except OSError:
            pass
    return removed


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
    removed += remove_disks(mark_prefix.removeprefix(f"{MARK}:") or None)
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
        setup_host_network(lab, host)


def setup_host_network(lab: Lab, host: Host, *, dead: bool = False) -> None:
    """A fresh network namespace for the host, its veth on the lab's bridge and its address.

    ``dead``: the namespace of a powered-off host. It keeps the address (neighbours still
    resolve it, as on a switched network whose port stays up) but drops every packet in and
    out, so a peer's connection attempt hangs and times out: no TCP reset, no ICMP error.
    """
    ns, veth = lab.netns(host), lab.veth(host)
    run(["ip", "netns", "add", ns])
    run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "address", lab.mac(host),
         "netns", ns])
    run(["ip", "link", "set", veth, "alias", f"{lab.mark}/{host.name}"])
    if dead:
        for chain in ("INPUT", "OUTPUT", "FORWARD"):
            run(["ip", "netns", "exec", ns, "iptables", "-w", "-P", chain, "DROP"])
    run(["ip", "link", "set", veth, "master", lab.bridge, "up"])
    prefix = lab.gateway.network.prefixlen
    run(["ip", "-n", ns, "addr", "add", f"{host.address}/{prefix}", "dev", "eth0"])
    run(["ip", "-n", ns, "link", "set", "eth0", "up"])
    run(["ip", "-n", ns, "link", "set", "lo", "up"])
    run(["ip", "-n", ns, "route", "add", "default", "via", str(lab.gateway.ip)])


def remove_host_network(lab: Lab, host: Host) -> None:
    """Delete the host's veth pair (synchronously, so its name is free again) and namespace."""
    run(["ip", "link", "del", lab.veth(host)], check=False, capture=True)
    run(["ip", "netns", "del", lab.netns(host)], check=False, capture=True)


def cgroup_roots() -> list[Path]:
    """Hierarchies the guests' systemd uses: name=systemd and cgroup2 (hybrid), or cgroup2 alone."""
    hybrid = [Path("/sys/fs/cgroup/systemd"), Path("/sys/fs/cgroup/unified")]
    if any(p.is_dir() for p in hybrid):
        return [p for p in hybrid if p.is_dir()]
    return [Path("/sys/fs/cgroup")]


def host_cgroups(machine: str) -> list[Path]:
    return [root / MARK / machine for root in cgroup_roots()]


def remove_cgroups(machine_prefix: str, *, exact: bool = False) -> list[str]:
    """Remove the (empty, once the guest is gone) cgroup trees of matching machines
    (with ``exact``: of the one machine named ``machine_prefix``)."""
    removed = []
    for root in cgroup_roots():
        pattern = machine_prefix if exact else f"{machine_prefix}*"
        for top in sorted((root / MARK).glob(pattern)):
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


def overlay_options(lower: Path, upper: Path, work: Path) -> str:
    """Mount options of a host's disk; refuse paths overlayfs would split ("," and ":")."""
    for path in (lower, upper, work):
        if any(c in str(path) for c in ",:\\"):
            raise LabError(f"{path}: overlayfs paths cannot contain ',', ':' or '\\' (set WEBSTACK_LAB_DIR)")
    return f"lowerdir={lower},upperdir={upper},workdir={work}"


def mount_disk(lab: Lab, host: Host, *, fresh: bool) -> Path:
    """Mount the host's disk and its tree at lab.root(host): the base tree read-only below,
    the host's own upper layer above, on a disk image of its own.

    ``fresh`` makes a new, empty disk (a clean host); otherwise the disk the host wrote
    before its poweroff is mounted again. The disk is a sparse ext4 image, loop-mounted
    without write barriers: creating files (pip and apt do it by the thousand) costs about
    what it costs on tmpfs, where this machine's own ext4 is several times slower; and it
    keeps its journal, since ext4 without one scans for recently deleted inodes at every
    create and gets as slow. A guest's poweroff loses nothing (this machine's kernel keeps
    running and holds what was written); a crash of this machine may lose a kept disk,
    and 'up' makes new disks anyway.
    """
    directory, root = lab.host_dir(host), lab.root(host)
    image, disk = directory / "disk.img", directory / "disk"
    share_disks_dir(lab)
    mounted = lab_mounts(lab.name)
    if fresh:
        for point in (root, disk):
            if str(point) in mounted and not unmount(str(point), lazy=False):
                raise LabError(f"{host.name}: cannot unmount {point}")
        if directory.exists():
            shutil.rmtree(directory)
        directory.mkdir(parents=True)
        with open(image, "wb") as out:
            out.truncate(parse_size(DISK_SIZE))
        run(["mkfs.ext4", "-q", "-F", "-J", "size=64", "-m", "0", "-L", f"{lab.name}-{host.name}"[:16],
             "-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard", str(image)], capture=True)
    elif not image.is_file():
        raise LabError(f"{host.name}: its disk {image} is gone; run 'up' for a clean lab")
    if str(disk) not in mounted:
        if str(image) in loop_backing_files():
            # Mounting an image twice corrupts it: a lazy unmount must finish first.
            raise LabError(f"{host.name}: {image} is still attached to a loop device (losetup -j {image})")
        disk.mkdir(exist_ok=True)
        # noinit_itable: the image is sparse, its inode tables read as zeroes already.
        run(["mount", "-o", "loop,noinit_itable,nobarrier", str(image), str(disk)])
    upper, work = disk / "upper", disk / "work"
    for path in (upper, work, root):
        path.mkdir(exist_ok=True)
    if str(root) not in mounted:
        run(["mount", "-t", "overlay", lab.disk_mark(host), "-o",
             overlay_options(base_path(host.image), upper, work), str(root)])
    return root


def share_disks_dir(lab: Lab) -> None:
    """Make ``HOSTS_DIR/<lab>`` a mount point with shared propagation (a bind mount of itself).

    systemd-nspawn enters its container by moving the tree onto / in a copy of this machine's
    mount namespace: every mount that existed then, such as the disks of the lab's other
    hosts, stays in the copy (hidden) for as long as that container runs. Where this
    machine's mounts are private (no systemd as PID 1), unmounting a host's disk here would
    leave it mounted in its neighbours' copies, still holding its loop device, and the next
    boot would mount the same ext4 image twice. nspawn turns its copy into a slave of this
    machine's mounts, so with the lab's disks in a shared peer group, an unmount here
    reaches every copy.
    """
    top = lab.disks_dir
    top.mkdir(parents=True, exist_ok=True)
    if str(top) not in parse_mounts_under(Path("/proc/self/mountinfo").read_text(), top):
        run(["mount", "--bind", str(top), str(top)])
    run(["mount", "--make-shared", str(top)])


def parse_size(text: str) -> int:
    """Bytes in a size such as ``16G``, ``512M`` or ``1073741824``."""
    match = re.fullmatch(r"(\d+)([KMGT]?)", text.strip().upper())
    if not match or int(match.group(1)) == 0:
        raise LabError(f"disk size {text!r} is not a size such as 16G or 512M (WEBSTACK_LAB_DISK_SIZE)")
    return int(match.group(1)) * 1024 ** " KMGT".index(match.group(2) or " ")


def boot(lab: Lab, host: Host, key: Path) -> int:
    """Start systemd-nspawn on the host's mounted disk; return its pid."""
    lab.run_dir.mkdir(parents=True, exist_ok=True)
    console = lab.run_dir / f"{host.name}.console.log"
    # The tree is writable (the overlay mounted by mount_disk), so no --volatile: nspawn
    # writes the mount points of the binds and resolv.conf into the host's upper layer.
    cmd = [
        "systemd-nspawn", "--quiet", "-D", str(lab.root(host)), "--boot",
        f"--machine={lab.machine(host)}", f"--hostname={host.name}",
        "--register=no", "--keep-unit", "--console=passive", "--link-journal=no",
        f"--network-namespace-path=/run/netns/{lab.netns(host)}",
        "--resolv-conf=copy-host", "--timezone=off",
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

    with open(console, "a") as out:
        out.write(f"---- webstack-lab: boot at {time.strftime('%Y-%m-%d %H:%M:%S')} ----\n")
        out.flush()
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
    for tool in ("systemd-nspawn", "debootstrap", "iptables", "ssh", "mkfs.ext4", "losetup"):
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
        for host in lab.hosts:
            mount_disk(lab, host, fresh=True)
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
             "hosts": {h.name: host_state(lab, h, pids[h]) for h in lab.hosts}}
    write_state(lab, state)
    for host in lab.hosts:
        log(f"{host.name:10} {host.address:15} {host.image:9} running after {waits[host]:.1f}s")
    log(f"lab {lab.name} up in {time.monotonic() - start:.1f}s; ssh -i {key} root@<address>")


def host_state(lab: Lab, host: Host, pid: int | None) -> dict:
    return {"address": host.address, "image": host.image, "pid": pid,
            "state": "running" if pid else "powered off",
            "netns": lab.netns(host), "disk": str(lab.host_dir(host))}


def read_state(lab: Lab) -> dict:
    path = lab.run_dir / "state.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise LabError(f"lab {lab.name} is not up (no readable {path}): run 'up' first") from exc


def write_state(lab: Lab, state: dict) -> None:
    path = lab.run_dir / "state.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.rename(path)


def cgroup_pids(machine: str) -> list[int]:
    """Every process left in a host's cgroup trees (nspawn and everything in its container)."""
    pids: set[int] = set()
    for group in host_cgroups(machine):
        for procs in group.rglob("cgroup.procs") if group.is_dir() else []:
            try:
                pids.update(int(p) for p in procs.read_text().split())
            except (OSError, ValueError):
                pass
    return sorted(pids)


def pull_plug(lab: Lab, host: Host) -> None:
    """Kill the host's systemd-nspawn and everything in its container at once (SIGKILL: no
    orderly shutdown, nothing is flushed by the guest), and wait until all of it is gone."""
    machine = lab.machine(host)
    nspawn = nspawn_pids(lab.netns(host), exact=True)
    for group in host_cgroups(machine):
        kill_file = group / "cgroup.kill"  # cgroup2: kills the whole subtree in one go
        if kill_file.exists():
            kill_file.write_text("1\n")
    deadline = time.monotonic() + 15
    while True:
        left = [pid for pid in nspawn if not _exited(pid)] + cgroup_pids(machine)
        if not left:
            break
        if time.monotonic() > deadline:
            raise LabError(f"{host.name}: processes {sorted(set(left))} survived SIGKILL")
        for pid in set(left):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)


def poweroff(lab: Lab, names: list[str]) -> None:
    """Pull the plug of running hosts: their disk keeps exactly what was written, their
    address stops answering (packets dropped, no reset, no ICMP), state.json says so."""
    state = read_state(lab)
    hosts = [lab.host(name) for name in dict.fromkeys(names)]
    for host in hosts:
        if not nspawn_pids(lab.netns(host), exact=True):
            raise LabError(f"{host.name} is not running (already powered off?)")
    for host in hosts:
        start = time.monotonic()
        # Cut the cable first: the kernel closes the sockets of the killed processes, and
        # their FINs and resets must not reach anyone (a host losing power sends nothing).
        run(["ip", "link", "set", lab.veth(host), "down"])
        pull_plug(lab, host)
        machine = lab.machine(host)
        remove_cgroups(machine, exact=True)
        shutil.rmtree(Path("/run/systemd/nspawn/propagate") / machine, ignore_errors=True)
        (lab.run_dir / f"{host.name}.pid").unlink(missing_ok=True)
        # Detach the disk: nothing may hold it now, and boot mounts it again from what is on it.
        for point in (lab.root(host), lab.host_dir(host) / "disk"):
            if not unmount(str(point), lazy=False):
                raise LabError(f"{host.name}: cannot unmount {point}")
        remove_host_network(lab, host)
        setup_host_network(lab, host, dead=True)
        state["hosts"][host.name] = host_state(lab, host, None)
        write_state(lab, state)
        log(f"{host.name:10} {host.address:15} powered off in {time.monotonic() - start:.1f}s "
            f"(disk kept at {lab.host_dir(host)})")


def boot_host(lab: Lab, name: str, timeout: float) -> None:
    """Boot a powered-off host again on its kept disk with a fresh network namespace."""
    state = read_state(lab)
    host = lab.host(name)
    if nspawn_pids(lab.netns(host), exact=True):
        raise LabError(f"{host.name} is running: power it off first")
    if state.get("hosts", {}).get(host.name, {}).get("state") != "powered off":
        raise LabError(f"{host.name} was not powered off by 'lab.py poweroff'; run 'up' for a clean lab")
    key = ssh_key()
    start = time.monotonic()
    remove_cgroups(lab.machine(host), exact=True)
    mount_disk(lab, host, fresh=False)
    remove_host_network(lab, host)
    setup_host_network(lab, host)
    pid = boot(lab, host, key)
    state["hosts"][host.name] = host_state(lab, host, pid)
    write_state(lab, state)
    waited = wait_running(lab, host, key, pid, timeout)
    log(f"{host.name:10} {host.address:15} {host.image:9} running after {waited:.1f}s "
        f"(booted on its kept disk in {time.monotonic() - start:.1f}s)")


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
    mounts, disks = lab_mounts(lab.name if lab else None), [str(p) for p in disk_dirs(lab.name if lab else None)]
    loops = lab_loop_devices(lab.name if lab else None)
    hosts = {}
    if lab and (lab.run_dir / "state.json").is_file():
        hosts = {name: h.get("state", "running") for name, h in read_state(lab).get("hosts", {}).items()}
    print(json.dumps({"hosts": hosts, "nspawn_pids": pids, "netns": netns, "links": links, "cgroups": cgroups,
                      "iptables_rules": [f"{t} {' '.join(s)}" for t, s in rules],
                      "mounts": mounts, "loop_devices": loops, "disks": disks}, indent=2))
    return 0 if (pids or netns or links or rules or cgroups or mounts or loops or disks) else 3


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
    p_poweroff = sub.add_parser("poweroff", help="pull the plug of running hosts (SIGKILL; their disk is kept)")
    p_poweroff.add_argument("-i", "--inventory", required=True)
    p_poweroff.add_argument("--host", action="append", required=True, dest="hosts", metavar="NAME",
                            help="a host of the inventory; repeat for several")
    p_boot = sub.add_parser("boot", help="boot a powered-off host again on its kept disk")
    p_boot.add_argument("-i", "--inventory", required=True)
    p_boot.add_argument("--host", required=True, metavar="NAME")
    p_boot.add_argument("--timeout", type=float, default=180, help="seconds to reach 'running'")
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
    if args.command == "poweroff":
        poweroff(load_lab(args.inventory), args.hosts)
        return 0
    if args.command == "boot":
        boot_host(load_lab(args.inventory), args.host, args.timeout)
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
