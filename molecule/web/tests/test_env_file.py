"""The env file: its permissions, values that reach the app exactly, secrets that show nowhere else."""

from __future__ import annotations

import pytest
from conftest import SECRET, VARS, run_playbook

ENV_FILE = "/etc/shop/shop.env"


def test_env_file_is_root_owned_app_group_0640_in_a_0750_directory(host):
    env_file = host.file(ENV_FILE)
    assert (env_file.user, env_file.group, env_file.mode) == ("root", "shop", 0o640)
    directory = host.file("/etc/shop")
    assert (directory.user, directory.group, directory.mode) == ("root", "shop", 0o750)


def unit_environment(host, unit):
    pid = host.check_output(f"systemctl show --property=MainPID --value {unit}")
    assert int(pid) > 0, f"{unit} is not running"
    raw = host.run(f"base64 -w0 /proc/{pid}/environ")
    assert raw.rc == 0, raw.stderr
    import base64

    environ = {}
    for entry in base64.b64decode(raw.stdout).split(b"\0"):
        if entry:
            name, _, value = entry.decode().partition("=")
            environ[name] = value
    return environ


@pytest.mark.parametrize("unit", ["shop-blue-gunicorn.service", "shop-blue-daphne@1.service"])
def test_every_value_reaches_the_running_app_exactly(host, unit):
    environ = unit_environment(host, unit)
    for name, value in VARS["web_tricky_values"].items():
        assert name in environ, name
        assert environ[name] == value, name
    assert environ["DJANGO_SECRET_KEY"] == SECRET  # the vaulted value, decrypted
    assert environ["DJANGO_DEBUG"] == "false"


def test_secret_is_in_no_unit_file_process_list_or_journal(host):
    assert SECRET not in host.check_output("ps -eo args ww")
    units = host.run("grep -rlF %s /etc/systemd/system /run/systemd/transient", SECRET)
    assert units.rc == 1, units.stdout
    journal = host.run("journalctl --no-pager -q -o cat | grep -cF %s", SECRET)
    assert journal.stdout.strip() == "0"


def test_no_file_but_the_env_files_holds_the_secret(host):
    found = host.run("grep -rlF --exclude-dir=proc %s /etc /srv /var /run /tmp /root", SECRET)
    holders = set(found.stdout.split())
    assert holders <= {ENV_FILE, "/etc/chat/chat.env", "/etc/leakcheck/leakcheck.env"}, holders


@pytest.fixture(scope="module")
def leakcheck_runs():
    """Write leakcheck's env file twice with -vvv --diff, the API token changing in between."""
    first = run_playbook("secrets.yml", {"leakcheck_api_token": "token-one-5b8d2f"}, "-vvv", "--diff")
    second = run_playbook("secrets.yml", {"leakcheck_api_token": "token-two-9c4e1a"}, "-vvv", "--diff")
    return first, second


def test_secrets_show_nowhere_in_verbose_output_or_diff(leakcheck_runs):
    for run in leakcheck_runs:
        assert run.returncode == 0, run.stdout[-3000:]
        output = run.stdout + run.stderr
        for secret in (SECRET, "token-one-5b8d2f", "token-two-9c4e1a"):
            assert secret not in output


def test_diff_names_the_changed_key(leakcheck_runs):
    _, second = leakcheck_runs
    assert "API_TOKEN" in second.stdout
    assert "changed=1" in second.stdout


def test_the_new_value_is_written(host, leakcheck_runs):
    content = host.file("/etc/leakcheck/leakcheck.env").content_string
    assert "token-two-9c4e1a" in content
    assert "token-one-5b8d2f" not in content


def snapshot(host):
    """Path, mode, owner, size and modification time of everything under /etc and /srv."""
    return host.check_output("find /etc /srv -printf '%p %m %u %g %s %T@\\n' | sort | md5sum")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"DJANGO_SETTINGS_MODULE": "x.settings", "DJANGO_ALLOWED_HOSTS": "a"}, "lacks required keys"),
        ({"DJANGO_SECRET_KEY": "", "DJANGO_SETTINGS_MODULE": "x", "DJANGO_ALLOWED_HOSTS": "a"}, "DJANGO_SECRET_KEY"),
        ({"DJANGO_SECRET_KEY": "s-e-c-r-e-t-1", "DJANGO_SETTINGS_MODULE": "x", "DJANGO_ALLOWED_HOSTS": "a",
          "1BAD-NAME": "v"}, "invalid key names"),
        ({"DJANGO_SECRET_KEY": "s-e-c-r-e-t-1", "DJANGO_SETTINGS_MODULE": "x", "DJANGO_ALLOWED_HOSTS": "a",
          "DJANGO_DEBUG": "True"}, "webstack_env_file_allow_debug"),
    ],
    ids=["missing-secret-key", "empty-secret-key", "bad-key-name", "debug-on"],
)
def test_bad_env_values_fail_before_any_change(host, values, message):
    if host.backend.get_hostname() != "web1":
        pytest.skip("the playbook runs on every web server at once; checked from web1")
    before = snapshot(host)
    run = run_playbook("env_bad_input.yml", {"webstack_env_file_values": values})
    assert run.returncode != 0
    assert message in run.stdout
    assert "s-e-c-r-e-t-1" not in run.stdout + run.stderr
    assert not host.file("/etc/badenv/badenv.env").exists
    assert snapshot(host) == before


def test_debug_is_allowed_when_asked_for_explicitly(host):
    if host.backend.get_hostname() != "web1":
        pytest.skip("checked from web1")
    values = {"DJANGO_SECRET_KEY": "s-e-c-r-e-t-2", "DJANGO_SETTINGS_MODULE": "x", "DJANGO_ALLOWED_HOSTS": "a",
              "DJANGO_DEBUG": "1"}
    run = run_playbook("env_bad_input.yml", {"webstack_env_file_values": values, "webstack_env_file_allow_debug": True})
    assert run.returncode == 0, run.stdout[-2000:]
    assert host.file("/etc/badenv/badenv.env").mode == 0o640
    host.run("rm -rf /etc/badenv")
