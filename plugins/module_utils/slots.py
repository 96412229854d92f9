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

The names of a slot's processes (units, sockets, loopback ports of every app server role) and the slot
description a deploy builds (:func:`describe_slot`, with its :func:`slot_signature`) are here too.

Pure functions only (no I/O): the modules ``deploy_state`` and ``slot_files`` do the reading and writing.
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import json
import re
from collections.abc import Mapping, Sequence, Set

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


# --- The processes of a slot and its description ----------------------------------------------------------------

# The app server roles each server kind (webstack_deploy_server) runs, the one serving HTTP first
# (roles/_deploy/vars/main.yml: __deploy_server_roles).
SERVER_ROLES = {
    "gunicorn": ("gunicorn",),
    "uvicorn": ("uvicorn",),
    "daphne": ("daphne",),
    "hybrid": ("gunicorn", "daphne"),
}
# What /health/ reports for each gunicorn worker class (__deploy_gunicorn_kinds, the gunicorn role's __gunicorn_kinds).
GUNICORN_KINDS = {
    "sync": "gunicorn-sync",
    "gthread": "gunicorn-gthread",
    "uvicorn_worker.UvicornWorker": "gunicorn-uvicorn",
    "asgi": "gunicorn-asgi",
}
# Server kinds that serve WebSockets themselves (__deploy_websocket_kinds).
WEBSOCKET_KINDS = ("gunicorn-uvicorn", "gunicorn-asgi", "uvicorn", "daphne")
# webstack_django_listen: sockets in the runtime directory, or TCP on 127.0.0.1.
LISTEN_MODES = ("unix", "loopback")
DEFAULT_LOOPBACK_PORT = 8000
DEFAULT_DAPHNE_INSTANCES = 2
# Loopback ports: the blue slot's from webstack_django_loopback_port, any other slot's 100 above; gunicorn +0,
# uvicorn +1, daphne instance N +10+N (the app server roles' vars).
GREEN_PORT_OFFSET = 100
ROLE_PORT_OFFSETS = {"gunicorn": 0, "uvicorn": 1, "daphne": 10}


def runtime_dir(app):
    """The directory of the app's sockets (__deploy_runtime_dir, __appserver_runtime_dir)."""
    return "/run/%s" % app


def unit_prefix(app, slot):
    """``<app>-<slot>``: how every unit (and server configuration file) of a slot begins."""
    return "%s-%s" % (app, slot)


def port_base(loopback_port, slot):
    """The first loopback port of ``slot`` (blue: ``loopback_port``; green: 100 above)."""
    return int(loopback_port) + (0 if slot == "blue" else GREEN_PORT_OFFSET)


def daphne_unit_template(app, slot):
    """The daphne template unit of a slot (its instances are ``<app>-<slot>-daphne@<name>.service``)."""
    return "%s-daphne@.service" % unit_prefix(app, slot)


def server_roles(server):
    """The app server roles of server kind ``server`` (HTTP first); ValueError for an unknown one."""
    try:
        return SERVER_ROLES[server]
    except (KeyError, TypeError):
        raise ValueError("unknown server %r (one of %s)" % (server, ", ".join(SERVER_ROLES))) from None


def role_processes(app, slot, role, daphne_instances=DEFAULT_DAPHNE_INSTANCES, listen="unix",
                   loopback_port=DEFAULT_LOOPBACK_PORT, run_dir=None):
    """The processes the app server role ``role`` runs for ``slot``, as the role names them.

    A list of dicts: ``unit`` (systemd unit), ``socket`` (its path, '' on loopback), ``port`` (None on unix) and
    ``backend`` (the address nginx proxies to: ``unix:<socket>`` or ``127.0.0.1:<port>``). gunicorn and uvicorn
    run one process; daphne runs ``daphne_instances`` instances of its template unit, named 1..N on sockets and
    by their port on loopback.
    """
    if listen not in LISTEN_MODES:
        raise ValueError("unknown listen mode %r (one of %s)" % (listen, ", ".join(LISTEN_MODES)))
    if role not in ROLE_PORT_OFFSETS:
        raise ValueError("unknown app server role %r (one of %s)" % (role, ", ".join(ROLE_PORT_OFFSETS)))
    prefix = unit_prefix(app, slot)
    sockets = "%s/%s" % (run_dir or runtime_dir(app), slot)
    port = port_base(loopback_port, slot) + ROLE_PORT_OFFSETS[role] if listen == "loopback" else None
    if role != "daphne":
        socket = "%s-%s.sock" % (sockets, role) if listen == "unix" else ""
        return [_process("%s-%s.service" % (prefix, role), socket, port)]
    processes = []
    for number in range(1, int(daphne_instances) + 1):
        if listen == "unix":
            processes.append(_process("%s-daphne@%d.service" % (prefix, number),
                                      "%s-daphne-%d.sock" % (sockets, number), None))
        else:
            processes.append(_process("%s-daphne@%d.service" % (prefix, port + number), "", port + number))
    return processes


def _process(unit, socket, port):
    backend = "unix:%s" % socket if socket else "127.0.0.1:%d" % port
    return {"unit": unit, "socket": socket, "port": port, "backend": backend}


def role_units(app, slot, role, **kwargs):
    """The units of ``role`` in ``slot`` (keyword arguments as :func:`role_processes`)."""
    return [process["unit"] for process in role_processes(app, slot, role, **kwargs)]


def role_backends(app, slot, role, **kwargs):
    """The addresses nginx proxies to for ``role`` in ``slot`` (keyword arguments as :func:`role_processes`)."""
    return [process["backend"] for process in role_processes(app, slot, role, **kwargs)]


def http_kind(server, worker_class="sync"):
    """The server kind the HTTP side of ``server`` reports: the gunicorn worker class's, or ``server``."""
    roles = server_roles(server)
    if roles[0] != "gunicorn":
        return server
    try:
        return GUNICORN_KINDS[worker_class]
    except (KeyError, TypeError):
        raise ValueError("unknown gunicorn worker class %r (one of %s)"
                         % (worker_class, ", ".join(GUNICORN_KINDS))) from None


def server_kinds(server, worker_class="sync"):
    """The server kinds a slot running ``server`` is made of (hybrid: the HTTP one, then daphne)."""
    return [http_kind(server, worker_class)] + list(server_roles(server)[1:])


def slot_websocket_paths(server, websocket_paths):
    """The paths a slot's WebSocket servers take: ``websocket_paths`` when ``server`` is hybrid, else []."""
    if len(server_roles(server)) < 2:
        return []
    return [] if websocket_paths is None else websocket_paths


def _ignore_case(name):
    # Jinja's sort filter (case_sensitive=false): strings compare lowercased, in a stable sort.
    return name.lower() if isinstance(name, str) else name


def signature_document(server, release, environment="", collection="", websocket_paths=None, options=None):
    """What a slot's signature covers, in the order the signature serialises it.

    The server kind, the release, the digest of the slot's environment file, the collection's digest, the
    WebSocket paths (hybrid only) and the options that shape the slot's units (``{name: value}``, sorted by name
    as Jinja's ``sort`` does).
    """
    options = options or {}
    return {
        "server": server,
        "release": release,
        "environment": environment,
        "collection": collection,
        "paths": slot_websocket_paths(server, websocket_paths),
        "options": {name: options[name] for name in sorted(options, key=_ignore_case)},
    }


def _json_default(value):
    # What ansible-core's to_json (its "tagless" JSON profile) does with the values stdlib json refuses.
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (Set, Sequence)) and not isinstance(value, (str, bytes)):
        return list(value)
    raise TypeError("Object of type %r is not JSON serializable" % type(value).__name__)


def signature_json(document):
    """``document`` as Jinja's ``to_json`` writes it: json.dumps defaults (', ' and ': ', ASCII, keys in order)."""
    return json.dumps(document, default=_json_default)


def slot_signature(document):
    """The signature of a slot: the first 16 hex digits of the SHA-256 of :func:`signature_json`."""
    return hashlib.sha256(signature_json(document).encode("utf-8")).hexdigest()[:16]


def describe_slot(app, slot, server, release, release_dir, media_root="", worker_class="sync",
                  daphne_instances=DEFAULT_DAPHNE_INSTANCES, websocket_paths=None, environment="", collection="",
                  options=None, run_dir=None):
    """The description of ``slot`` running ``server`` with a release: what a deploy records in the state.

    Keys: slot, release, release_dir, static_root, media_root, server, kind (the HTTP side's), kinds, units,
    backends (HTTP), websocket_backends and websocket_paths (hybrid only), signature (:func:`slot_signature` of
    :func:`signature_document`). The slot listens on sockets in ``run_dir`` (default ``/run/<app>``): the
    playbooks do not deploy slots on loopback ports.
    """
    roles = server_roles(server)

    def processes(role):
        return role_processes(app, slot, role, daphne_instances=daphne_instances, run_dir=run_dir)

    http = processes(roles[0])
    websocket = [process for role in roles[1:] for process in processes(role)]
    signature = slot_signature(signature_document(server, release, environment, collection, websocket_paths, options))
    return {
        "slot": slot,
        "release": release,
        "release_dir": release_dir,
        "static_root": "%s/staticfiles" % (release_dir,),
        "media_root": media_root,
        "server": server,
        "kind": http_kind(server, worker_class),
        "kinds": server_kinds(server, worker_class),
        "units": [process["unit"] for process in http + websocket],
        "backends": [process["backend"] for process in http],
        "websocket_backends": [process["backend"] for process in websocket],
        "websocket_paths": slot_websocket_paths(server, websocket_paths),
        "signature": signature,
    }
