#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright: webstack.django maintainers
# MIT License (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: slot_files
short_description: Keep, compare and restore the files a slot of a Django app runs with
version_added: 0.1.0
description:
  - A slot (C(blue) or C(green)) of app C(<app>) runs with its systemd units C(/etc/systemd/system/<app>-<slot>-*),
    its server configurations C(/etc/<app>/<slot>-*) and its environment file C(/etc/<app>/<slot>.env).
  - O(action=snapshot) keeps a copy of those files (owner, group, mode and content) in O(store) under
    O(name) (the slot's signature), with O(description), just before nginx switches to the slot.
  - O(action=restore) puts a kept copy back when the files on disk differ from it (a failed deploy into the
    previous slot rewrote them), so a rollback runs exactly what the slot ran. The caller stops the slot's units
    first and reloads systemd after.
  - O(action=check) tells whether the files on disk are those kept under O(name).
  - O(action=prune) removes the kept copies not named in O(keep).
  - Kept copies hold the environment file, so the store is root-only (0700, files 0600). Nothing of the
    files' content is returned.
author:
  - webstack.django maintainers (!UNKNOWN)
options:
  app:
    description: Name of the app.
    type: str
    required: true
  slot:
    description: The slot. Not used by O(action=prune).
    type: str
    choices: [blue, green]
  store:
    description: Where the copies are kept.
    type: path
    required: true
  action:
    description: What to do (see the description).
    type: str
    choices: [check, snapshot, restore, prune]
    default: check
  name:
    description: Name of the copy (the slot's signature). Required except for O(action=prune).
    type: str
  description:
    description: The slot description kept beside the copy (used to rebuild a lost state file).
    type: dict
  keep:
    description:
      - With O(action=prune), the copies to keep, as C(<slot>-<name>) strings or slot descriptions (dicts with
        C(slot) and C(signature)).
    type: list
    elements: raw
    default: []
  root:
    description: The file system root the slot's paths are under (tests only).
    type: path
    default: /
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: posix
"""

EXAMPLES = r"""
- name: Keep the files of slot green before nginx switches to it
  webstack.django.slot_files:
    app: shop
    slot: green
    store: /var/lib/webstack/shop/slots
    action: snapshot
    name: "{{ candidate.signature }}"
    description: "{{ candidate }}"

- name: Put back the files of the slot a rollback returns to
  webstack.django.slot_files:
    app: shop
    slot: blue
    store: /var/lib/webstack/shop/slots
    action: restore
    name: "{{ target.signature }}"
"""

RETURN = r"""
digest:
  description: SHA-256 of the slot's files on disk after the action (paths, owners, modes, contents).
  returned: when O(action) is not C(prune)
  type: str
matches:
  description: Whether the files on disk are those kept under O(name) (after a restore, true).
  returned: when O(action) is not C(prune)
  type: bool
kept:
  description: Whether a copy named O(name) is kept.
  returned: when O(action) is not C(prune)
  type: bool
files:
  description: The slot's files (paths only).
  returned: when O(action) is not C(prune)
  type: list
  elements: str
removed:
  description: The copies O(action=prune) removed.
  returned: when O(action=prune)
  type: list
  elements: str
"""

import glob
import hashlib
import io
import json
import os
import re
import tarfile

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.webstack.django.plugins.module_utils import atomic

NAME = re.compile(r"[A-Za-z0-9_.-]{1,128}\Z")


def slot_files(root, app, slot):
    """Absolute paths (under root) of the regular files slot ``slot`` of ``app`` runs with, sorted."""
    patterns = [
        "etc/systemd/system/%s-%s-*" % (app, slot),
        "etc/%s/%s-*" % (app, slot),
        "etc/%s/%s.env" % (app, slot),
    ]
    found = set()
    for pattern in patterns:
        for path in glob.glob(os.path.join(root, pattern)):
            if os.path.isdir(path) and not os.path.islink(path):
                for base, _dirs, names in os.walk(path):
                    found.update(os.path.join(base, n) for n in names)
            elif os.path.isfile(path) and not os.path.islink(path):
                found.add(path)
    return sorted(found)


def digest(root, paths):
    summer = hashlib.sha256()
    for path in paths:
        st = os.lstat(path)
        line = "%s %o %d %d\n" % (os.path.relpath(path, root), st.st_mode & 0o7777, st.st_uid, st.st_gid)
        summer.update(line.encode())
        with open(path, "rb") as handle:
            summer.update(hashlib.sha256(handle.read()).digest())
    return summer.hexdigest()


def kept(store, slot, name):
    base = os.path.join(store, "%s-%s" % (slot, name))
    return base + ".tar", base + ".json"


def read_meta(meta_path):
    try:
        with open(meta_path) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def snapshot(module, root, store, slot, name, paths, description):
    tar_path, meta_path = kept(store, slot, name)
    current = digest(root, paths)
    meta = read_meta(meta_path)
    if meta and meta.get("digest") == current and os.path.exists(tar_path):
        return False
    if module.check_mode:
        return True
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for path in paths:
            archive.add(path, arcname=os.path.relpath(path, root), recursive=False)
    atomic.write_atomic(tar_path, buffer.getvalue(), mode=0o600)
    data = dict(description or {})
    data.update({"digest": current, "files": [os.path.relpath(p, root) for p in paths]})
    atomic.write_atomic(meta_path, json.dumps(data, indent=2, sort_keys=True) + "\n", mode=0o600)
    return True


def restore(module, root, store, slot, name, paths):
    tar_path, meta_path = kept(store, slot, name)
    meta = read_meta(meta_path)
    if meta is None or not os.path.exists(tar_path):
        module.fail_json(msg="No kept copy of the files of slot %s named %s in %s: the slot cannot be restored to "
                             "what it ran" % (slot, name, store))
    if digest(root, paths) == meta.get("digest"):
        return False
    if module.check_mode:
        return True
    for path in paths:
        os.unlink(path)
    with tarfile.open(tar_path) as archive:
        members = archive.getmembers()
        for member in members:
            target = os.path.normpath(os.path.join(root, member.name))
            if not member.isfile() or not target.startswith(os.path.normpath(root).rstrip("/") + "/"):
                module.fail_json(msg="Kept copy %s holds an unexpected entry %s" % (tar_path, member.name))
        for member in members:
            target = os.path.join(root, member.name)
            directory = os.path.dirname(target)
            if not os.path.isdir(directory):
                os.makedirs(directory, 0o755)
            data = archive.extractfile(member).read()
            atomic.write_atomic(target, data, mode=member.mode & 0o7777, uid=member.uid, gid=member.gid)
    return True


def prune(module, store, keep):
    removed = []
    if not os.path.isdir(store):
        return removed
    for path in sorted(glob.glob(os.path.join(store, "*.tar")) + glob.glob(os.path.join(store, "*.json"))):
        base = os.path.basename(path).rsplit(".", 1)[0]
        if base in keep:
            continue
        removed.append(os.path.basename(path))
        if not module.check_mode:
            os.unlink(path)
    return removed


def main():
    module = AnsibleModule(
        argument_spec=dict(
            app=dict(type="str", required=True),
            slot=dict(type="str", choices=["blue", "green"]),
            store=dict(type="path", required=True),
            action=dict(type="str", default="check", choices=["check", "snapshot", "restore", "prune"]),
            name=dict(type="str"),
            description=dict(type="dict"),
            keep=dict(type="list", elements="raw", default=[]),
            root=dict(type="path", default="/"),
        ),
        required_if=[("action", "check", ["slot", "name"]), ("action", "snapshot", ["slot", "name"]),
                     ("action", "restore", ["slot", "name"])],
        supports_check_mode=True,
    )
    p = module.params
    if not re.match(r"[a-z][a-z0-9-]{0,30}\Z", p["app"]):
        module.fail_json(msg="app must match ^[a-z][a-z0-9-]{0,30}$, got %r" % p["app"])
    if p["name"] is not None and not NAME.match(p["name"]):
        module.fail_json(msg="name must be letters, digits, _ . - (1-128), got %r" % p["name"])
    store, root = p["store"], p["root"]
    if not module.check_mode and not os.path.isdir(store):
        os.makedirs(store, 0o700)
        os.chmod(store, 0o700)
    if p["action"] == "prune":
        keep = set()
        for item in p["keep"]:
            if isinstance(item, dict):
                keep.add("%s-%s" % (item.get("slot"), item.get("signature")))
            else:
                keep.add(str(item))
        removed = prune(module, store, keep)
        module.exit_json(changed=bool(removed), removed=removed)
    slot, name = p["slot"], p["name"]
    paths = slot_files(root, p["app"], slot)
    changed = False
    if p["action"] == "snapshot":
        changed = snapshot(module, root, store, slot, name, paths, p["description"])
    elif p["action"] == "restore":
        changed = restore(module, root, store, slot, name, paths)
        paths = slot_files(root, p["app"], slot)
    meta = read_meta(kept(store, slot, name)[1]) or {}
    current = digest(root, paths)
    module.exit_json(changed=changed, digest=current, matches=meta.get("digest") == current, kept=bool(meta),
                     files=[os.path.relpath(x, root) for x in paths])


if __name__ == "__main__":
    main()
