"""The slot model: reconcile with what nginx routes to, intent, commit, rollback target, recovery; the names of a
slot's processes, slot descriptions and signatures."""

import datetime
import hashlib
import json

import pytest

from ansible_collections.webstack.django.plugins.module_utils import slots

BLUE_R1 = {"slot": "blue", "release": "r1", "kind": "gunicorn-sync", "server": "gunicorn", "signature": "s1"}
GREEN_R2 = {"slot": "green", "release": "r2", "kind": "uvicorn", "server": "uvicorn", "signature": "s2"}
BLUE_R3 = {"slot": "blue", "release": "r3", "kind": "gunicorn-sync", "server": "gunicorn", "signature": "s3"}


def deployed(*descriptions):
    state = slots.empty_state("demo")
    for i, desc in enumerate(descriptions):
        state, changed = slots.commit(state, desc, "deploy", "t%d" % i)
        assert changed
    return state


def upstream(*sockets):
    return "upstream demo_http {\n%s}\n" % "".join("    server unix:%s max_fails=0;\n" % s for s in sockets)


@pytest.mark.parametrize("text, routed", [
    (upstream("/run/demo/blue-gunicorn.sock"), "blue"),
    (upstream("/run/demo/green-daphne-1.sock", "/run/demo/green-daphne-2.sock"), "green"),
    (upstream("/run/demo/blue-gunicorn.sock", "/run/demo/green-gunicorn.sock"), None),
    (upstream("/run/other/blue-gunicorn.sock"), None),
    ("", None),
    (None, None),
])
def test_routed_slot_reads_the_sockets_of_one_slot(text, routed):
    assert slots.routed_slot(text, "/run/demo") == routed


def test_commit_makes_the_replaced_slot_previous_and_keeps_history():
    state = deployed(BLUE_R1, GREEN_R2)
    assert state["active"]["release"] == "r2" and state["previous"]["release"] == "r1"
    assert [h["release"] for h in state["history"]] == ["r2", "r1"]
    again, changed = slots.commit(state, GREEN_R2, "deploy", "t9")
    assert not changed and again == state


def test_commit_in_the_same_slot_keeps_the_previous_one():
    state = deployed(BLUE_R1, GREEN_R2)
    state, changed = slots.commit(state, dict(GREEN_R2, signature="s2b"), "deploy", "t3")
    assert changed and state["previous"]["release"] == "r1" and state["active"]["signature"] == "s2b"


def test_history_is_bounded():
    state = slots.empty_state("demo")
    for i in range(30):
        state = slots.commit(state, dict(BLUE_R1 if i % 2 else GREEN_R2, signature=str(i)), "deploy", str(i))[0]
    assert len(state["history"]) == slots.HISTORY_LENGTH


def test_a_switch_killed_after_nginx_changed_is_completed():
    state = slots.intend(deployed(BLUE_R1), GREEN_R2, "deploy", "t1")
    new, notes = slots.reconcile(state, "green", "t2")
    assert new["active"]["release"] == "r2" and new["previous"]["release"] == "r1"
    assert "pending" not in new and notes


def test_a_switch_killed_before_nginx_changed_is_dropped():
    state = slots.intend(deployed(BLUE_R1), GREEN_R2, "deploy", "t1")
    new, notes = slots.reconcile(state, "blue", "t2")
    assert new["active"]["release"] == "r1" and "pending" not in new and notes


def test_nginx_on_the_previous_slot_swaps_active_and_previous():
    state = deployed(BLUE_R1, GREEN_R2)
    new, notes = slots.reconcile(state, "blue", "t3")
    assert new["active"]["release"] == "r1" and new["previous"]["release"] == "r2" and notes


def test_a_consistent_state_is_left_alone():
    state = deployed(BLUE_R1, GREEN_R2)
    assert slots.reconcile(state, "green", "t3") == (state, [])


def test_an_unknown_route_keeps_the_state():
    state = deployed(BLUE_R1)
    new, notes = slots.reconcile(state, None, "t3")
    assert new == state and notes


def test_abort_drops_the_intent():
    state = deployed(BLUE_R1)
    assert slots.abort(slots.intend(state, GREEN_R2, "deploy", "t")) == state


@pytest.mark.parametrize("release, expected, refused", [
    ("", "r1", False),
    ("r1", "r1", False),
    ("r2", None, False),
    ("r9", None, True),
])
def test_rollback_target(release, expected, refused):
    target, message = slots.rollback_target(deployed(BLUE_R1, GREEN_R2), release)
    assert target.get("release") == expected
    assert bool(message) == refused


def test_rollback_after_a_rollback_has_nothing_to_do():
    state = deployed(BLUE_R1, GREEN_R2)
    state = slots.commit(state, BLUE_R1, "rollback", "t3", {"rolled_back_from": "r2"})[0]
    assert slots.rollback_target(state) == ({}, "")
    assert slots.rollback_target(state, "r2")[0]["release"] == "r2"


def test_rollback_without_previous_is_refused():
    assert slots.rollback_target(deployed(BLUE_R1))[1]
    assert slots.rollback_target(slots.empty_state())[1]


@pytest.mark.parametrize("text", ["", "   ", "{", "[]", '{"active": []}', '{"active": {"slot": "red"}}',
                                  '{"pending": {"to": 1}}', '{"history": {}}'])
def test_unusable_state_text_is_refused(text):
    with pytest.raises(slots.StateError):
        slots.loads(text)


def test_recover_prefers_the_backup_then_nginx_and_descriptions():
    good = slots.dumps(deployed(BLUE_R1, GREEN_R2))
    state, how = slots.recover(good, "green", {})
    assert state["active"]["release"] == "r2" and "last good copy" in how
    state, how = slots.recover('{"torn', "blue", {"blue": BLUE_R3, "green": GREEN_R2})
    assert state["active"]["release"] == "r3" and state["previous"]["release"] == "r2" and "nginx" in how
    state, how = slots.recover(None, None, {})
    assert state["active"] == {} and "empty" in how


def test_other_slot():
    assert [slots.other_slot(s) for s in ("blue", "green", "", None)] == ["green", "blue", "blue", "blue"]


def test_dumps_round_trips():
    state = deployed(BLUE_R1, GREEN_R2)
    assert slots.loads(slots.dumps(state)) == json.loads(json.dumps(state))


# --- Naming of a slot's processes, slot descriptions, signatures ------------------------------------------------

@pytest.mark.parametrize("role, slot, listen, expected", [
    ("gunicorn", "blue", "unix", [("shop-blue-gunicorn.service", "unix:/run/shop/blue-gunicorn.sock")]),
    ("gunicorn", "green", "loopback", [("shop-green-gunicorn.service", "127.0.0.1:8100")]),
    ("uvicorn", "blue", "unix", [("shop-blue-uvicorn.service", "unix:/run/shop/blue-uvicorn.sock")]),
    ("uvicorn", "blue", "loopback", [("shop-blue-uvicorn.service", "127.0.0.1:8001")]),
    ("uvicorn", "green", "loopback", [("shop-green-uvicorn.service", "127.0.0.1:8101")]),
    ("daphne", "green", "unix", [("shop-green-daphne@1.service", "unix:/run/shop/green-daphne-1.sock"),
                                 ("shop-green-daphne@2.service", "unix:/run/shop/green-daphne-2.sock"),
                                 ("shop-green-daphne@3.service", "unix:/run/shop/green-daphne-3.sock")]),
    ("daphne", "blue", "loopback", [("shop-blue-daphne@8011.service", "127.0.0.1:8011"),
                                    ("shop-blue-daphne@8012.service", "127.0.0.1:8012"),
                                    ("shop-blue-daphne@8013.service", "127.0.0.1:8013")]),
    ("daphne", "green", "loopback", [("shop-green-daphne@8111.service", "127.0.0.1:8111"),
                                     ("shop-green-daphne@8112.service", "127.0.0.1:8112"),
                                     ("shop-green-daphne@8113.service", "127.0.0.1:8113")]),
])
def test_role_processes_are_named_as_the_server_roles_name_them(role, slot, listen, expected):
    processes = slots.role_processes("shop", slot, role, daphne_instances=3, listen=listen)
    assert [(p["unit"], p["backend"]) for p in processes] == expected
    assert slots.role_units("shop", slot, role, daphne_instances=3, listen=listen) == [u for u, _b in expected]
    assert slots.role_backends("shop", slot, role, daphne_instances=3, listen=listen) == [b for _u, b in expected]
    for process in processes:
        if listen == "unix":
            assert process["port"] is None and process["backend"] == "unix:" + process["socket"]
        else:
            assert process["socket"] == "" and process["backend"] == "127.0.0.1:%d" % process["port"]


def test_loopback_ports_start_at_the_given_port_and_runtime_dir_can_move():
    assert slots.port_base(9000, "blue") == 9000 and slots.port_base("9000", "green") == 9100
    assert slots.role_backends("shop", "blue", "gunicorn", listen="loopback", loopback_port=9000) == ["127.0.0.1:9000"]
    assert slots.role_backends("shop", "blue", "uvicorn", run_dir="/srv/run") == ["unix:/srv/run/blue-uvicorn.sock"]
    assert slots.runtime_dir("shop") == "/run/shop" and slots.unit_prefix("shop", "blue") == "shop-blue"
    assert slots.daphne_unit_template("shop", "green") == "shop-green-daphne@.service"


@pytest.mark.parametrize("call", [
    lambda: slots.role_processes("shop", "blue", "waitress"),
    lambda: slots.role_processes("shop", "blue", "gunicorn", listen="tcp"),
    lambda: slots.server_roles("waitress"),
    lambda: slots.http_kind("gunicorn", "gevent"),
    lambda: slots.describe_slot("shop", "blue", "waitress", "r1", "/srv/shop/releases/r1"),
])
def test_unknown_roles_servers_listen_modes_and_worker_classes_are_refused(call):
    with pytest.raises(ValueError):
        call()


@pytest.mark.parametrize("server, worker_class, kinds", [
    ("gunicorn", "sync", ["gunicorn-sync"]),
    ("gunicorn", "uvicorn_worker.UvicornWorker", ["gunicorn-uvicorn"]),
    ("hybrid", "gthread", ["gunicorn-gthread", "daphne"]),
    ("uvicorn", "not looked at", ["uvicorn"]),
    ("daphne", "sync", ["daphne"]),
])
def test_server_kinds(server, worker_class, kinds):
    assert slots.server_kinds(server, worker_class) == kinds
    assert slots.http_kind(server, worker_class) == kinds[0]


def test_describe_a_hybrid_slot():
    desc = slots.describe_slot("shop", "green", "hybrid", "r2", "/srv/shop/releases/r2", media_root="/srv/shop/media",
                               worker_class="asgi", daphne_instances=2, websocket_paths=["/ws/", "/chat/"])
    signature = desc.pop("signature")
    assert desc == {
        "slot": "green", "release": "r2", "release_dir": "/srv/shop/releases/r2",
        "static_root": "/srv/shop/releases/r2/staticfiles", "media_root": "/srv/shop/media",
        "server": "hybrid", "kind": "gunicorn-asgi", "kinds": ["gunicorn-asgi", "daphne"],
        "units": ["shop-green-gunicorn.service", "shop-green-daphne@1.service", "shop-green-daphne@2.service"],
        "backends": ["unix:/run/shop/green-gunicorn.sock"],
        "websocket_backends": ["unix:/run/shop/green-daphne-1.sock", "unix:/run/shop/green-daphne-2.sock"],
        "websocket_paths": ["/ws/", "/chat/"]}
    assert len(signature) == 16 and int(signature, 16) >= 0


@pytest.mark.parametrize("server, units, backends", [
    ("gunicorn", ["shop-blue-gunicorn.service"], ["unix:/run/shop/blue-gunicorn.sock"]),
    ("uvicorn", ["shop-blue-uvicorn.service"], ["unix:/run/shop/blue-uvicorn.sock"]),
    ("daphne", ["shop-blue-daphne@1.service"], ["unix:/run/shop/blue-daphne-1.sock"]),
])
def test_describe_a_single_server_slot_has_no_websocket_side(server, units, backends):
    desc = slots.describe_slot("shop", "blue", server, "r1", "/srv/shop/releases/r1", daphne_instances=1,
                               websocket_paths=["/ws/"])
    assert (desc["units"], desc["backends"]) == (units, backends)
    assert desc["websocket_backends"] == [] and desc["websocket_paths"] == []


def test_signature_document_order_and_text():
    doc = slots.signature_document("hybrid", "r1", "e" * 4, "c" * 4, ["/ws/"],
                                   {"webstack_gunicorn_b": 1, "webstack_gunicorn_A": "\u00e9", "webstack_daphne_c": None})
    assert list(doc) == ["server", "release", "environment", "collection", "paths", "options"]
    # Sorted as Jinja's sort filter does (ignoring case), written as to_json does (ASCII, ", " and ": ").
    assert slots.signature_json(doc) == (
        '{"server": "hybrid", "release": "r1", "environment": "eeee", "collection": "cccc", "paths": ["/ws/"], '
        '"options": {"webstack_daphne_c": null, "webstack_gunicorn_A": "\\u00e9", "webstack_gunicorn_b": 1}}')
    assert slots.slot_signature(doc) == hashlib.sha256(slots.signature_json(doc).encode()).hexdigest()[:16]
    assert slots.signature_document("gunicorn", "r1", websocket_paths=["/ws/"])["paths"] == []


def test_signature_changes_with_everything_it_covers():
    base = dict(server="hybrid", release="r1", environment="e", collection="c", websocket_paths=["/ws/"],
                options={"webstack_gunicorn_workers": 2})
    signature = slots.slot_signature(slots.signature_document(**base))
    for key, value in [("server", "gunicorn"), ("release", "r2"), ("environment", "f"), ("collection", "d"),
                       ("websocket_paths", ["/chat/"]), ("options", {"webstack_gunicorn_workers": 3})]:
        assert slots.slot_signature(slots.signature_document(**dict(base, **{key: value}))) != signature, key


def test_signature_json_writes_what_to_json_writes_for_dates_sets_and_tuples():
    doc = {"d": datetime.date(2024, 1, 2), "t": datetime.datetime(2024, 1, 2, 3, 4, 5), "s": {1}, "u": (1, 2),
           "n": {1: "x", None: "y", 2.5: "z"}}
    assert slots.signature_json(doc) == ('{"d": "2024-01-02", "t": "2024-01-02T03:04:05", "s": [1], "u": [1, 2], '
                                         '"n": {"1": "x", "null": "y", "2.5": "z"}}')
    with pytest.raises(TypeError):
        slots.signature_json({"b": b"bytes"})
