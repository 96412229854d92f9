#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright: webstack.django maintainers
# MIT License (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: deploy_lock
short_description: Take or release a host's deploy lock; of runs racing to take over a stale lock exactly one wins
version_added: 0.1.0
description:
  - The deploy lock of an application on a host is the file O(path), for example C(/var/lib/webstack/shop.lock). It
    exists while a run holds the lock and holds one line, C(<holder> run <run id> boot <boot id>), where O(holder)
    says who took it (playbook, user, controller, time), the run id identifies the run that took it and the boot id
    is the host's C(/proc/sys/kernel/random/boot_id) when it was taken.
  - With O(state=present) the module takes the lock. When there is no lock it is created with link(2) from a
    complete, synced temporary file, so it never exists empty or half written. A lock taken before the host last
    booted (another boot id) cannot be held by a live run and is taken over; with O(force=true) a lock of this boot
    is taken over as well. Otherwise the module returns RV(rc=75) with the holder and the lock's age.
  - Every change of the lock (create, take over, release) is made while holding an exclusive flock(2) on the
    lock's directory, so reading the current holder, deciding and replacing it is one step that no other run can
    interleave with. Of runs racing to take over the same stale lock, the first one replaces it with its own and
    every other one then finds a lock of this boot held by another run and is refused. A take-over replaces the lock
    with an atomic rename(2) of a synced temporary file, so the lock file exists throughout. The directory is
    synced after each change. The C(flock) is released when the module's process ends, even when it is killed.
  - A forced take-over only replaces the holder that this run saw when it started; a lock taken meanwhile by a
    concurrent run is respected (refused), so of concurrent forced runs exactly one wins too.
  - With O(state=absent) the module releases the lock only if it still holds O(run_id). A lock another run has
    taken over (O(force=true)) is left to that run, and a lock that is already gone is not an error; both give a
    warning.
author:
  - webstack.django maintainers (!UNKNOWN)
options:
  path:
    description:
      - Path of the lock file, in a directory only root can write to.
      - While it changes the lock (milliseconds), the module holds a flock(2) on that directory, shared by every lock
        file in it. Files other than lock files may live there too (nothing else takes that flock).
    type: path
    required: true
  state:
    description:
      - V(present) takes the lock, V(absent) releases it.
    type: str
    choices: [present, absent]
    default: present
  holder:
    description:
      - Who takes the lock, for example C(deploy by alice@laptop since 2026-01-01T12:00:00Z). Whitespace runs, line
        breaks included, are written as one space.
      - Required with O(state=present).
    type: str
  run_id:
    description:
      - Id of this run, 1 to 64 characters from C(A-Z), C(a-z), C(0-9), C(.), C(_) and C(-), starting with a letter
        or a digit.
      - With O(state=present) a random UUID is made when it is omitted; RV(run_id) returns it.
      - Required with O(state=absent); give the RV(run_id) that O(state=present) returned.
    type: str
  force:
    description:
      - With O(state=present), take over a lock of this boot too (a lock left behind by a killed run).
        RV(previous_holder) names the holder removed.
    type: bool
    default: false
  directories:
    description:
      - With O(state=present), more directories to create, like the directory of O(path) which is always created.
        Missing directories are created with their parents; each one is given mode C(0755), and owner and group
        C(root) when the module runs as root (like C(install -d -m 0755 -o root -g root)).
    type: list
    elements: path
    default: []
  timeout:
    description:
      - Seconds to wait for the C(flock) on the lock's directory, held by another run for the few milliseconds of its
        own change.
    type: int
    default: 60
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reads the lock and returns what the module would do (RV(rc), RV(outcome)) without writing anything.
  diff_mode:
    support: none
  platform:
    platforms: posix
    details: Linux (the boot id comes from C(/proc/sys/kernel/random/boot_id)).
notes:
  - The module needs to run as root (C(become=true)) to write into a root-owned directory.
  - Lock files written by earlier versions (C(<holder> boot <boot id>), without a run id) are understood; other
    content (for example an empty file) counts as a lock of this boot held by an unknown run.
"""

EXAMPLES = r"""
- name: Take the deploy lock
  webstack.django.deploy_lock:
    path: /var/lib/webstack/shop.lock
    holder: "deploy by {{ lookup('ansible.builtin.pipe', 'id -un') }} since {{ now(utc=true).isoformat() }}"
    force: "{{ force_unlock | default(false) | bool }}"
    directories: [/etc/ansible/facts.d]
  register: lock
  failed_when: lock.rc | default(1) not in [0, 75]
  become: true

- name: Refuse to deploy while another run holds the lock
  ansible.builtin.fail:
    msg: "The lock is held by {{ lock.holder }} age {{ lock.age }}s"
  when: lock.rc == 75

- name: Release the lock (only if this run still holds it)
  webstack.django.deploy_lock:
    path: /var/lib/webstack/shop.lock
    run_id: "{{ lock.run_id }}"
    state: absent
  when: lock.locked | default(false)
  become: true
"""

RETURN = r"""
path:
  description: The absolute path of the lock file.
  returned: always
  type: str
  sample: /var/lib/webstack/shop.lock
rc:
  description:
    - V(0) when this run holds the lock (or, with O(state=absent), in every case), V(75) when another run holds it.
    - As a non-zero RV(rc) marks a task failed, tasks that handle the refusal set C(failed_when).
  returned: always
  type: int
  sample: 0
outcome:
  description:
    - With O(state=present), V(taken) (there was no lock), V(rebooted) (took over a lock from before the host last
      booted), V(forced) (took over a lock of this boot, O(force=true)), V(already) (this O(run_id) already holds
      it) or V(held) (refused, another run holds it).
    - With O(state=absent), V(released), V(gone) (there was no lock) or V(taken_over) (another run holds it now; it
      is left).
    - In check mode, what the module would do.
  returned: always
  type: str
  sample: taken
run_id:
  description: Id of this run (O(run_id) or the one made).
  returned: always
  type: str
  sample: 0b6f1f3e-2a4c-4f0e-9d7b-5d1c2f3a4b5c
boot_id:
  description: The host's boot id.
  returned: with O(state=present)
  type: str
  sample: 5d1c2f3a-4b5c-4f0e-9d7b-0b6f1f3e2a4c
locked:
  description: Whether this run holds the lock on the host after the task (false in check mode).
  returned: always
  type: bool
  sample: true
holder:
  description:
    - Full text of the lock after the task (with RV(outcome=held) or RV(outcome=taken_over), the other run's), or
      null when there is none.
  returned: always
  type: str
  sample: >-
    deploy by alice@laptop since 2026-01-01T12:00:00Z run 0b6f1f3e-2a4c-4f0e-9d7b-5d1c2f3a4b5c
    boot 5d1c2f3a-4b5c-4f0e-9d7b-0b6f1f3e2a4c
previous_holder:
  description:
    - Full text of the lock this run took over (RV(outcome=rebooted) or RV(outcome=forced)) or removed
      (RV(outcome=released)), or null.
  returned: always
  type: str
  sample: >-
    deploy by bob@desk since 2026-01-01T11:58:00Z run 7c2e9a10-1b3d-4e5f-8a6b-9c0d1e2f3a4b
    boot 5d1c2f3a-4b5c-4f0e-9d7b-0b6f1f3e2a4c
age:
  description: Seconds since the lock in RV(holder) was written, or null when there is none.
  returned: always
  type: int
  sample: 42
directories_created:
  description: Directories the module created (or would create, in check mode).
  returned: always
  type: list
  elements: str
  sample: [/var/lib/webstack]
"""

import fcntl
import os
import re
import time
import uuid

from ansible.module_utils.basic import AnsibleModule

BOOT_ID_FILE = "/proc/sys/kernel/random/boot_id"
# Tests point this at a file of their own to play a host that booted again.
BOOT_ID_FILE_ENV = "WEBSTACK_DEPLOY_LOCK_BOOT_ID_FILE"

EX_HELD = 75  # EX_TEMPFAIL of sysexits.h, as the shell version of the lock returned
RUN_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# "<holder> run <run id> boot <boot id>": the holder is greedy, so the last " run X boot Y" ends the line.
LINE_RE = re.compile(r"(?P<holder>.*) run (?P<run_id>\S+) boot (?P<boot_id>\S+)")
# Written by earlier versions: "<holder> boot <boot id>".
OLD_LINE_RE = re.compile(r"(?P<holder>.*) boot (?P<boot_id>\S+)")
MAX_READ = 65536
DIRECTORY_MODE = 0o755
FILE_MODE = 0o644


class LockError(Exception):
    """The lock cannot be read, written or guarded."""


# --- the lock file -----------------------------------------------------------------------------------------------

def read_boot_id():
    path = os.environ.get(BOOT_ID_FILE_ENV) or BOOT_ID_FILE
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            value = f.read().strip()
    except OSError as e:
        raise LockError("cannot read the boot id from %s: %s" % (path, e.strerror))
    if not value or len(value.split()) != 1:
        raise LockError("%s does not hold a boot id: %r" % (path, value[:80]))
    return value


def make_run_id():
    return str(uuid.uuid4())


def lock_line(holder, run_id, boot_id):
    """The lock file's content: one line."""
    holder = " ".join(holder.split()) or "unknown"
    return "%s run %s boot %s\n" % (holder, run_id, boot_id)


def parse_lock(text):
    """(run id or None, boot id) of a lock's text, or None when the text is not a lock line."""
    if text.endswith("\n"):
        text = text[:-1]
    if "\n" in text or "\r" in text:
        return None
    match = LINE_RE.fullmatch(text)
    if match:
        return match.group("run_id"), match.group("boot_id")
    match = OLD_LINE_RE.fullmatch(text)
    if match:
        return None, match.group("boot_id")
    return None


def shown(text):
    """A lock's text for messages: without its line break."""
    return None if text is None else text.rstrip("\n")


def read_lock(path):
    """(text, mtime) of the lock, or (None, None) when there is none."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None, None
    except OSError as e:
        raise LockError("cannot read the lock %s: %s" % (path, e.strerror))
    try:
        mtime = os.fstat(fd).st_mtime
        data = os.read(fd, MAX_READ)
    finally:
        os.close(fd)
    return data.decode("utf-8", errors="replace"), mtime


def age_of(mtime, now=None):
    if mtime is None:
        return None
    return max(0, int((time.time() if now is None else now) - mtime))


class DirectoryGuard:
    """An exclusive flock(2) on a directory, for every change of the lock files in it.

    The lock is released when the descriptor is closed, and by the kernel when the process dies.
    """

    def __init__(self, directory, timeout):
        self.directory = directory
        self.timeout = timeout
        self.fd = None

    def __enter__(self):
        self.fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        deadline = time.monotonic() + self.timeout
        pause = 0.001
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(self.fd)
                    self.fd = None
                    raise LockError("another process held the flock of %s for more than %s s"
                                    % (self.directory, self.timeout))
                time.sleep(pause)
                pause = min(pause * 2, 0.05)

    def __exit__(self, *exc):
        os.close(self.fd)
        self.fd = None
        return False

    def sync(self):
        os.fsync(self.fd)


def temp_prefix(path):
    return ".%s." % os.path.basename(path)


def remove_leftovers(path):
    """Remove temporary files a killed run left next to the lock.

    Called under the guard: every run writes its temporary file under the guard, so any one found now is a
    leftover.
    """
    directory = os.path.dirname(path)
    prefix = temp_prefix(path)
    for name in os.listdir(directory):
        if name.startswith(prefix) and name.endswith(".tmp"):
            try:
                os.unlink(os.path.join(directory, name))
            except FileNotFoundError:
                pass


def write_temp(path, line, run_id):
    """A synced temporary file next to path holding line; returns its path."""
    temp = os.path.join(os.path.dirname(path), "%s%s.%d.tmp" % (temp_prefix(path), run_id, os.getpid()))
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, FILE_MODE)
    try:
        data = line.encode("utf-8")
        while data:
            data = data[os.write(fd, data):]
        os.fchmod(fd, FILE_MODE)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(temp)
        raise
    os.close(fd)
    return temp


# --- taking and releasing ----------------------------------------------------------------------------------------

def decide(current, run_id, boot_id, force, observed):
    """What a run does with the lock text current (None: no lock): taken, already, rebooted, forced or held."""
    if current is None:
        return "taken"
    parsed = parse_lock(current)
    if parsed is not None and parsed[0] == run_id:
        return "already"
    if parsed is not None and parsed[1] != boot_id:
        return "rebooted"
    if force and current == observed:
        return "forced"
    return "held"


_UNSET = object()


def acquire(path, holder, run_id, force=False, observed=_UNSET, check_mode=False, timeout=60):
    """Take the lock at path. Returns the result dict (rc, outcome, locked, holder, previous_holder, age, ...).

    observed is the lock text this run saw when it started (None: no lock), read here when not given: a forced
    take-over replaces only that one.
    """
    boot_id = read_boot_id()
    line = lock_line(holder, run_id, boot_id)
    if observed is _UNSET:
        observed = read_lock(path)[0]
    result = dict(run_id=run_id, boot_id=boot_id, holder=None, previous_holder=None, age=None)

    if check_mode:
        current, mtime = read_lock(path)
        outcome = decide(current, run_id, boot_id, force, observed)
        return finish(result, outcome, current, mtime, line, locked=False)

    directory = os.path.dirname(path)
    with DirectoryGuard(directory, timeout) as guard:
        remove_leftovers(path)
        current, mtime = read_lock(path)
        outcome = decide(current, run_id, boot_id, force, observed)
        if outcome == "taken":
            temp = write_temp(path, line, run_id)
            try:
                os.link(temp, path)
            except FileExistsError:
                # Created meanwhile by a writer that does not take the guard (an earlier version): it holds it.
                outcome = "held"
                current, mtime = read_lock(path)
            finally:
                os.unlink(temp)
            guard.sync()
        elif outcome in ("rebooted", "forced"):
            temp = write_temp(path, line, run_id)
            os.rename(temp, path)
            guard.sync()
    return finish(result, outcome, current, mtime, line, locked=outcome != "held")


def finish(result, outcome, current, mtime, line, locked):
    result.update(outcome=outcome, locked=locked, rc=EX_HELD if outcome == "held" else 0)
    if outcome == "held":
        result.update(holder=shown(current), age=age_of(mtime) if current is not None else None)
    elif outcome == "already":
        result.update(holder=shown(current), age=age_of(mtime))
    else:
        result.update(holder=shown(line), age=0)
        if outcome in ("rebooted", "forced"):
            result["previous_holder"] = shown(current)
    return result


def release(path, run_id, check_mode=False, timeout=60):
    """Remove the lock at path if it holds run_id. Returns the result dict (outcome released, gone or taken_over)."""
    result = dict(rc=0, run_id=run_id, locked=False, holder=None, previous_holder=None, age=None)
    directory = os.path.dirname(path)

    def outcome_of(current):
        if current is None:
            return "gone"
        parsed = parse_lock(current)
        return "released" if parsed is not None and parsed[0] == run_id else "taken_over"

    if check_mode or not os.path.isdir(directory):
        current, mtime = read_lock(path)
        outcome = outcome_of(current)
    else:
        with DirectoryGuard(directory, timeout) as guard:
            current, mtime = read_lock(path)
            outcome = outcome_of(current)
            if outcome == "released":
                os.unlink(path)
                guard.sync()
    result["outcome"] = outcome
    if outcome == "taken_over":
        result.update(holder=shown(current), age=age_of(mtime))
    elif outcome == "released":
        result["previous_holder"] = shown(current)
    return result


def ensure_directories(paths, check_mode=False):
    """Create the directories (and their parents) like install -d -m 0755 -o root -g root; return those created."""
    created = []
    as_root = os.geteuid() == 0
    for path in paths:
        missing = []
        here = path
        while not os.path.isdir(here):
            missing.append(here)
            parent = os.path.dirname(here)
            if parent == here:
                break
            here = parent
        created.extend(reversed(missing))
        if check_mode:
            continue
        try:
            os.makedirs(path, DIRECTORY_MODE, exist_ok=True)
            st = os.stat(path)
            if as_root and (st.st_uid, st.st_gid) != (0, 0):
                os.chown(path, 0, 0)
            if st.st_mode & 0o7777 != DIRECTORY_MODE:
                os.chmod(path, DIRECTORY_MODE)
        except OSError as e:
            raise LockError("cannot create the directory %s: %s" % (path, e.strerror or e))
    return created


def message(path, result):
    outcome = result["outcome"]
    if outcome == "taken":
        return "took the deploy lock %s" % path
    if outcome == "already":
        return "this run already holds the deploy lock %s" % path
    if outcome == "rebooted":
        return ("took over the deploy lock %s taken before the host last booted (%s): no run can still hold it"
                % (path, result["previous_holder"]))
    if outcome == "forced":
        return "took over the deploy lock %s (force) and removed its holder: %s" % (path, result["previous_holder"])
    if outcome == "held":
        return "the deploy lock %s is held by %s age %ss" % (path, result["holder"], result["age"])
    if outcome == "released":
        return "released the deploy lock %s" % path
    if outcome == "gone":
        return "the deploy lock %s was already gone: someone else removed it" % path
    return ("the deploy lock %s was taken over by someone else (%s) and is left to them"
            % (path, result["holder"]))


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            state=dict(type="str", default="present", choices=["present", "absent"]),
            holder=dict(type="str"),
            run_id=dict(type="str"),
            force=dict(type="bool", default=False),
            directories=dict(type="list", elements="path", default=[]),
            timeout=dict(type="int", default=60),
        ),
        required_if=[("state", "present", ("holder",)), ("state", "absent", ("run_id",))],
        supports_check_mode=True,
    )
    params = module.params
    path = os.path.abspath(params["path"])
    if not os.path.basename(params["path"]):
        module.fail_json(msg="path must name a file, not a directory: %s" % params["path"])
    run_id = params["run_id"]
    if run_id is not None and not RUN_ID_RE.fullmatch(run_id):
        module.fail_json(msg="run_id must match %s: %r" % (RUN_ID_RE.pattern, run_id))
    if params["timeout"] < 0:
        module.fail_json(msg="timeout must not be negative")

    try:
        if params["state"] == "present":
            created = ensure_directories([os.path.dirname(path)] + [os.path.abspath(d) for d in params["directories"]],
                                         check_mode=module.check_mode)
            result = acquire(path, params["holder"], run_id or make_run_id(), force=params["force"],
                             check_mode=module.check_mode,
                             timeout=params["timeout"])
            result["directories_created"] = created
            result["changed"] = bool(created) or result["outcome"] in ("taken", "rebooted", "forced")
        else:
            result = release(path, run_id, check_mode=module.check_mode, timeout=params["timeout"])
            result["directories_created"] = []
            result["changed"] = result["outcome"] == "released"
            if result["outcome"] != "released":
                text = message(path, result)
                module.warn(text[0].upper() + text[1:])
    except LockError as e:
        module.fail_json(msg=str(e), path=path)
    except OSError as e:
        module.fail_json(msg="deploy lock %s: %s" % (path, e))
    result["msg"] = message(path, result)
    module.exit_json(path=path, **result)


if __name__ == "__main__":
    main()
