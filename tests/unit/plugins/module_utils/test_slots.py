"""The slot model: reconcile with what nginx routes to, intent, commit, rollback target, recovery."""

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
