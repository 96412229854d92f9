"""The slot_description filter (plugins/filter/slot_description.py) describes a slot as slot_facts.yml did in Jinja.

Slot descriptions, and above all their signatures, are recorded in every host's deploy state: a deploy compares the
active slot's recorded signature with its own to choose between the in-place path and the idle slot. The filter
must give what the Jinja task gave, so LEGACY_SLOT_FACTS below is that task verbatim (roles/_deploy/tasks/
slot_facts.yml before the filter): each case renders it and today's slot_facts.yml with ansible-core's Templar
(the role's defaults and vars, the case's variables and the task's vars, as a play would) and compares the facts,
key for key, value for value, type for type. The rendering needs ansible's collection loader, which cannot be
installed in a process that has already imported the collection from .collections/ (as pytest has), so this file
renders them when run as a script, in a subprocess. One ansible-playbook run on localhost (connection local,
nothing changed outside pytest's tmp_path) does the same through include_role. The server roles' own vars are
rendered too, to check that the names in plugins/module_utils/slots.py (units, sockets, loopback ports) are theirs.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.filter.core import to_json
from ansible.plugins.loader import filter_loader, init_plugin_loader
from ansible.template import Templar, trust_as_template

ROOT = Path(__file__).resolve().parents[4]
COLLECTION = ROOT / ".collections" / "ansible_collections" / "webstack" / "django"
if __name__ == "__main__":
    # The collection loader first: webstack.django (and ansible.builtin's lookups) are then found through it.
    init_plugin_loader([str(ROOT / ".collections")])
try:
    from ansible_collections.webstack.django.plugins.filter.slot_description import FilterModule
    from ansible_collections.webstack.django.plugins.module_utils import slots
except ImportError:  # run from the checkout: the collection is linked at .collections/ (make venv)
    sys.path.insert(0, str(ROOT / ".collections"))
    from ansible_collections.webstack.django.plugins.filter.slot_description import FilterModule
    from ansible_collections.webstack.django.plugins.module_utils import slots

FILTERS = FilterModule().filters()
slot_description = FILTERS["slot_description"]

# roles/_deploy/tasks/slot_facts.yml as it was before the slot_description filter (commit bb12e00): the reference.
LEGACY_SLOT_FACTS = r"""---
# Describe the slot __deploy_slot would be with server __deploy_slot_server and the
# current release facts: its units, sockets and server kind, in __deploy_candidate.
- name: Describe the slot {{ __deploy_slot ~ " running " ~ __deploy_slot_server }}
  ansible.builtin.set_fact:
    __deploy_candidate:
      slot: "{{ __deploy_slot }}"
      release: "{{ webstack_django_release_id }}"
      release_dir: "{{ webstack_django_release_dir }}"
      static_root: "{{ webstack_django_release_dir }}/staticfiles"
      media_root: "{{ webstack_nginx_media_root | default('') }}"
      server: "{{ __deploy_slot_server }}"
      kind: "{{ __deploy_http_kind }}"
      kinds: "{{ ([__deploy_http_kind] + (['daphne'] if __deploy_slot_server == 'hybrid' else [])) }}"
      units: "{{ __deploy_http_units + __deploy_ws_units }}"
      backends: "{{ __deploy_http_backends }}"
      websocket_backends: "{{ __deploy_ws_backends }}"
      websocket_paths: "{{ webstack_deploy_websocket_paths if __deploy_slot_server == 'hybrid' else [] }}"
      signature: "{{ __deploy_signature }}"
  vars:
    __deploy_prefix: "{{ webstack_django_app }}-{{ __deploy_slot }}"
    __deploy_sock: "unix:{{ __deploy_runtime_dir }}/{{ __deploy_slot }}"
    __deploy_daphne_n: "{{ range(1, (webstack_daphne_instances | default(2) | int) + 1) | map('string') | list }}"
    __deploy_daphne_units: "{{ __deploy_daphne_n | map('regex_replace', '^', __deploy_prefix ~ '-daphne@') | map('regex_replace', '$', '.service') | list }}"
    __deploy_daphne_backends: "{{ __deploy_daphne_n | map('regex_replace', '^', __deploy_sock ~ '-daphne-') | map('regex_replace', '$', '.sock') | list }}"
    __deploy_http_kind: >-
      {{ __deploy_gunicorn_kinds[webstack_gunicorn_worker_class | default('sync')] if __deploy_slot_server in ['gunicorn', 'hybrid']
         else __deploy_slot_server }}
    __deploy_http_units: >-
      {{ [__deploy_prefix ~ '-gunicorn.service'] if __deploy_slot_server in ['gunicorn', 'hybrid']
         else [__deploy_prefix ~ '-uvicorn.service'] if __deploy_slot_server == 'uvicorn'
         else __deploy_daphne_units }}
    __deploy_ws_units: "{{ __deploy_daphne_units if __deploy_slot_server == 'hybrid' else [] }}"
    __deploy_http_backends: >-
      {{ [__deploy_sock ~ '-gunicorn.sock'] if __deploy_slot_server in ['gunicorn', 'hybrid']
         else [__deploy_sock ~ '-uvicorn.sock'] if __deploy_slot_server == 'uvicorn'
         else __deploy_daphne_backends }}
    __deploy_ws_backends: "{{ __deploy_daphne_backends if __deploy_slot_server == 'hybrid' else [] }}"
    # Everything that shapes the slot's units: a change deploys into the other slot.
    __deploy_signature_prefixes: "{{ __deploy_server_roles[__deploy_slot_server] }}"
    __deploy_signature_names: >-
      {{ query('ansible.builtin.varnames', '^webstack_(' ~ (__deploy_signature_prefixes | join('|')) ~ ')_')
         + query('ansible.builtin.varnames', '^webstack_django_(environment|health_path|health_host|writable_paths|project)$') }}
    # ... and the environment it gets and the collection that writes its files: a new secret
    # or a new version of webstack.django deploys into the idle slot, never in place.
    __deploy_signature: >-
      {{ ({'server': __deploy_slot_server, 'release': webstack_django_release_id,
           'environment': __deploy_env_digest | default(''),
           'collection': hostvars['localhost']['__deploy_collection_digest'] | default(''),
           'paths': webstack_deploy_websocket_paths if __deploy_slot_server == 'hybrid' else [],
           'options': dict(__deploy_signature_names | sort | zip(query('ansible.builtin.vars', *(__deploy_signature_names | sort))))}
          | to_json | hash('sha256'))[:16] }}
"""


class Template(str):
    """A case value that is a template (rendered when the fact is: trusted, as in a playbook or inventory)."""


APP = {"webstack_django_app": "shop", "webstack_django_release_id": "r1",
       "webstack_django_release_dir": "/srv/shop/releases/r1"}
# Options of every prefix: only those of the slot's server roles (and the listed webstack_django_ ones) are signed.
OPTIONS = {
    "webstack_gunicorn_workers": Template("{{ 2 * 3 }}"),
    "webstack_gunicorn_Timeout": 30,  # upper case: Jinja's sort ignores case, Python's does not
    "webstack_gunicorn_graceful_timeout": 20,
    "webstack_gunicorn_bind_extra": None,
    "webstack_gunicorn_ratio": 0.5,
    "webstack_gunicorn_preload": True,
    "webstack_gunicorn_since": datetime.date(2024, 1, 2),
    "webstack_uvicorn_loop": "uvloop",
    "webstack_uvicorn_headers": ["x: y", "caf\u00e9: \u2713"],
    "webstack_daphne_ping_interval": Template("{{ 10 + 10 }}"),
    "webstack_daphne_Access_log": False,
    "webstack_django_environment": {"GREETING": "caf\u00e9 \"quoted\" back\\slash\nline \U0001f600", "WORKERS": 4,
                                    "EMPTY": None, "LIST": [1, "2"]},
    "webstack_django_writable_paths": ["/var/lib/shop", "/srv/shop/shared/media"],
    "webstack_django_health_path": "/health/",
    "webstack_django_health_host": "shop.test",
    "webstack_django_project": "shop",
    "webstack_django_health_hostname": "not signed (the name regex ends with $)",
    "webstack_nginx_server_names": ["not signed"],
}
DIGESTS = {"__deploy_env_digest": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b"}

# (id, variables, collection digest on localhost or None)
CASES = [
    ("gunicorn-blue-minimal", {"__deploy_slot": "blue", "__deploy_slot_server": "gunicorn"}, None),
    ("gunicorn-green-gthread", {"__deploy_slot": "green", "__deploy_slot_server": "gunicorn",
                                "webstack_gunicorn_worker_class": "gthread",
                                "webstack_nginx_media_root": "/srv/shop/shared/media", **OPTIONS, **DIGESTS}, "c0ffee"),
    ("gunicorn-uvicorn-worker", {"__deploy_slot": "blue", "__deploy_slot_server": "gunicorn",
                                 "webstack_gunicorn_worker_class": "uvicorn_worker.UvicornWorker", **OPTIONS}, ""),
    ("uvicorn-green", {"__deploy_slot": "green", "__deploy_slot_server": "uvicorn", **OPTIONS, **DIGESTS}, "c0ffee"),
    ("daphne-blue-3", {"__deploy_slot": "blue", "__deploy_slot_server": "daphne", "webstack_daphne_instances": "3",
                       **OPTIONS}, "c0ffee"),
    ("hybrid-green-asgi", {"__deploy_slot": "green", "__deploy_slot_server": "hybrid",
                           "webstack_gunicorn_worker_class": "asgi", "webstack_daphne_instances": 4,
                           "webstack_deploy_websocket_paths": ["/ws/", "/chat/"],
                           "webstack_nginx_media_root": "/srv/shop/shared/media", **OPTIONS, **DIGESTS}, "c0ffee"),
    ("hybrid-blue-int-release", {"__deploy_slot": "blue", "__deploy_slot_server": "hybrid",
                                 "webstack_django_release_id": 20240102}, None),
]
CASE_IDS = [case[0] for case in CASES]


def trusted(value):
    """What the YAML of a playbook gives: its strings can be templates."""
    if isinstance(value, str):
        return trust_as_template(value)
    if isinstance(value, dict):
        return {key: trusted(item) for key, item in value.items()}
    if isinstance(value, list):
        return [trusted(item) for item in value]
    return value


def case_variables(variables):
    """A case's variables as a play sets them: the Template values are templates, the others are data."""
    return {name: trust_as_template(str(value)) if isinstance(value, Template) else value
            for name, value in {**APP, **variables}.items()}


def load(loader, path):
    return trusted(loader.load_from_file(str(path)))


def render_fact(loader, task, variables, collection):
    """The __deploy_candidate the set_fact task ``task`` sets, with the _deploy role's defaults and vars."""
    role = ROOT / "roles" / "_deploy"
    hostvars = {"localhost": {} if collection is None else {"__deploy_collection_digest": collection}}
    names = {**load(loader, role / "defaults" / "main.yml"), **case_variables(variables),
             **load(loader, role / "vars" / "main.yml"), "hostvars": hostvars, **task.get("vars", {})}
    templar = Templar(loader=loader, variables=names)
    return templar.template(task["ansible.builtin.set_fact"]["__deploy_candidate"]), templar


def signed_options(server, variables, templar):
    """The options the legacy task signed, found without Jinja: its two name patterns, values rendered."""
    prefixes = tuple("webstack_%s_" % role for role in slots.SERVER_ROLES[server])
    django = ["webstack_django_%s" % name for name in ("environment", "health_path", "health_host",
                                                       "writable_paths", "project")]
    names = [name for name in {**APP, **variables} if name.startswith(prefixes) or name in django]
    return {name: templar.template(trust_as_template("{{ %s }}" % name)) for name in names}


def render_cases():
    """Script mode: {case id: {old, new (the two tasks' facts), equal, options (the signed options)}}."""
    loader = DataLoader()
    found = filter_loader.find_plugin_with_context("webstack.django.slot_description")
    assert found.resolved and Path(found.plugin_resolved_path).resolve().is_relative_to(ROOT.resolve()), found
    legacy_task = trusted(yaml.safe_load(LEGACY_SLOT_FACTS))[0]
    (task,) = load(loader, ROOT / "roles" / "_deploy" / "tasks" / "slot_facts.yml")
    results = {}
    for case_id, variables, collection in CASES:
        old, templar = render_fact(loader, legacy_task, variables, collection)
        new = render_fact(loader, task, variables, collection)[0]
        options = signed_options({**APP, **variables}["__deploy_slot_server"], variables, templar)
        results[case_id] = {"old": old, "new": new, "equal": old == new, "options": options}
    return results


@pytest.fixture(scope="module")
def rendered():
    if not (COLLECTION / "galaxy.yml").exists():
        pytest.skip("the collection is not linked at .collections/ (make venv)")
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    run = subprocess.run([sys.executable, __file__], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
    return json.loads(run.stdout)


def assert_same(new, old):
    """Equal, with the same JSON types and key order (a 1 is not a "1", nor True a 1)."""
    assert new == old
    assert json.dumps(new) == json.dumps(old)


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_slot_facts_describe_the_slot_as_the_jinja_task_did(rendered, case_id):
    result = rendered[case_id]
    assert result["equal"]
    assert_same(result["new"], result["old"])
    assert len(result["old"]["signature"]) == 16


@pytest.mark.parametrize("case_id, variables, collection", CASES, ids=CASE_IDS)
def test_the_filter_called_from_python_gives_the_jinja_description(rendered, case_id, variables, collection):
    old, options = rendered[case_id]["old"], rendered[case_id]["options"]
    merged = {**APP, **variables}
    server = merged["__deploy_slot_server"]
    assert set(options) <= set(merged) and not {"webstack_django_health_hostname", "webstack_nginx_server_names"} & set(options)
    new = slot_description(
        merged["__deploy_slot"], "shop", server, merged["webstack_django_release_id"],
        merged["webstack_django_release_dir"], media_root=merged.get("webstack_nginx_media_root", ""),
        worker_class=merged.get("webstack_gunicorn_worker_class", "sync"),
        daphne_instances=int(merged.get("webstack_daphne_instances", 2)),
        websocket_paths=merged.get("webstack_deploy_websocket_paths", ["/ws/"]),
        environment=merged.get("__deploy_env_digest", ""), collection=collection or "",
        options=dict(reversed(options.items())))  # any order: the filter sorts the names as Jinja's sort did
    assert_same(new, old)
    document = slots.signature_document(server, merged["webstack_django_release_id"],
                                        merged.get("__deploy_env_digest", ""), collection or "",
                                        merged.get("webstack_deploy_websocket_paths", ["/ws/"]), options)
    assert slots.signature_json(document) == to_json(document), case_id


@pytest.mark.parametrize("value", [
    {"a": [1, 2.5, None, True, False, "x"], "b": {"c": {"d": []}}},
    "caf\u00e9 \u2713 \U0001f600 \"q\" \\ \n\t\x00\x7f",
    {"dates": [datetime.date(2024, 1, 2), datetime.datetime(2024, 1, 2, 3, 4, 5, 6), datetime.time(7, 8)]},
    {"set": {3}, "frozen": frozenset({"x"}), "tuple": (1, (2, 3))},
    {1: "int key", 2.5: "float key", None: "none key", "s": "str key"},
    [float("inf"), -0.0, 10 ** 30, 1e-7],
], ids=["nested", "text", "dates", "sets-tuples", "keys", "numbers"])
def test_signature_json_is_to_json(value):
    assert slots.signature_json(value) == to_json(value)


def test_signature_json_refuses_what_to_json_refuses():
    for value in (b"bytes", {("tuple", "key"): 1}, object()):
        with pytest.raises(TypeError):
            to_json(value)
        with pytest.raises(TypeError):
            slots.signature_json(value)


@pytest.mark.parametrize("kwargs, message", [
    ({"server": "waitress"}, "unknown server 'waitress'"),
    ({"server": "gunicorn", "worker_class": "gevent"}, "unknown gunicorn worker class 'gevent'"),
])
def test_the_filter_refuses_unknown_servers_and_worker_classes(kwargs, message):
    with pytest.raises(AnsibleFilterError, match=message):
        slot_description("blue", "shop", release="r1", release_dir="/srv/shop/releases/r1", **kwargs)


def test_the_filter_is_documented():
    doc = yaml.safe_load((ROOT / "plugins" / "filter" / "slot_description.yml").read_text())
    assert set(doc) == {"DOCUMENTATION", "EXAMPLES", "RETURN"}
    assert doc["DOCUMENTATION"]["name"] == "slot_description"
    assert "webstack.django.slot_description" in doc["EXAMPLES"]
    documented = set(doc["DOCUMENTATION"]["options"]) - {"_input"}
    code = slot_description.__code__
    assert documented == set(code.co_varnames[1:code.co_argcount])
    choices = doc["DOCUMENTATION"]["options"]
    assert choices["server"]["choices"] == list(slots.SERVER_ROLES)
    assert choices["worker_class"]["choices"] == list(slots.GUNICORN_KINDS)


# --- The names in slots.py are those of the roles' vars ---------------------------------------------------------

def test_the_model_constants_are_the_roles_vars():
    loader = DataLoader()
    deploy = yaml.safe_load((ROOT / "roles" / "_deploy" / "vars" / "main.yml").read_text())
    gunicorn = yaml.safe_load((ROOT / "roles" / "gunicorn" / "vars" / "main.yml").read_text())
    assert deploy["__deploy_gunicorn_kinds"] == slots.GUNICORN_KINDS == gunicorn["__gunicorn_kinds"]
    assert deploy["__deploy_server_roles"] == {server: list(roles) for server, roles in slots.SERVER_ROLES.items()}
    assert deploy["__deploy_websocket_kinds"] == list(slots.WEBSOCKET_KINDS)
    templar = Templar(loader=loader, variables={**trusted(deploy), "webstack_django_app": "shop"})
    assert templar.template(trust_as_template("{{ __deploy_runtime_dir }}")) == slots.runtime_dir("shop")


@pytest.mark.parametrize("slot", ["blue", "green"])
@pytest.mark.parametrize("listen", ["unix", "loopback"])
def test_process_names_are_the_server_roles_names(slot, listen):
    loader = DataLoader()
    variables = {}
    for role in ("_appserver", "gunicorn", "uvicorn", "daphne"):
        variables.update(load(loader, ROOT / "roles" / role / "vars" / "main.yml"))
    variables.update(load(loader, ROOT / "roles" / "_appserver" / "defaults" / "main.yml"))
    variables.update(webstack_django_app="shop", webstack_django_slot=slot, webstack_django_listen=listen,
                     webstack_django_loopback_port=9000, webstack_daphne_instances=3)
    templar = Templar(loader=loader, variables=variables)

    def var(name):
        return templar.template(trust_as_template("{{ %s }}" % name))

    kwargs = {"daphne_instances": 3, "listen": listen, "loopback_port": 9000}
    gunicorn, = slots.role_processes("shop", slot, "gunicorn", **kwargs)
    uvicorn, = slots.role_processes("shop", slot, "uvicorn", **kwargs)
    daphne = slots.role_processes("shop", slot, "daphne", **kwargs)
    assert (gunicorn["unit"], uvicorn["unit"]) == (var("__gunicorn_unit"), var("__uvicorn_unit"))
    assert [p["unit"] for p in daphne] == var("__daphne_units")
    assert slots.daphne_unit_template("shop", slot) == var("__daphne_unit")
    assert slots.port_base(9000, slot) == int(var("__appserver_port_base"))
    if listen == "unix":
        assert gunicorn["backend"] == var("__gunicorn_bind")
        assert uvicorn["socket"] == var("__uvicorn_socket") and var("__uvicorn_bind") == "--uds " + uvicorn["socket"]
        assert [p["socket"] for p in daphne] == [var("__daphne_socket").replace("%i", str(n)) for n in (1, 2, 3)]
    else:
        assert gunicorn["backend"] == var("__gunicorn_bind")
        assert var("__uvicorn_bind") == "--host 127.0.0.1 --port %d" % uvicorn["port"]
        assert [p["port"] for p in daphne] == [int(name) for name in var("__daphne_instance_names")]


# --- Through ansible-playbook --------------------------------------------------------------------------------------

def test_slot_facts_through_ansible_playbook(tmp_path):
    """include_role of today's slot_facts.yml and the legacy task, for every case, in one run on localhost."""
    if not (COLLECTION / "galaxy.yml").exists():
        pytest.skip("the collection is not linked at .collections/ (make venv)")
    playbook_bin = Path(sys.executable).parent / "ansible-playbook"
    if not playbook_bin.exists():
        playbook_bin = Path(shutil.which("ansible-playbook") or "")
        if not playbook_bin.name:
            pytest.skip("ansible-playbook not found")
    (tmp_path / "legacy_slot_facts.yml").write_text(LEGACY_SLOT_FACTS)
    out = tmp_path / "results.json"
    plays = []
    record = "{{ __case_results | default({}) | combine({'%s': {'new': __case_new, 'old': __deploy_candidate}}) }}"
    for case_id, variables, collection in CASES:
        tasks = [{"name": "Collection digest", "ansible.builtin.set_fact": {"__deploy_collection_digest": collection},
                  "when": collection is not None},
                 {"name": "Today's slot_facts.yml", "ansible.builtin.include_role": {
                     "name": "webstack.django._deploy", "tasks_from": "slot_facts.yml", "public": True},
                  "vars": {name: variables[name] for name in ("__deploy_slot", "__deploy_slot_server")}},
                 {"name": "Keep it", "ansible.builtin.set_fact": {"__case_new": "{{ __deploy_candidate }}"}},
                 {"name": "The legacy task", "ansible.builtin.include_tasks": str(tmp_path / "legacy_slot_facts.yml"),
                  "vars": {name: variables[name] for name in ("__deploy_slot", "__deploy_slot_server")}},
                 {"name": "Record", "ansible.builtin.set_fact": {"__case_results": record % case_id}}]
        play_vars = {**APP, **{name: str(value) if isinstance(value, Template) else value
                               for name, value in variables.items() if not name.startswith("__deploy_slot")}}
        plays.append({"name": case_id, "hosts": "localhost", "connection": "local", "gather_facts": False,
                      "vars": play_vars, "tasks": tasks})
    plays.append({"name": "Write the results", "hosts": "localhost", "connection": "local", "gather_facts": False,
                  "tasks": [{"name": "Results", "ansible.builtin.copy": {
                      "content": "{{ __case_results | to_json }}", "dest": str(out), "mode": "0600"}}]})
    playbook = tmp_path / "cases.yml"
    playbook.write_text(yaml.safe_dump(plays, sort_keys=False, allow_unicode=True))
    env = dict(os.environ)
    env.update(ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_RETRY_FILES_ENABLED="0",
               ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0")
    run = subprocess.run(
        [str(playbook_bin), "-i", "localhost,", "-e", "ansible_python_interpreter=" + sys.executable, str(playbook)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0 and out.exists(), run.stdout[-5000:] + run.stderr[-3000:]
    results = json.loads(out.read_text())
    assert sorted(results) == sorted(CASE_IDS)
    for case_id in CASE_IDS:
        assert results[case_id]["new"] == results[case_id]["old"], case_id
        assert len(results[case_id]["new"]["signature"]) == 16, case_id


if __name__ == "__main__":
    print(to_json(render_cases()))
