"""The roles' validate entry points refuse bad input, naming the option, without a lab.

One ansible-playbook run on localhost (connection local) applies every case: one play per case, each calling a
role's `validate` entry point (or `_deploy`'s preflight, `main`) with the case's options as play vars, in a block
whose rescue records the failure message. Validate entry points change nothing, so nothing on this machine is
touched; the last play writes the results to a JSON file in pytest's tmp_path.

The cases are the issue's (release ids '..', '.', 'r1\\n', env key 'A\\n', a newline in a path or in a
webstack_django_environment value) and their neighbours; each role also gets a case with good values that must
pass, so an allowlist that refuses everything fails here too. The unit template is rendered once to check that
'%' in a webstack_django_environment value is escaped. The release build's guard (the first task of build.yml,
before it removes a half-built release directory) is given release directories that are not right below the
releases root, under pytest's tmp_path, with files that must still be there afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
COLLECTION = ROOT / ".collections" / "ansible_collections" / "webstack" / "django"

COMMON = {"webstack_django_app": "shop"}
SERVER = {**COMMON, "webstack_django_project": "shop", "webstack_django_release_dir": "/srv/shop/releases/r1"}
RELEASE = {**COMMON, "webstack_django_project": "shop", "webstack_release_id": "r1"}
ENV_FILE = {**COMMON, "webstack_env_file_values": {
    "DJANGO_SECRET_KEY": "not-a-real-secret-0123456789", "DJANGO_SETTINGS_MODULE": "shop.settings",
    "DJANGO_ALLOWED_HOSTS": "shop.test"}}
NGINX = {**COMMON, "webstack_nginx_server_names": ["shop.test"],
         "webstack_nginx_backends": ["unix:/run/shop/blue-gunicorn.sock"]}
BASE = {"release": RELEASE, "env_file": ENV_FILE, "gunicorn": SERVER, "uvicorn": SERVER, "daphne": SERVER,
        "nginx": NGINX, "_deploy": COMMON}

# (id, role, options, message): message None means the options must pass.
CASES = [
    ("release-ok", "release", {}, None),
    ("release-ok-git", "release", {
        "webstack_release_id": "", "webstack_release_git_repo": "https://git.test/x.git",
        "webstack_django_base_dir": "/srv/shop/", "webstack_release_pip_cert": "/etc/x/ca.pem",
        "webstack_release_shared_dirs": [{"name": "media", "path": "public/media"}]}, None),
    ("release-id-dotdot", "release", {"webstack_release_id": ".."}, "webstack_release_id must match"),
    ("release-id-dot", "release", {"webstack_release_id": "."}, "webstack_release_id must match"),
    ("release-id-newline", "release", {"webstack_release_id": "r1\n"}, "webstack_release_id must match"),
    ("release-id-cr", "release", {"webstack_release_id": "r1\r"}, "webstack_release_id must match"),
    ("release-id-slash", "release", {"webstack_release_id": "r1/../.."}, "webstack_release_id must match"),
    ("release-base-dir-dotdot", "release", {"webstack_django_base_dir": "/srv/shop/.."}, "webstack_django_base_dir"),
    ("release-base-dir-newline", "release", {"webstack_django_base_dir": "/srv/shop\n"}, "webstack_django_base_dir"),
    ("release-base-dir-system", "release", {"webstack_django_base_dir": "/var/lib"}, "webstack_django_base_dir"),
    ("release-env-file-newline", "release", {"webstack_django_env_file": "/etc/shop/shop.env\n"},
     "webstack_django_env_file"),
    ("release-pip-cache-var", "release", {"webstack_release_pip_cache_dir": "/var"}, "webstack_release_pip_cache_dir"),
    ("release-shared-path-dotdot", "release", {"webstack_release_shared_dirs": [{"name": "media", "path": "../x"}]},
     "webstack_release_shared_dirs paths"),
    ("release-shared-name-newline", "release", {"webstack_release_shared_dirs": [{"name": "media\n", "path": "m"}]},
     "webstack_release_shared_dirs names"),
    ("release-requirements-dotdot", "release", {"webstack_release_requirements": "../../etc/x"},
     "webstack_release_requirements"),
    ("release-user-newline", "release", {"webstack_django_user": "shop\n"}, "webstack_django_user"),
    ("release-app-newline", "release", {"webstack_django_app": "shop\n"}, "webstack_django_app must match"),
    ("env-file-ok", "env_file", {}, None),
    ("env-file-key-newline", "env_file", {"webstack_env_file_values": {
        **ENV_FILE["webstack_env_file_values"], "A\n": "x"}},
     'webstack_env_file_values has invalid key names (letters, digits and _ only, not starting with a digit): "A\\n"'),
    ("env-file-path-ssl", "env_file", {"webstack_django_env_file": "/etc/ssl/shop.env"}, "webstack_django_env_file"),
    ("env-file-path-cron", "env_file", {"webstack_django_env_file": "/etc/cron.d/shop"}, "webstack_django_env_file"),
    ("env-file-path-etc", "env_file", {"webstack_django_env_file": "/etc/shop.env"}, "webstack_django_env_file"),
    ("gunicorn-ok", "gunicorn", {"webstack_django_environment": {"GREETING": "100% sure", "WORKERS": 4},
                                 "webstack_django_writable_paths": ["/var/lib/shop", "/srv/shop/shared/media"]}, None),
    ("gunicorn-release-dir-newline", "gunicorn", {"webstack_django_release_dir": "/srv/x\n"},
     "webstack_django_release_dir must be an absolute"),
    ("gunicorn-release-dir-newline-unit", "gunicorn",
     {"webstack_django_release_dir": "/srv/x\nExecStartPre=+/bin/sh -c id"}, "webstack_django_release_dir"),
    ("gunicorn-release-dir-percent", "gunicorn", {"webstack_django_release_dir": "/srv/%h"},
     "webstack_django_release_dir"),
    ("gunicorn-release-dir-dotdot", "gunicorn", {"webstack_django_release_dir": "/srv/../etc"},
     "webstack_django_release_dir"),
    ("gunicorn-venv-space", "gunicorn", {"webstack_django_venv_dir": "/srv/x y"}, "webstack_django_venv_dir"),
    ("gunicorn-env-file-newline", "gunicorn", {"webstack_django_env_file": "/etc/shop/shop.env\n"},
     "webstack_django_env_file"),
    ("gunicorn-environment-value-newline", "gunicorn",
     {"webstack_django_environment": {"GREETING": "hi\nExecStartPre=+/bin/sh -c id"}},
     'webstack_django_environment values'),
    ("gunicorn-environment-value-cr", "gunicorn", {"webstack_django_environment": {"GREETING": "hi\r"}},
     'Refused: "GREETING"'),
    ("gunicorn-environment-value-quote", "gunicorn", {"webstack_django_environment": {"GREETING": 'a" B="c'}},
     'Refused: "GREETING"'),
    ("gunicorn-environment-name-newline", "gunicorn", {"webstack_django_environment": {"A\n": "x"}},
     'webstack_django_environment has invalid variable names (letters, digits and _ only, not starting with a digit): '
     '"A\\n"'),
    ("gunicorn-writable-root", "gunicorn", {"webstack_django_writable_paths": ["/"]}, "webstack_django_writable_paths"),
    ("gunicorn-writable-var-lib", "gunicorn", {"webstack_django_writable_paths": ["/var/lib/"]},
     "webstack_django_writable_paths"),
    ("gunicorn-writable-etc", "gunicorn", {"webstack_django_writable_paths": ["/var/lib/shop", "/etc"]},
     'got "/etc"'),
    ("gunicorn-writable-newline", "gunicorn", {"webstack_django_writable_paths": ["/var/lib/shop\n"]},
     "webstack_django_writable_paths"),
    ("gunicorn-user-newline", "gunicorn", {"webstack_django_user": "shop\n"}, "webstack_django_user"),
    ("gunicorn-user-root", "gunicorn", {"webstack_django_user": "root"}, "webstack_django_user must be a dedicated"),
    ("gunicorn-proxy-group-space", "gunicorn", {"webstack_django_proxy_group": "www data"},
     "webstack_django_proxy_group"),
    ("gunicorn-release-id-newline", "gunicorn", {"webstack_django_release_id": "r1\n"}, "webstack_django_release_id"),
    ("gunicorn-forwarded-newline", "gunicorn", {"webstack_gunicorn_forwarded_allow_ips": "127.0.0.1\n"},
     "webstack_gunicorn_forwarded_allow_ips"),
    ("gunicorn-health-host-crlf", "gunicorn", {"webstack_django_health_host": "shop.test\r\nX: 1"},
     "webstack_django_health_host"),
    ("uvicorn-ok", "uvicorn", {"webstack_uvicorn_forwarded_allow_ips": "*"}, None),
    ("uvicorn-forwarded-newline", "uvicorn",
     {"webstack_uvicorn_forwarded_allow_ips": "127.0.0.1\nExecStartPre=+/bin/sh -c id"},
     "webstack_uvicorn_forwarded_allow_ips"),
    ("uvicorn-forwarded-space", "uvicorn", {"webstack_uvicorn_forwarded_allow_ips": "127.0.0.1 --reload"},
     "webstack_uvicorn_forwarded_allow_ips"),
    ("uvicorn-app-module-option", "uvicorn", {"webstack_uvicorn_app_module": "shop.asgi:application --reload"},
     "webstack_uvicorn_app_module"),
    ("daphne-ok", "daphne", {}, None),
    ("daphne-writable-root", "daphne", {"webstack_django_writable_paths": ["/"]}, "webstack_django_writable_paths"),
    ("daphne-app-module-newline", "daphne", {"webstack_daphne_app_module": "shop.asgi:application\n"},
     "webstack_daphne_app_module"),
    ("nginx-ok", "nginx", {"webstack_nginx_static_root": "/srv/shop/releases/r1/staticfiles",
                           "webstack_nginx_media_root": "/srv/shop/shared/media/",
                           "webstack_nginx_tls_certificate": "/etc/ssl/certs/shop.pem",
                           "webstack_nginx_tls_certificate_key": "/etc/ssl/private/shop.key",
                           "webstack_nginx_websocket_paths": ["/ws/"],
                           "webstack_nginx_server_names": ["shop.test", "*.shop.test"],
                           "webstack_nginx_client_max_body_size": "20M"}, None),
    ("nginx-static-root-newline", "nginx", {"webstack_nginx_static_root": "/srv/x\n"}, "webstack_nginx_static_root"),
    ("nginx-media-root-dotdot", "nginx", {"webstack_nginx_media_root": "/srv/shop/../../etc"},
     "webstack_nginx_media_root"),
    ("nginx-server-name-newline", "nginx", {"webstack_nginx_server_names": ["shop.test\n"]},
     "webstack_nginx_server_names must list"),
    ("nginx-backend-newline", "nginx", {"webstack_nginx_backends": ["127.0.0.1:8000\n"]},
     "webstack_nginx_backends must list"),
    ("nginx-websocket-path-newline", "nginx", {"webstack_nginx_websocket_paths": ["/ws/\n"]},
     "webstack_nginx_websocket_paths"),
    ("nginx-health-path-newline", "nginx", {"webstack_nginx_health_path": "/health/\n"}, "webstack_nginx_health_path"),
    ("nginx-body-size-newline", "nginx", {"webstack_nginx_client_max_body_size": "10m\n"},
     "webstack_nginx_client_max_body_size"),
    ("nginx-tls-key-newline", "nginx", {"webstack_nginx_tls_certificate": "/etc/x/c.pem",
                                        "webstack_nginx_tls_certificate_key": "/etc/x/k.pem\n"},
     "webstack_nginx_tls_certificate_key"),
    ("deploy-ok", "_deploy", {"webstack_rollback_release": "r1",
                              "webstack_deploy_public_health_url": "https://shop.test/health/?probe=1",
                              "webstack_deploy_websocket_probe_path": "/ws/echo/"}, None),
    ("deploy-rollback-dotdot", "_deploy", {"webstack_rollback_release": ".."}, "webstack_rollback_release"),
    ("deploy-rollback-dot", "_deploy", {"webstack_rollback_release": "."}, "webstack_rollback_release"),
    ("deploy-rollback-newline", "_deploy", {"webstack_rollback_release": "r1\n"}, "webstack_rollback_release"),
    ("deploy-websocket-path-newline", "_deploy", {"webstack_deploy_websocket_paths": ["/ws/\n"]},
     "webstack_deploy_websocket_paths"),
    ("deploy-public-url-newline", "_deploy", {"webstack_deploy_public_health_url": "https://shop.test/health/\n"},
     "webstack_deploy_public_health_url"),
    ("deploy-app-reserved", "_deploy", {"webstack_django_app": "systemd"}, "webstack_django_app must match"),
]

# Release ids whose directory <base>/releases/<id> the build's guard must refuse before it removes anything.
BUILD_GUARD_IDS = {"build-guard-dotdot": "..", "build-guard-dot": ".", "build-guard-empty": "",
                   "build-guard-deeper": "r1/..", "build-guard-up": "../../x"}

UNIT_TEMPLATE = ROOT / "roles" / "_appserver" / "templates" / "appserver.service.j2"
# What the unit template needs besides the role's options (set by the server roles).
UNIT_VARS = {
    "webstack_django_app": "shop", "webstack_django_slot": "blue", "webstack_django_release_id": "r1",
    "webstack_django_user": "shop", "webstack_django_group": "shop", "webstack_django_release_dir": "/srv/shop/r1",
    "webstack_django_env_file": "/etc/shop/blue.env", "webstack_django_writable_paths": [],
    "__appserver_server": "gunicorn", "__appserver_server_kind": "gunicorn-sync", "__appserver_instances": False,
    "__appserver_socket": "", "__appserver_exec_start": "/bin/true", "__appserver_exec_reload": "",
    "__appserver_restart_prevent_exit_status": "", "__appserver_stop_timeout": 35,
    "__appserver_unit_prefix": "shop-blue", "__appserver_runtime_dir": "/run/shop",
}


def case_play(case_id, role, options):
    include = {"name": f"webstack.django.{role}"}
    if role != "_deploy":
        include["tasks_from"] = "validate"
    return {
        "name": case_id,
        "hosts": "localhost",
        "connection": "local",
        "gather_facts": False,
        "vars": {**BASE[role], **options},
        "tasks": [{
            "name": "Case",
            "block": [
                {"name": "Validate", "ansible.builtin.include_role": include},
                {"name": "Passed", "ansible.builtin.set_fact": {
                    "__case_results": "{{ __case_results | default({}) | combine({%r: {'failed': false}}) }}"
                                      % case_id}},
            ],
            "rescue": [{"name": "Failed", "ansible.builtin.set_fact": {
                "__case_results": "{{ __case_results | default({}) | combine({%r: {'failed': true, "
                                  "'msg': ansible_failed_result.msg | default('')}}) }}" % case_id}}],
        }],
    }


def unit_play(name, environment):
    """Render the unit template with environment; record the text or the error."""
    return {
        "name": name,
        "hosts": "localhost",
        "connection": "local",
        "gather_facts": False,
        "vars": {**UNIT_VARS, "webstack_django_environment": environment},
        "tasks": [{
            "name": "Render",
            "block": [{"name": "Rendered", "ansible.builtin.set_fact": {
                "__case_results": "{{ __case_results | default({}) | combine({%r: {'failed': false, "
                                  "'text': lookup('ansible.builtin.template', %r)}}) }}"
                                  % (name, str(UNIT_TEMPLATE))}}],
            "rescue": [{"name": "Failed", "ansible.builtin.set_fact": {
                "__case_results": "{{ __case_results | default({}) | combine({%r: {'failed': true, "
                                  "'msg': ansible_failed_result.msg | default('')}}) }}" % name}}],
        }],
    }


def build_guard_play(case_id, base, release_id):
    """Run build.yml with a release directory the guard must refuse (set as main.yml would set it)."""
    return {
        "name": case_id,
        "hosts": "localhost",
        "connection": "local",
        "gather_facts": False,
        "vars": {**RELEASE, "webstack_django_base_dir": str(base), "webstack_release_id": "",
                 "__release_dir": f"{base}/releases/{release_id}", "__release": {"id": release_id, "tarball": ""}},
        "tasks": [{
            "name": "Case",
            "block": [
                {"name": "Build", "ansible.builtin.include_role": {"name": "webstack.django.release",
                                                                    "tasks_from": "build"}},
                {"name": "Passed", "ansible.builtin.set_fact": {
                    "__case_results": "{{ __case_results | default({}) | combine({%r: {'failed': false}}) }}"
                                      % case_id}},
            ],
            "rescue": [{"name": "Failed", "ansible.builtin.set_fact": {
                "__case_results": "{{ __case_results | default({}) | combine({%r: {'failed': true, "
                                  "'msg': ansible_failed_result.msg | default(''), "
                                  "'task': ansible_failed_task.name | default('')}}) }}" % case_id}}],
        }],
    }


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    """An app's base directory with a release and shared media: nothing in it may go."""
    base = tmp_path_factory.mktemp("bad_input_base") / "shop"
    for path in ("releases/r1/manage.py", "shared/media/upload.txt", "keep.txt"):
        (base / path).parent.mkdir(parents=True, exist_ok=True)
        (base / path).write_text("keep\n")
    return base


@pytest.fixture(scope="module")
def results(tmp_path_factory, base_dir):
    if not (COLLECTION / "galaxy.yml").exists():
        pytest.skip("the collection is not linked at .collections/ (make venv)")
    playbook_bin = BIN / "ansible-playbook"
    if not playbook_bin.exists():
        found = shutil.which("ansible-playbook")
        if not found:
            pytest.skip("ansible-playbook not found")
        playbook_bin = Path(found)
    work = tmp_path_factory.mktemp("bad_input")
    out = work / "results.json"
    plays = [case_play(case_id, role, options) for case_id, role, options, _ in CASES]
    plays += [build_guard_play(case_id, base_dir, release_id) for case_id, release_id in BUILD_GUARD_IDS.items()]
    plays.append(unit_play("unit-percent", {"GREETING": "100% sure %h", "WORKERS": 4}))
    plays.append(unit_play("unit-newline", {"GREETING": "hi\nExecStartPre=+/bin/sh -c id"}))
    plays.append({
        "name": "Write the results",
        "hosts": "localhost",
        "connection": "local",
        "gather_facts": False,
        "tasks": [{"name": "Results", "ansible.builtin.copy": {
            "content": "{{ __case_results | to_json }}", "dest": str(out), "mode": "0600"}}],
    })
    playbook = work / "cases.yml"
    playbook.write_text(yaml.safe_dump(plays, sort_keys=False))
    env = dict(os.environ)
    env.update(ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_RETRY_FILES_ENABLED="0",
               ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0")
    run = subprocess.run(
        [str(playbook_bin), "-i", "localhost,", "-e", "ansible_python_interpreter=" + sys.executable, str(playbook)],
        cwd=work, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0 and out.exists(), run.stdout[-5000:] + run.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.parametrize(("case_id", "role", "options", "message"), CASES, ids=[c[0] for c in CASES])
def test_validate_entry_point(results, case_id, role, options, message):
    result = results[case_id]
    if message is None:
        assert not result["failed"], f"{role} refused good options: {result.get('msg')}"
        return
    assert result["failed"], f"{role} accepted {options!r}"
    assert message in result["msg"], result["msg"]
    # It is the role's own check that refused, not the argument spec's type check.
    assert "Validation of arguments failed" not in result["msg"]


def test_unit_template_escapes_percent_in_environment_values(results):
    result = results["unit-percent"]
    assert not result["failed"], result.get("msg")
    assert 'Environment="GREETING=100%% sure %%h"' in result["text"]
    assert 'Environment="WORKERS=4"' in result["text"]


def test_unit_template_refuses_a_newline_in_an_environment_value(results):
    result = results["unit-newline"]
    assert result["failed"]
    assert "systemd_escape_value" in result["msg"]
    assert "ExecStartPre" not in result["msg"]


@pytest.mark.parametrize("case_id", sorted(BUILD_GUARD_IDS))
def test_release_build_refuses_a_directory_not_right_below_releases(results, base_dir, case_id):
    result = results[case_id]
    assert result["failed"], "build.yml went on with release id %r" % BUILD_GUARD_IDS[case_id]
    assert result["task"].startswith("Refuse to build"), result
    assert "webstack_release_id" in result["msg"], result["msg"]
    for path in ("releases/r1/manage.py", "shared/media/upload.txt", "keep.txt"):
        assert (base_dir / path).read_text() == "keep\n", path
