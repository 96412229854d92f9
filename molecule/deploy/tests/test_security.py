"""The TLS setup of the deploy playbook, looked at by an auditor and from the network.

Runs after test_rollout.py (pytest takes the files in name order). The deploy runs
once more, as a user would turn TLS on: a certificate for demo.test, the secure
Django settings in the env file and a rotated secret key, with -vvv --diff. Then:
secrets show nowhere but the env file; the app user cannot write its code; from
db1 only SSH, HTTP and HTTPS answer; every unit the deploy made scores 2.0 or less
in `systemd-analyze security`; the TLS endpoint passes sslyze's Mozilla
intermediate profile with the security headers set; `manage.py check --deploy`
of the release is clean with the environment the units get.
"""

from __future__ import annotations

import base64
import re
import secrets
import socket
import ssl
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import PROJECT, RELEASES, SCENARIO, SITE, WEB, address, playbook, state

TLS_DIR = Path("/tmp/webstack-deploy-tls")  # made by prepare (molecule/shared/test_tls.yml)
CA_FILE = TLS_DIR / "ca.pem"
HOST_TLS_DIR = "/etc/ssl/webstack-demo"
SLOT_STORE = "/var/lib/webstack/demo/slots"


def env_file(host, which: str = "active") -> str:
    """The environment file of the active (or previous) slot: each slot has its own."""
    return f"/etc/demo/{state(host)[which]['slot']}.env"


def kept_copy(host, which: str = "active") -> str:
    """The root-only copy of a slot's files kept when it went live (a rollback restores it)."""
    slot = state(host)[which]
    return f"{SLOT_STORE}/{slot['slot']}-{slot['signature']}.tar"
ENV_VALUES = yaml.safe_load((SCENARIO / "inventory" / "group_vars" / "webservers.yml").read_text())[
    "webstack_env_file_values"]
OLD_SECRET_KEY = ENV_VALUES["DJANGO_SECRET_KEY"]
# New on every run, so that the env file changes and the diff has something to (not) show.
NEW_SECRET_KEY = f"lab-only-rotated-secret-key-{secrets.token_hex(16)}"
SECURE_DJANGO = {
    "DJANGO_SECRET_KEY": NEW_SECRET_KEY,
    "DJANGO_SECURE_SSL_REDIRECT": "true",
    "DJANGO_SESSION_COOKIE_SECURE": "true",
    "DJANGO_CSRF_COOKIE_SECURE": "true",
    "DJANGO_SECURE_HSTS_SECONDS": "63072000",
    "DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS": "true",
    "DJANGO_SECURE_HSTS_PRELOAD": "true",
}
# Every secret value of the env file, and the secret key it had before the rotation.
SECRETS = {
    "DJANGO_SECRET_KEY": NEW_SECRET_KEY,
    "DB_PASSWORD": ENV_VALUES["DB_PASSWORD"],
    "the Redis password": re.search(r"//:([^@]+)@", ENV_VALUES["REDIS_URL"]).group(1),
    "the secret key before the rotation": OLD_SECRET_KEY,
}
TLS_VARS = {
    "webstack_nginx_tls_certificate": f"{HOST_TLS_DIR}/demo.test.chain.pem",
    "webstack_nginx_tls_certificate_key": f"{HOST_TLS_DIR}/demo.test.key",
}


@pytest.fixture(scope="module")
def tls_deploy():
    """Turn TLS on and rotate the secret key, verbose and with diffs: the run a user would paste in a ticket."""
    run = playbook("deploy", "-vvv", "--diff", webstack_release_source=str(RELEASES / "r7"),
                   webstack_env_file_values={**ENV_VALUES, **SECURE_DJANGO}, **TLS_VARS)
    assert run.rc == 0, run
    return run


@pytest.fixture(scope="module")
def release_dirs(hosts, tls_deploy):
    dirs = {name: state(hosts[name])["active"]["release_dir"] for name in WEB}
    for name, path in dirs.items():
        assert path.startswith("/srv/demo/releases/"), (name, path)
    return dirs


def https_get(host: str, path: str) -> tuple[int, list[tuple[str, str]], bytes]:
    context = ssl.create_default_context(cafile=str(CA_FILE))
    with socket.create_connection((address(host), 443), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=SITE) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {SITE}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = [(k.strip().lower(), v.strip()) for k, _, v in (line.partition(":") for line in lines[1:])]
    return int(lines[0].split()[1]), headers, body


# -- secrets ---------------------------------------------------------------------------

def test_the_tls_deploy_serves_the_release_over_https(hosts, tls_deploy):
    for name in WEB:
        status, _, body = https_get(name, "/health/")
        assert status == 200, (name, body)
        assert state(hosts[name])["active"]["release"] in body.decode(), (name, body)


@pytest.mark.parametrize("secret", SECRETS)
def test_no_secret_shows_in_the_verbose_output_or_diff(tls_deploy, secret):
    assert SECRETS[secret] not in tls_deploy.output
    assert "DJANGO_SECRET_KEY" in tls_deploy.output  # the diff names the key it changed


@pytest.mark.parametrize("name", WEB)
def test_the_env_file_is_root_owned_0640_app_group(hosts, tls_deploy, name):
    for which in ("active", "previous"):
        env = hosts[name].file(env_file(hosts[name], which))
        assert (env.user, env.group, env.mode) == ("root", "demo", 0o640), which
    active = hosts[name].file(env_file(hosts[name])).content_string.replace('"', "").replace("'", "")
    assert f"DJANGO_SECRET_KEY={NEW_SECRET_KEY}" in active
    store = hosts[name].file(SLOT_STORE)
    assert (store.user, store.group, store.mode) == ("root", "root", 0o700)
    for which in ("active", "previous"):
        copy = hosts[name].file(kept_copy(hosts[name], which))
        assert (copy.user, copy.group, copy.mode) == ("root", "root", 0o600), which


@pytest.mark.parametrize("name", WEB)
def test_no_secret_in_a_unit_file_process_list_or_the_journal(hosts, tls_deploy, name):
    host = hosts[name]
    processes = host.check_output("ps -eo args ww")
    units = host.check_output("cat /etc/systemd/system/demo-* /etc/systemd/system/demo-*.d/* 2>/dev/null || true")
    journal = host.check_output("journalctl --no-pager -q -o cat")
    for secret, value in SECRETS.items():
        assert value not in processes, secret
        assert value not in units, secret
        assert value not in journal, secret


@pytest.mark.parametrize("name", WEB)
def test_no_file_but_the_env_files_and_their_kept_copies_hold_a_secret(hosts, tls_deploy, name):
    """The active slot's env file and the previous slot's (a rollback brings its environment back), and the
    root-only copies kept of each: no other file on the host holds a secret, and each of these holds one."""
    host = hosts[name]
    expected = {env_file(host, w) for w in ("active", "previous")} | {kept_copy(host, w) for w in ("active", "previous")}
    patterns = " ".join(f"-e {value!r}" for value in SECRETS.values())
    found = host.run(
        f"grep -rlF --devices=skip --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev {patterns} / 2>/dev/null")
    assert set(found.stdout.split()) == expected, found.stdout
    new_key = set(host.run(f"grep -rlF -e {NEW_SECRET_KEY!r} /etc /var/lib/webstack").stdout.split())
    assert new_key == {env_file(host), kept_copy(host)}, new_key
    old = host.run(f"grep -c -F {OLD_SECRET_KEY!r} {env_file(host)}")
    assert old.stdout.strip() == "0"


# -- what the app user can write ---------------------------------------------------------

@pytest.mark.parametrize("name", WEB)
def test_the_app_user_cannot_write_its_code_or_virtualenv(hosts, release_dirs, name):
    host = hosts[name]
    writable = host.check_output("cd / && runuser -u demo -- find /srv/demo -xdev -writable -not -type l -print")
    media = "/srv/demo/shared/media"
    assert [p for p in writable.splitlines() if p != media and not p.startswith(media + "/")] == []
    release = release_dirs[name]
    for target in (f"{release}/manage.py", f"{release}/.venv/bin/python", f"{release}/demoapp/settings.py"):
        assert host.run(f"runuser -u demo -- sh -c 'echo x >> {target}'").rc != 0, target
    assert host.run(f"runuser -u demo -- touch {release}/.venv/lib/new.py").rc != 0
    probe = host.run(f"runuser -u demo -- sh -c 'touch {media}/.webstack-write-probe && rm {media}/.webstack-write-probe'")
    assert probe.rc == 0, probe.stderr


# -- the network, the units ---------------------------------------------------------------

PORT_SCAN = r"""
import asyncio, sys

async def probe(port, gate):
    async with gate:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(sys.argv[1], port), 3)
        except Exception:
            return None
        writer.close()
        return port

async def main():
    gate = asyncio.Semaphore(400)
    found = await asyncio.gather(*(probe(port, gate) for port in range(1, 65536)))
    print(" ".join(str(port) for port in found if port))

asyncio.run(main())
"""


@pytest.mark.parametrize("name", WEB)
def test_from_another_host_only_ssh_http_and_https_answer(hosts, tls_deploy, name):
    script = base64.b64encode(PORT_SCAN.encode()).decode()
    out = hosts["db1"].check_output(f"echo {script} | base64 -d | python3 - {address(name)}")
    assert sorted(int(p) for p in out.split()) == [22, 80, 443]


@pytest.mark.parametrize("name", WEB)
def test_every_unit_the_deploy_made_scores_2_or_less(hosts, tls_deploy, name):
    host = hosts[name]
    files = host.check_output("systemctl list-unit-files --no-legend --plain 'demo-*'").split("\n")
    units = [line.split()[0].replace("@.service", "@1.service") for line in files if line.strip()]
    scores = {}
    for unit in units:
        out = host.check_output(f"systemd-analyze security --no-pager {unit}")
        scores[unit] = float(re.search(r"Overall exposure level for \S+: ([0-9.]+)", out).group(1))
    assert max(scores.values()) <= 2.0, scores
    # The earlier steps ran each server kind in some slot; their unit files stay.
    assert {"gunicorn", "uvicorn", "daphne"} <= {re.sub(r"^demo-\w+-([a-z]+).*", r"\1", u) for u in units}, scores


# -- TLS and Django -----------------------------------------------------------------------

@pytest.mark.parametrize("name", WEB)
def test_tls_passes_sslyze_mozilla_intermediate(tls_deploy, name):
    sslyze = PROJECT / ".venv-sslyze" / "bin" / "sslyze"
    result = subprocess.run(
        [str(sslyze), "--mozilla_config=intermediate", f"--certinfo_ca_file={CA_FILE}",
         f"{SITE}:443{{{address(name)}}}"],
        capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert f"{SITE}:443: OK - Compliant." in result.stdout


@pytest.mark.parametrize("path", ["/", "/health/", "/static/pulse/site.css"])
def test_https_responses_carry_the_security_headers_once(tls_deploy, path):
    status, headers, _ = https_get(WEB[0], path)
    assert status in (200, 404), (path, status)
    names = [k for k, _ in headers]
    values = dict(headers)
    assert names.count("strict-transport-security") == 1, headers
    assert int(re.search(r"max-age=(\d+)", values["strict-transport-security"]).group(1)) >= 31536000
    assert values.get("x-content-type-options") == "nosniff", headers
    assert values.get("server") == "nginx", headers  # no version
    if path != "/static/pulse/site.css":
        assert values.get("x-frame-options") == "DENY", headers
        assert values.get("referrer-policy") == "same-origin", headers


def test_plain_http_is_redirected_to_https(tls_deploy):
    with socket.create_connection((address(WEB[0]), 80), timeout=10) as sock:
        sock.sendall(f"GET /?a=1 HTTP/1.1\r\nHost: {SITE}\r\nConnection: close\r\n\r\n".encode())
        head = sock.recv(65536).decode("latin-1")
    assert head.split()[1] == "301", head
    assert f"\r\nLocation: https://{SITE}/?a=1\r\n" in head, head


@pytest.mark.parametrize("name", WEB)
def test_check_deploy_of_the_release_is_clean_with_the_units_environment(hosts, release_dirs, name):
    release = release_dirs[name]
    result = hosts[name].run(
        "systemd-run --quiet --pipe --wait --collect --uid=demo --gid=demo "
        f"--property=EnvironmentFile={env_file(hosts[name])} --working-directory={release} "
        f"-- {release}/.venv/bin/python manage.py check --deploy --fail-level WARNING")
    assert result.rc == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout + result.stderr
