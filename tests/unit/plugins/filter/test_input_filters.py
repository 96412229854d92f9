"""Tests of the filter plugins in plugins/filter/inputs.py (systemd_escape_value)."""

import sys
from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleFilterError

ROOT = Path(__file__).resolve().parents[4]
try:
    from ansible_collections.webstack.django.plugins.filter.inputs import FilterModule
except ImportError:  # run from the checkout: the collection is linked at .collections/ (make venv)
    sys.path.insert(0, str(ROOT / ".collections"))
    from ansible_collections.webstack.django.plugins.filter.inputs import FilterModule

FILTERS = FilterModule().filters()


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_every_filter_is_documented(name):
    doc = yaml.safe_load((ROOT / "plugins" / "filter" / f"{name}.yml").read_text())
    assert set(doc) == {"DOCUMENTATION", "EXAMPLES", "RETURN"}
    assert doc["DOCUMENTATION"]["name"] == name
    assert f"webstack.django.{name}" in doc["EXAMPLES"]


@pytest.mark.parametrize("value, escaped", [
    ("plain", "plain"),
    ("100% sure", "100%% sure"),
    ("%h/%i/%%", "%%h/%%i/%%%%"),
    ("", ""),
    (8000, "8000"),
    ("spaces and 'single' quotes, $HOME", "spaces and 'single' quotes, $HOME"),
])
def test_systemd_escape_value(value, escaped):
    assert FILTERS["systemd_escape_value"](value) == escaped


@pytest.mark.parametrize("value", [
    "x\n",
    "x\r",
    "x\r\n",
    "x\nExecStartPre=+/bin/sh -c 'id > /tmp/pwned'",
    "tab\there",
    'quote"',
    "back\\slash",
    None,
    ["x"],
], ids=repr)
def test_systemd_escape_value_refuses(value):
    with pytest.raises(AnsibleFilterError, match="systemd_escape_value"):
        FILTERS["systemd_escape_value"](value)
