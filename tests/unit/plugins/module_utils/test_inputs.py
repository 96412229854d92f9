"""Tests of plugins/module_utils/inputs.py: the allowlists every input that reaches a host must pass.

Every check refuses a trailing newline (a pattern ending in $ would accept it), CR, '..' and '.' components where
they matter, '%' where systemd would expand it.
"""

import sys
from pathlib import Path

import pytest

try:
    from ansible_collections.webstack.django.plugins.module_utils import inputs
except ImportError:  # run from the checkout: the collection is linked at .collections/ (make venv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[4] / ".collections"))
    from ansible_collections.webstack.django.plugins.module_utils import inputs


def cases(good, bad):
    return [pytest.param(v, True, id="ok-" + repr(v)) for v in good] + [
        pytest.param(v, False, id="bad-" + repr(v)) for v in bad]


@pytest.mark.parametrize("value, ok", cases(
    ["r1", "R1", "0", "20240101.1", "a" * 64, "v1.2.3-rc_1", "abc...", 42, "3f1c0e5b9d2a"],
    ["", ".", "..", "r1\n", "r1\r", "\nr1", "r 1", "-r1", ".r1", "_r1", "a" * 65, "r1/x", "r1%", "r%i",
     "../x", "r1\t", "ré", True, None, 1.5, ["r1"], {"r1": 1}]))
def test_release_id(value, ok):
    assert inputs.is_release_id(value) is ok


@pytest.mark.parametrize("value, ok", cases(
    ["shop", "a", "shop-2", "a" * 31, "demo", "chat"],
    ["", "Shop", "shop\n", "shop\r", "2shop", "-shop", "shop_x", "a" * 32, "shop app", "shop.x", "systemd",
     "ssl", "nginx", "default", "user", "lock", None, 1]))
def test_app_name(value, ok):
    assert inputs.is_app_name(value) is ok


@pytest.mark.parametrize("value, ok", cases(
    ["shop", "www-data", "_apt", "a" * 32, "shop_2", "root"],
    ["", "Shop", "shop\n", "shop\r", "1shop", "-shop", "a" * 33, "shop app", "shop$", "sh%op", "shop:x", None, 0]))
def test_account_name(value, ok):
    assert inputs.is_account_name(value) is ok


@pytest.mark.parametrize("value, ok", cases(
    ["A", "_", "DJANGO_SETTINGS_MODULE", "a1", "_x_"],
    ["", "A\n", "A\r", "\nA", "1A", "A-B", "A B", "A=B", "É", "A\tB", "export A", None, 1]))
def test_env_name(value, ok):
    assert inputs.is_env_name(value) is ok


@pytest.mark.parametrize("value, ok", cases(
    ["", "x", "a value with spaces", "100%", "%h", "$HOME", "it's", "ünïcödé ✓", 4, 1.5, "a=b;c#d"],
    ["x\n", "x\r", "x\r\n", "\n", "x\tY", "x\nExecStartPre=+/bin/sh", 'x"', "x\\", "\x7f", "\x85", "\x00",
     "\ufffe", "\ud800", None, True, ["x"], {"x": 1}]))
def test_env_value(value, ok):
    assert inputs.is_env_value(value) is ok


@pytest.mark.parametrize("value, ok", cases(
    ["/", "/srv/shop", "/srv/shop/", "/var/lib/shop/media", "/srv/a.b/c_d/e-f/g@h/i+j", "/srv/...",
     "/srv/.hidden", "/srv/shop..x", "/" + "a" * 4094],
    ["", "srv/shop", "/srv/x\n", "/srv/x\r", "/srv/\nx", "/srv/x\t", "/srv/x y", "/srv/%h", "/srv/x%",
     "/srv/..", "/srv/../etc", "/..", "/.", "/srv/./x", "/srv//x", "//srv", "/srv/x//", "/srv/x;", '/srv/"x"',
     "/srv/'x'", "/srv/$x", "/srv/#x", "/srv/x,y", "/srv/x:y", "/srv/é", "/" + "a" * 4095, None, 1, ["/srv"]]))
def test_safe_path(value, ok):
    assert inputs.is_safe_path(value) is ok


@pytest.mark.parametrize("value, ok", cases(
    ["media", "requirements.txt", "requirements/prod.txt", "a/b/c", ".env", "x..y"],
    ["", "/media", "../media", "media/..", "a/../b", ".", "./media", "a//b", "a/", "media\n", "me dia", "m%",
     None]))
def test_relative_path(value, ok):
    assert inputs.is_relative_path(value) is ok


SYSTEM = ["/", "//", "/bin", "/boot", "/dev", "/etc", "/etc/", "/home", "/lib", "/lib64", "/lib32", "/libx32",
          "/opt", "/proc", "/root", "/run", "/sbin", "/srv", "/srv/", "/sys", "/tmp", "/usr", "/usr/local",
          "/usr/share", "/var", "/var/lib", "/var/lib/", "/var/log", "/var/cache", "/var/tmp", "/var/www",
          "/run/systemd", "/run/user", "/proc/sys", "/sys/kernel", "/dev/shm", "/boot/efi", "/etc/systemd/system",
          "/etc/ssl/private", "/etc/nginx/sites-enabled", "/usr/lib/x", "/lib/systemd", "/srv/shop/../../etc",
          "/srv/..", "relative", "", None]
OWN = ["/srv/shop", "/srv/shop/media", "/var/lib/shop", "/var/lib/shop/", "/var/cache/webstack/pip",
       "/opt/shop", "/home/shop", "/etc/shop", "/data", "/tmp/shop", "/var/log/shop"]


@pytest.mark.parametrize("value, ok", cases(SYSTEM, OWN))
def test_system_dir(value, ok):
    assert inputs.is_system_dir(value) is ok


@pytest.mark.parametrize("value, ok", cases(
    OWN,
    SYSTEM + ["/var/lib/x\n", "/var/lib/shop%", "/var/lib/sh op"]))
def test_writable_path(value, ok):
    assert inputs.is_writable_path(value) is ok


@pytest.mark.parametrize("value, ok", cases(
    ["/etc/shop/shop.env", "/etc/shop/blue.env", "/etc/webstack-test/wsync.env", "/etc/my_app/x", "/etc/Shop/x"],
    ["", "/etc/shop.env", "/etc/shop/", "/etc/shop", "/etc/shop/sub/x.env", "/srv/shop/shop.env",
     "/etc/ssl/shop.env", "/etc/systemd/shop.env", "/etc/nginx/shop.env", "/etc/default/shop", "/etc/SSL/x",
     "/etc/cron.d/shop", "/etc/sudoers.d/shop", "/etc/profile.d/shop.sh", "/etc/shop/shop.env\n",
     "/etc/shop/../ssl/x", "/etc/shop/%h.env", "/etc/shop/a b", "etc/shop/x", None]))
def test_env_file_path(value, ok):
    assert inputs.is_env_file_path(value) is ok


def test_env_file_path_problem_names_the_directory():
    assert "/etc/ssl/" in inputs.env_file_path_problem("/etc/ssl/shop.env")
    assert inputs.env_file_path_problem("/etc/shop/shop.env") is None


@pytest.mark.parametrize("value, parent, ok", [
    ("/srv/shop/releases/r1", "/srv/shop/releases", True),
    ("/srv/shop/releases/r1", "/srv/shop/releases/", True),
    ("/srv/shop//releases/r1", "/srv/shop/releases", True),
    ("/srv/shop/releases/r1/", "/srv/shop/releases", True),
    ("/srv/shop/releases/..", "/srv/shop/releases", False),
    ("/srv/shop/releases/.", "/srv/shop/releases", False),
    ("/srv/shop/releases/", "/srv/shop/releases", False),
    ("/srv/shop/releases", "/srv/shop/releases", False),
    ("/srv/shop", "/srv/shop/releases", False),
    ("/srv/shop/releases/r1/x", "/srv/shop/releases", False),
    ("/srv/shop/releases/../releases/r1", "/srv/shop/releases", False),
    ("/srv/shop/releases/r1", "/srv/shop/../shop/releases", False),
    ("/srv/shop/releases/r1\n", "/srv/shop/releases", False),
    ("/srv/shop/releases/r%i", "/srv/shop/releases", False),
    ("/srv/other/releases/r1", "/srv/shop/releases", False),
    ("/srv/shop/releasesX/r1", "/srv/shop/releases", False),
    ("srv/shop/releases/r1", "srv/shop/releases", False),
    (None, "/srv/shop/releases", False),
    ("/srv/shop/releases/r1", None, False),
])
def test_child_of(value, parent, ok):
    assert inputs.is_child_of(value, parent) is ok


@pytest.mark.parametrize("value, ok", cases(
    ["shop", "_x", "Shop2"], ["", "shop\n", "shop-site", "shop.site", "2shop", None]))
def test_python_identifier(value, ok):
    assert inputs.is_python_identifier(value) is ok


@pytest.mark.parametrize("value, ok", cases(
    ["shop.asgi:application", "shop.wsgi:application", "a:b", "a.b.c:d.e"],
    ["", "shop.asgi", "shop.asgi:application\n", "shop.asgi:application --reload", "shop.asgi:app%i",
     "shop.asgi:application()", "-m:x", ":x", "x:", None]))
def test_app_module(value, ok):
    assert inputs.is_app_module(value) is ok


@pytest.mark.parametrize("value, ok", cases(
    ["*", "127.0.0.1", "127.0.0.1,::1", "10.0.0.0/8,fd00::/8", "::1"],
    ["", "127.0.0.1\n", "127.0.0.1, ::1", "127.0.0.1,", ",::1", "* ", "127.0.0.1 --reload", "localhost",
     "127.0.0.1\r", "%i", None]))
def test_ip_list(value, ok):
    assert inputs.is_ip_list(value) is ok


@pytest.mark.parametrize("value, ok", cases(
    ["/", "/health/", "/ws/", "/a-b_c.d~e/"],
    ["", "health", "/health/\n", "/x; return 200", "/x{", "/x y", "/x?y=1", "/x#y", "/x$y", "/x'", None]))
def test_url_path(value, ok):
    assert inputs.is_url_path(value) is ok


@pytest.mark.parametrize("value, ok", [("/ws/echo/?room=1&x=y", True), ("/ws/echo/", True), ("/ws/?a b", False),
                                       ("/ws/?a\n", False), ("/ws/?a;b", False)])
def test_url_path_with_query(value, ok):
    assert inputs.is_url_path(value, query=True) is ok


@pytest.mark.parametrize("value, ok", cases(
    ["localhost", "shop.example.com", "shop.test:8443", "127.0.0.1", "[::1]", "[::1]:8443", "example.com."],
    ["", "shop.test\n", "shop.test\r\nX-Injected: 1", "shop test", "-shop.test", "shop-.test", "shop..test",
     "shop.test:", "a" * 64 + ".test", "::1", None]))
def test_host_name(value, ok):
    assert inputs.is_host_name(value) is ok


@pytest.mark.parametrize("value, escaped", [("", ""), ("plain", "plain"), ("100%", "100%%"), ("%h%%", "%%h%%%%"),
                                            (4, "4"), ("it's $HOME", "it's $HOME")])
def test_systemd_escape_value(value, escaped):
    assert inputs.systemd_escape_value(value) == escaped


@pytest.mark.parametrize("value", ["x\n", "x\r", "x\nExecStartPre=+/bin/sh -c id", "a\tb", 'x"', "x\\", None,
                                   True, ["x"]])
def test_systemd_escape_value_refuses_and_never_quotes_the_value(value):
    with pytest.raises(ValueError) as error:
        inputs.systemd_escape_value(value)
    if isinstance(value, str) and value.strip():
        assert value.strip() not in str(error.value)
