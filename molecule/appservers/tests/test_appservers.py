"""Each server kind, run by the collection's roles, as a user on the host would see it."""

import json
import re
import time

import pytest
from conftest import APPS, socket_of, units_of

ALL_UNITS = [(app, unit) for app in APPS for unit in units_of(app)]
ASGI_UNITS = [(app, unit) for app, unit in ALL_UNITS if app["interface"] == "asgi"]


def health(host, app, unit):
    if app["vars"].get("webstack_django_listen") == "loopback":
        target = f"http://127.0.0.1:{app['vars']['webstack_django_loopback_port'] + 1}/health/"
        out = host.run(f"curl -sf -H 'Host: localhost' {target}")
    else:
        out = host.run(f"curl -sf --unix-socket {socket_of(unit)} -H 'Host: localhost' http://localhost/health/")
    return json.loads(out.stdout) if out.rc == 0 else None


def prop(host, unit, name):
    return host.check_output(f"systemctl show -p {name} --value {unit}")


@pytest.mark.parametrize(("app", "unit"), ALL_UNITS, ids=[u for _, u in ALL_UNITS])
def test_unit_serves_health_as_its_server_kind(host, app, unit):
    body = health(host, app, unit)
    assert body is not None, f"{unit} does not answer /health/"
    assert (body["status"], body["server"], body["interface"]) == ("ok", app["kind"], app["interface"])
    assert (body["slot"], body["release"]) == ("blue", "r1")


@pytest.mark.parametrize(("app", "unit"), ALL_UNITS, ids=[u for _, u in ALL_UNITS])
def test_unit_runs_as_the_apps_own_user(host, app, unit):
    assert host.service(unit).is_running
    assert host.service(unit).is_enabled
    pid = prop(host, unit, "MainPID")
    assert host.check_output(f"ps -o user= -p {pid}") == app["app"]


@pytest.mark.parametrize(("app", "unit"), ASGI_UNITS, ids=[u for _, u in ASGI_UNITS])
def test_asgi_units_echo_a_websocket_message(host, app, unit):
    if app["vars"].get("webstack_django_listen") == "loopback":
        target = {"host": "127.0.0.1", "port": app["vars"]["webstack_django_loopback_port"] + 1}
    else:
        target = {"unix_socket": socket_of(unit)}
    args = " ".join(f"{k}={v}" for k, v in {**target, "host_header": "localhost"}.items())
    result = host.ansible("webstack.django.websocket_probe", f"{args} text='hello {unit}'", check=False)
    assert result.get("failed") is not True, result.get("msg")
    assert result["status"] == 101 and result["echo"] == f"hello {unit}"


@pytest.mark.parametrize(("app", "unit"), ALL_UNITS, ids=[u for _, u in ALL_UNITS])
def test_unit_exposure_is_2_or_less(host, app, unit):
    out = host.check_output(f"systemd-analyze security --no-pager {unit}")
    score = float(re.search(r"Overall exposure level for \S+: ([0-9.]+)", out).group(1))
    assert score <= 2.0, out.splitlines()[-1]


def test_no_app_server_listens_beyond_loopback(host):
    listeners = host.check_output("ss -H -ltn").splitlines()
    addresses = [line.split()[3] for line in listeners]
    exposed = [a for a in addresses if not re.match(r"^(127\.0\.0\.\d+|\[::1\]):\d+$", a) and not a.endswith(":22")]
    assert exposed == []
    # The loopback app does listen, on loopback.
    assert any(a.startswith("127.0.0.1:8401") for a in addresses)


@pytest.mark.parametrize("app", [a for a in APPS if a["vars"].get("webstack_django_listen") != "loopback"],
                         ids=lambda a: a["app"])
def test_sockets_reachable_only_by_the_proxy_group(host, app):
    runtime = host.file(f"/run/{app['app']}")
    assert (runtime.user, runtime.group, runtime.mode) == (app["app"], "www-data", 0o750)
    for unit in units_of(app):
        sock = host.file(socket_of(unit))
        assert sock.is_socket and sock.user == app["app"]
        # nginx's user connects; another local user cannot (the directory keeps it out, whatever the socket's mode).
        allowed = host.run(f"runuser -u www-data -- curl -s -o /dev/null -w '%{{http_code}}' "
                           f"--unix-socket {socket_of(unit)} http://localhost/health/")
        assert allowed.stdout == "200"
        denied = host.run(f"runuser -u nobody -- curl -s --unix-socket {socket_of(unit)} http://localhost/health/")
        assert denied.rc == 7 and denied.stdout == ""


@pytest.mark.parametrize("app", [APPS[0], APPS[4], APPS[5]], ids=lambda a: a["app"])
def test_sigkill_of_the_main_process_is_back_serving_within_10s(host, app):
    unit = units_of(app)[0]
    before_pid, before_restarts = prop(host, unit, "MainPID"), int(prop(host, unit, "NRestarts"))
    host.check_output(f"systemctl kill --signal=SIGKILL --kill-whom=main {unit}")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        body = health(host, app, unit)
        if body and prop(host, unit, "MainPID") not in ("0", before_pid):
            break
        time.sleep(0.25)
    else:
        pytest.fail(f"{unit} was not serving again within 10 s of SIGKILL")
    assert int(prop(host, unit, "NRestarts")) == before_restarts + 1


def test_secrets_stay_in_the_env_file(host):
    for app in APPS:
        env = host.file(f"/etc/webstack-test/{app['app']}.env").content_string
        secret = re.search(r"^DJANGO_SECRET_KEY=(.+)$", env, re.MULTILINE).group(1)
        for place in (f"/etc/systemd/system/{app['app']}-blue-*", f"/etc/{app['app']}/", f"/run/{app['app']}/"):
            assert host.run(f"grep -rqsF -- '{secret}' {place}").rc == 1, f"{app['app']}'s secret in {place}"
        assert secret not in host.check_output("ps -eo args")
