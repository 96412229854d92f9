#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright: webstack.django maintainers
# MIT License (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: deploy_state
short_description: Read, reconcile and record the deploy state of a Django app on a host
version_added: 0.1.0
description:
  - The deploy state of one app on one host (a JSON local fact) says which slot is active, which is the previous
    one, a switch about to happen, the maintenance choice and a history. The deploy, rollback, maintenance,
    health and status playbooks read and write it only through this module.
  - Every O(action) first reconciles the state with what nginx routes to (the slot whose sockets the app's
    upstream include names). A switch recorded as pending whose target nginx routes to is completed; one nginx does
    not route to is dropped; nginx routing to the recorded previous slot swaps active and previous.
  - A state file that is empty, torn or not JSON is recovered from its last good copy (C(<path>.bak)), else
    rebuilt from what nginx routes to and the slot descriptions kept in O(store), with a warning.
  - Every write is atomic and durable (temporary file, fsync, rename, fsync of the directory), and the version it
    replaces is kept as the last good copy.
author:
  - webstack.django maintainers (!UNKNOWN)
options:
  path:
    description: The state file.
    type: path
    required: true
  app:
    description: Name of the app.
    type: str
    required: true
  upstream_file:
    description: The app's nginx upstream include (what nginx routes to).
    type: path
    required: true
  runtime_dir:
    description: Directory of the app's sockets (C(/run/<app>)).
    type: path
    required: true
  store:
    description: Directory of the slot descriptions kept with each slot's files (see M(webstack.django.slot_files)).
    type: path
  action:
    description:
      - C(read) returns the reconciled state (and writes it when the reconcile changed it, unless O(write=false)).
      - C(intend) records that nginx is about to switch to O(slot).
      - C(abort) drops that record (the switch was undone).
      - C(commit) records O(slot) as the active slot (the one it replaces becomes the previous one).
      - C(maintenance) records O(maintenance).
    type: str
    choices: [read, intend, abort, commit, maintenance]
    default: read
  write:
    description: With O(action=read), write a reconciled or recovered state back (the read-only playbooks do not).
    type: bool
    default: true
  slot:
    description: The slot description for O(action=intend) and O(action=commit).
    type: dict
  event:
    description: What is happening (C(deploy), C(rollback)), for the history.
    type: str
    default: deploy
  extra:
    description: Keys added to the active slot's description on O(action=commit) (e.g. C(rolled_back_from)).
    type: dict
    default: {}
  maintenance:
    description: The maintenance choice for O(action=maintenance).
    type: bool
  nginx_reload:
    description:
      - When the state records a switch that a killed run left unfinished, check nginx's configuration
        (C(nginx -t)) and reload nginx before reconciling, so that nginx serves what its include file names (a run
        killed between writing the file and the reload leaves them apart). A configuration nginx refuses fails the
        module and changes nothing. Only with O(action=read); not with O(write=false) or in check mode.
    type: bool
    default: true
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reports what it would write; writes nothing.
  diff_mode:
    support: none
  platform:
    platforms: posix
"""

EXAMPLES = r"""
- name: Read the deploy state, reconciled with nginx
  webstack.django.deploy_state:
    path: /etc/ansible/facts.d/webstack_shop.fact
    app: shop
    upstream_file: /etc/nginx/webstack/shop.upstream.conf
    runtime_dir: /run/shop
    store: /var/lib/webstack/shop/slots
  register: state

- name: Record the switch about to happen
  webstack.django.deploy_state:
    path: /etc/ansible/facts.d/webstack_shop.fact
    app: shop
    upstream_file: /etc/nginx/webstack/shop.upstream.conf
    runtime_dir: /run/shop
    action: intend
    slot: "{{ candidate }}"
"""

RETURN = r"""
state:
  description: The state after the action (C(active), C(previous), C(pending), C(maintenance), C(history)).
  returned: always
  type: dict
routed_slot:
  description: The slot nginx routes to (C(blue), C(green)), or an empty string when it routes to none.
  returned: always
  type: str
messages:
  description: What the reconcile or the recovery did (also shown as warnings).
  returned: always
  type: list
  elements: str
"""

import glob
import json
import os
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.webstack.django.plugins.module_utils import atomic, slots


def now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def descriptions(store):
    """The newest recorded description of each slot in the store: {slot: description}."""
    found = {}
    if not store or not os.path.isdir(store):
        return found
    for slot in slots.SLOTS:
        paths = sorted(glob.glob(os.path.join(store, slot + "-*.json")), key=os.path.getmtime, reverse=True)
        for path in paths:
            try:
                with open(path) as handle:
                    found[slot] = json.load(handle)
                break
            except (OSError, ValueError):
                continue
    return found


def parse(text):
    """(state, error) of the state file's text: an empty state when there is no file, None and the error when the
    text is not a usable state."""
    if text is None:
        return slots.empty_state(), None
    try:
        return slots.loads(text), None
    except slots.StateError as exc:
        return None, exc


def save(module, path, state, last_good):
    """Write the state; ``last_good`` (the file's text when it was a usable state) becomes the backup."""
    if module.check_mode:
        return
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    if last_good:
        atomic.write_atomic(path + ".bak", last_good, mode=0o644)
    atomic.write_atomic(path, slots.dumps(state), mode=0o644)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            app=dict(type="str", required=True),
            upstream_file=dict(type="path", required=True),
            runtime_dir=dict(type="path", required=True),
            store=dict(type="path"),
            action=dict(type="str", default="read", choices=["read", "intend", "abort", "commit", "maintenance"]),
            write=dict(type="bool", default=True),
            slot=dict(type="dict"),
            event=dict(type="str", default="deploy"),
            extra=dict(type="dict", default={}),
            maintenance=dict(type="bool"),
            nginx_reload=dict(type="bool", default=True),
        ),
        required_if=[("action", "intend", ["slot"]), ("action", "commit", ["slot"]),
                     ("action", "maintenance", ["maintenance"])],
        supports_check_mode=True,
    )
    p = module.params
    messages = []
    on_disk = atomic.read_text(p["path"])
    state, broken = parse(on_disk)
    backup = atomic.read_text(p["path"] + ".bak") if broken else None
    # An unusable file's last good copy tells whether a switch was left unfinished.
    pending = (state if state is not None else (parse(backup)[0] or {})).get("pending")
    reading = p["action"] == "read"
    reloaded = False
    if pending and reading and p["write"] and p["nginx_reload"] and not module.check_mode:
        # A killed run may have written nginx's include and never reloaded: make nginx serve what the file says.
        rc, out, err = module.run_command(["nginx", "-t"])
        if rc != 0:
            module.fail_json(msg="A run was killed in the middle of a switch, and nginx refuses its configuration "
                                 "now; nothing was changed. nginx -t: %s" % (err or out).strip())
        rc, out, err = module.run_command(["systemctl", "reload", "nginx"])
        if rc != 0:
            module.fail_json(msg="systemctl reload nginx failed: %s" % (err or out).strip())
        reloaded = True
        messages.append("nginx reloaded: a run was killed in the middle of a switch")
    elif pending and reading:
        messages.append("a switch was left unfinished by a killed run; nginx may not have loaded the include file "
                        "this reads yet (the next deploy or rollback reloads it)")
    routed = slots.routed_slot(atomic.read_text(p["upstream_file"]), p["runtime_dir"])
    if broken:
        state, how = slots.recover(backup, routed, descriptions(p["store"]))
        messages.append("%s: %s; %s" % (p["path"], broken, how))
    state["app"] = p["app"]
    at = now()
    reconciled, notes = slots.reconcile(state, routed, at)
    messages.extend(notes)
    changed = bool(broken) or reloaded or reconciled != state
    state = reconciled

    action = p["action"]
    if action == "intend":
        state = slots.intend(state, p["slot"], p["event"], at)
        changed = True
    elif action == "abort":
        changed = changed or "pending" in state
        state = slots.abort(state)
    elif action == "commit":
        state, committed = slots.commit(state, p["slot"], p["event"], at, p["extra"])
        changed = changed or committed
    elif action == "maintenance":
        if bool(state.get("maintenance", False)) != p["maintenance"]:
            state["maintenance"] = p["maintenance"]
            changed = True

    wrote = changed and (action != "read" or p["write"])
    if wrote:
        save(module, p["path"], state, None if broken else on_disk)
    for message in messages:
        module.warn(message)
    module.exit_json(changed=wrote, state=state, routed_slot=routed or "", messages=messages)


if __name__ == "__main__":
    main()
