"""Changes to a live nginx: refused ones leave it serving, accepted ones take effect gracefully."""

from __future__ import annotations

import json

import pytest
from conftest import address_of, request, run_playbook

# Every file and link (not directories, whose times change with the backups made and
# removed on the way): path, mode, owner, size, time, and each file's content.
SNAPSHOT = "find /etc/nginx /etc/systemd/system ! -type d -printf '%p %m %u %g %s %T@ %l\\n' | sort | md5sum; " \
           "find /etc/nginx /etc/systemd/system -type f -exec md5sum {} + | sort | md5sum"


def nginx_state(host):
    return host.check_output(SNAPSHOT), host.check_output("systemctl show --property=MainPID --value nginx")


def shop_health(name):
    response = request("shop.test", "/health/", https=True, address=address_of(name))
    return response.status, (json.loads(response.body) if response.status == 200 else None)


@pytest.fixture()
def web_hosts(lab_hosts):
    return lab_hosts


def test_invalid_directive_fails_the_play_and_changes_nothing(web_hosts):
    before = {name: nginx_state(host) for name, host in web_hosts.items()}
    run = run_playbook("nginx_shop.yml", {"webstack_nginx_extra_directives": ["no_such_directive on;"]})
    assert run.returncode != 0
    assert "nginx refused the new configuration of shop" in run.stdout
    assert 'unknown directive "no_such_directive"' in run.stdout
    for name, host in web_hosts.items():
        assert nginx_state(host) == before[name], f"{name}: /etc/nginx or nginx's PID changed"
        assert host.run("ls /etc/nginx/sites-available/ | grep -c '~$'").stdout.strip() == "0", "backups left"
        assert shop_health(name)[0] == 200


def test_a_broken_slot_include_is_rolled_back_too(web_hosts):
    before = {name: nginx_state(host) for name, host in web_hosts.items()}
    # The port passes the role's checks (five digits) but not nginx's.
    run = run_playbook("nginx_shop.yml", {"nginx_entry_point": "switch", "webstack_nginx_backends": ["127.0.0.1:99999"]})
    assert run.returncode != 0
    assert "nginx refused the new configuration of shop" in run.stdout
    for name, host in web_hosts.items():
        assert nginx_state(host) == before[name]
        assert shop_health(name)[1]["server"] == "gunicorn-sync"


def test_switch_moves_shop_to_the_green_slot_and_back(web_hosts):
    run = run_playbook("nginx_shop.yml", {"nginx_entry_point": "switch",
                                          "webstack_nginx_backends": ["unix:/run/shop/green-uvicorn.sock"]})
    assert run.returncode == 0, run.stdout[-3000:]
    try:
        for name, host in web_hosts.items():
            status, body = shop_health(name)
            assert (status, body["server"], body["slot"]) == (200, "uvicorn", "green")
            include = host.file("/etc/nginx/webstack/shop.upstream.conf").content_string
            assert "green-uvicorn.sock" in include and "blue-gunicorn.sock" not in include
    finally:
        back = run_playbook("nginx_shop.yml", {"nginx_entry_point": "switch"})
        assert back.returncode == 0, back.stdout[-3000:]
    for name in web_hosts:
        assert shop_health(name)[1]["server"] == "gunicorn-sync"


def test_maintenance_mode_answers_503_with_retry_after_and_passes_health(web_hosts):
    run = run_playbook("nginx_shop.yml", {"webstack_nginx_maintenance": True})
    assert run.returncode == 0, run.stdout[-3000:]
    try:
        for name in web_hosts:
            page = request("shop.test", "/", https=True, address=address_of(name))
            assert page.status == 503
            assert page.header("retry-after") == "120"
            assert b"Down for maintenance" in page.body
            assert shop_health(name)[0] == 200
            assert request("shop.test", "/static/pulse/site.css", https=True, address=address_of(name)).status == 200
    finally:
        back = run_playbook("nginx_shop.yml")
        assert back.returncode == 0, back.stdout[-3000:]
    for name in web_hosts:
        assert request("shop.test", "/", https=True, address=address_of(name)).status == 200


@pytest.mark.parametrize(
    ("extra_vars", "message"),
    [
        ({"webstack_nginx_bogus": 1}, "Unknown option(s) webstack_nginx_bogus"),
        ({"webstack_nginx_backends": ["/run/shop/blue-gunicorn.sock"]}, "webstack_nginx_backends must list"),
        ({"webstack_nginx_server_names": ["shop.test; return 200"]}, "webstack_nginx_server_names must list"),
        ({"webstack_nginx_tls_certificate_key": ""}, "must be given together"),
        ({"webstack_nginx_client_max_body_size": "lots"}, "webstack_nginx_client_max_body_size"),
        ({"webstack_nginx_hsts_max_age": "forever"}, "webstack_nginx_hsts_max_age"),
        ({"webstack_nginx_websocket_paths": ["ws"]}, "webstack_nginx_websocket_paths"),
    ],
    ids=["unknown-option", "backend-without-unix-prefix", "directive-injection", "cert-without-key",
         "body-size", "hsts-type", "websocket-path"],
)
def test_bad_nginx_options_fail_before_any_change(web_hosts, extra_vars, message):
    before = {name: nginx_state(host) for name, host in web_hosts.items()}
    run = run_playbook("nginx_shop.yml", extra_vars)
    assert run.returncode != 0
    assert message in run.stdout
    for name, host in web_hosts.items():
        assert nginx_state(host) == before[name]
