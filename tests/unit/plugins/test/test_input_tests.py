"""Tests of the test plugins in plugins/test/inputs.py: every test is there, documented, and refuses what the
issue's inputs broke (trailing newlines, CR, '..', '.', '%', '/' as a writable path)."""

import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[4]
try:
    from ansible_collections.webstack.django.plugins.test.inputs import TestModule as InputTests
except ImportError:  # run from the checkout: the collection is linked at .collections/ (make venv)
    sys.path.insert(0, str(ROOT / ".collections"))
    from ansible_collections.webstack.django.plugins.test.inputs import TestModule as InputTests

TESTS = InputTests().tests()
NAMES = sorted(TESTS)


def test_every_test_of_the_plugin_has_a_doc_file_and_no_doc_file_is_orphaned():
    docs = {path.stem for path in (ROOT / "plugins" / "test").glob("*.yml")}
    mine = {name for name in docs if name in TESTS}
    assert mine == set(TESTS)


@pytest.mark.parametrize("name", NAMES)
def test_doc_file_is_complete(name):
    doc = yaml.safe_load((ROOT / "plugins" / "test" / f"{name}.yml").read_text())
    assert set(doc) == {"DOCUMENTATION", "EXAMPLES", "RETURN"}
    assert doc["DOCUMENTATION"]["name"] == name
    assert doc["DOCUMENTATION"]["short_description"] and doc["DOCUMENTATION"]["description"]
    assert doc["DOCUMENTATION"]["options"]["_input"]["required"] is True
    assert doc["RETURN"]["_value"]["type"] == "boolean"
    assert f"webstack.django.{name}" in doc["EXAMPLES"]


# (test, value, expected): the inputs and their neighbours.
CASES = [
    ("release_id", "r1", True),
    ("release_id", "..", False),
    ("release_id", ".", False),
    ("release_id", "r1\n", False),
    ("release_id", "r1\r", False),
    ("app_name", "shop", True),
    ("app_name", "shop\n", False),
    ("account_name", "shop", True),
    ("account_name", "shop\n", False),
    ("env_name", "A", True),
    ("env_name", "A\n", False),
    ("env_value", "100%", True),
    ("env_value", "x\nExecStartPre=+/bin/sh", False),
    ("env_value", "x\r", False),
    ("safe_path", "/srv/x", True),
    ("safe_path", "/srv/x\n", False),
    ("safe_path", "/srv/x\r", False),
    ("safe_path", "/srv/..", False),
    ("safe_path", "/srv/.", False),
    ("safe_path", "/srv/%h", False),
    ("child_of", "/srv/shop/releases/r1", True),
    ("child_of", "/srv/shop/releases/..", False),
    ("child_of", "/srv/shop/releases/.", False),
    ("relative_path", "media", True),
    ("relative_path", "../media", False),
    ("system_dir", "/", True),
    ("system_dir", "/srv/shop", False),
    ("writable_path", "/var/lib/shop", True),
    ("writable_path", "/", False),
    ("writable_path", "/var/lib", False),
    ("writable_path", "/var/lib/shop\n", False),
    ("env_file_path", "/etc/shop/shop.env", True),
    ("env_file_path", "/etc/ssl/shop.env", False),
    ("env_file_path", "/etc/shop/shop.env\n", False),
    ("python_identifier", "shop", True),
    ("python_identifier", "shop\n", False),
    ("app_module", "shop.asgi:application", True),
    ("app_module", "shop.asgi:application\n", False),
    ("ip_list", "127.0.0.1,::1", True),
    ("ip_list", "127.0.0.1\n", False),
    ("url_path", "/health/", True),
    ("url_path", "/health/\n", False),
    ("host_name", "shop.test", True),
    ("host_name", "shop.test\r\n", False),
]


def test_the_cases_cover_every_test():
    assert {case[0] for case in CASES} == set(TESTS)


@pytest.mark.parametrize("name, value, expected", CASES, ids=[f"{case[0]}-{case[1]!r}" for case in CASES])
def test_plugin_test(name, value, expected):
    args = ("/srv/shop/releases",) if name == "child_of" else ()
    assert TESTS[name](value, *args) is expected
