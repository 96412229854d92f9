# -*- coding: utf-8 -*-

# Copyright: webstack.django maintainers
# MIT License (see LICENSE)

"""The slot model of webstack.django: the deploy state of one app on one host and its transitions.

The state is a dict::

    {"app": "shop",
     "active":   {slot description} or {},
     "previous": {slot description} or {},
     "pending":  {"to": {slot description}, "from": {slot description} or {}, "action": "deploy", "at": "..."},
     "maintenance": bool,
     "history":  [{"at", "action", "slot", "release", "kind", "server"}, ...]}   (newest first, 20 at most)

A slot description names the slot (``blue`` or ``green``), its release, server kind, units, sockets and
signature. ``pending`` is the intent recorded before nginx switches: a run killed between the switch and the
state write leaves it, and :func:`reconcile` completes (or drops) it from what nginx routes to.

Pure functions only (no I/O): the modules ``deploy_state`` and ``slot_files`` do the reading and writing.
"""

from __future__ import annotations

import copy
import json
import re

SLOTS = ("blue", "green")
HISTORY_LENGTH = 20


class StateError(ValueError):
    """A state file that cannot be used as it is."""


def empty_state(app=""):
    return {"app": app, "active": {}, "previous": {}, "history": []}


def other_slot(slot):
    """The slot a deploy builds when ``slot`` is active (blue when nothing is)."""
    if slot not in SLOTS:
        return "blue"
    return "green" if slot == "blue" else "blue"


def loads(text):
    """Parse a state file's text; raise StateError when it is not a usable state."""
    if not text or not text.strip():
        raise StateError("the state file is empty")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise StateError("the state file is not JSON (%s)" % exc) from None
    if not isinstance(data, dict):
        raise StateError("the state file does not hold an object")
    for key in ("active", "previous"):
        value = data.get(key, {})
        if not isinstance(value, dict):
            raise StateError("the state's %r is not an object" % key)
        if value and value.get("slot") not in SLOTS:
            raise StateError("the state's %r names no slot" % key)
    if not isinstance(data.get("history", []), list):
        raise StateError("the state's history is not a list")
    pending = data.get("pending")
    if pending is not None and not (isinstance(pending, dict) and isinstance(pending.get("to"), dict)):
        raise StateError("the state's pending switch is malformed")
    state = empty_state(data.get("app", ""))
    state.update(data)
    return state


def dumps(state):
    return json.dumps(state, indent=4, sort_keys=True) + "\n"


_UPSTREAM_SERVER = re.compile(r"^\s*server\s+unix:(\S+?)[\s;]", re.M)


def routed_slot(upstream_text, runtime_dir):
    """The slot nginx routes to, read from the app's upstream include file.

    Sockets are named ``<runtime_dir>/<slot>-<server>[-<n>].sock``. Returns ``None`` when the file names no
    socket of a slot, or sockets of both (that file was not written by this collection).
    """
    if not upstream_text:
        return None
    prefix = runtime_dir.rstrip("/") + "/"
    found = set()
    for path in _UPSTREAM_SERVER.findall(upstream_text):
        if not path.startswith(prefix):
            continue
        name = path[len(prefix):]
        for slot in SLOTS:
            if name.startswith(slot + "-"):
                found.add(slot)
    if len(found) != 1:
        return None
    return found.pop()


def _entry(action, slot, at):
    return {"at": at, "action": action, "slot": slot.get("slot", ""), "release": slot.get("release", ""),
            "kind": slot.get("kind", ""), "server": slot.get("server", "")}


def reconcile(state, routed, at):
    """Make the state agree with what nginx routes to. Returns (new state, list of messages).

    - a pending switch whose target nginx routes to is completed (the run was killed after the switch);
    - a pending switch that nginx does not route to is dropped (killed before the switch, or switched back);
    - nginx routing to the recorded previous slot swaps active and previous;
    - anything else is left as it is, with a message.
    """
    new = copy.deepcopy(state)
    notes = []
    pending = new.pop("pending", None)
    active = new.get("active") or {}
    if routed is None:
        if pending:
            new["pending"] = pending
        if active:
            notes.append("nginx routes to no slot of this app that the state knows; the state is kept as it is")
        return new, notes
    if pending:
        target = pending.get("to") or {}
        if target.get("slot") == routed and active.get("slot") != routed:
            new["previous"] = pending.get("from") or active
            new["active"] = dict(target, since=at)
            new["history"] = ([_entry(pending.get("action", "deploy") + " (completed by reconcile)", target, at)]
                              + list(new.get("history", [])))[:HISTORY_LENGTH]
            notes.append("a %s to slot %s (release %s) was interrupted after nginx switched: recorded as active"
                         % (pending.get("action", "switch"), routed, target.get("release", "?")))
            return new, notes
        if target.get("slot") == routed and active.get("slot") == routed:
            # The same slot before and after (an in-place run): nothing to complete.
            notes.append("dropped an unfinished %s record (nginx kept slot %s)" % (pending.get("action", "switch"), routed))
            return new, notes
        notes.append("dropped an unfinished %s to slot %s: nginx still routes to slot %s"
                     % (pending.get("action", "switch"), target.get("slot", "?"), routed))
    if active and active.get("slot") != routed:
        previous = new.get("previous") or {}
        if previous.get("slot") == routed:
            new["active"], new["previous"] = dict(previous, since=at), active
            new["history"] = ([_entry("reconcile", previous, at)] + list(new.get("history", [])))[:HISTORY_LENGTH]
            notes.append("nginx routes to slot %s (release %s), recorded as previous: recorded as active again"
                         % (routed, previous.get("release", "?")))
        else:
            notes.append("nginx routes to slot %s, which the state does not describe; the state is kept" % routed)
    return new, notes


def intend(state, to, action, at):
    """Record the switch about to happen (before nginx changes)."""
    new = copy.deepcopy(state)
    new["pending"] = {"to": copy.deepcopy(to), "from": copy.deepcopy(new.get("active") or {}),
                      "action": action, "at": at}
    return new


def abort(state):
    """Drop the recorded intent (the switch was undone)."""
    new = copy.deepcopy(state)
    new.pop("pending", None)
    return new


def commit(state, now_active, action, at, extra=None):
    """Record ``now_active`` as the active slot; the slot it replaces becomes the previous one.

    Returns (new state, changed). A commit of the slot and signature already active changes nothing (but drops
    a pending record).
    """
    new = copy.deepcopy(state)
    pending = new.pop("pending", None)
    old = new.get("active") or {}
    target = {k: v for k, v in now_active.items() if k not in ("since", "rolled_back_from")}
    target.update(extra or {})
    if old.get("slot") == target.get("slot") and old.get("signature") == target.get("signature") \
            and all(old.get(k) == v for k, v in (extra or {}).items()):
        return new, pending is not None
    switched = old.get("slot") != target.get("slot")
    target["since"] = at
    new["active"] = target
    if switched:
        new["previous"] = old
    new["history"] = ([_entry(action, target, at)] + list(new.get("history", [])))[:HISTORY_LENGTH]
    return new, True


def rollback_target(state, release=""):
    """Where a rollback goes. Returns (target slot description or {}, message).

    An empty target with an empty message means there is nothing to do (already rolled back, or the named
    release is the active one); an empty target with a message is a refusal.
    """
    active = state.get("active") or {}
    previous = state.get("previous") or {}
    if not active:
        return {}, "no deploy state here: nothing to roll back to"
    if release:
        if release == active.get("release"):
            return {}, ""
        if release == previous.get("release"):
            return previous, ""
        return {}, "release %s is held by no slot (the slots run %s and %s)" % (
            release, active.get("release"), previous.get("release", "nothing"))
    if "rolled_back_from" in active:
        return {}, ""
    if not previous:
        return {}, "no previous slot: nothing to roll back to"
    return previous, ""


def recover(backup_text, routed, described):
    """A state rebuilt when the state file is unusable.

    ``backup_text`` is the last good copy (may be None); ``described`` maps a slot name to the description
    recorded with its files (may be empty). Returns (state, message).
    """
    if backup_text:
        try:
            return loads(backup_text), "recovered from the last good copy of the state"
        except StateError:
            pass
    state = empty_state()
    if routed and routed in described:
        state["active"] = described[routed]
        other = other_slot(routed)
        if other in described:
            state["previous"] = described[other]
        return state, "rebuilt from what nginx routes to (slot %s) and the slots' recorded descriptions" % routed
    return state, "no usable state, backup or slot description: starting from an empty state"
