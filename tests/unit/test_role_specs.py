"""Argument specs are the single source of the roles' options: keep them and defaults/main.yml true."""

from pathlib import Path

import pytest
import yaml

ROLES = Path(__file__).resolve().parents[2] / "roles"
SERVER_ROLES = ["gunicorn", "uvicorn", "daphne"]
SHARED_PREFIX = "webstack_django_"


def spec(role, entry="main"):
    return yaml.safe_load((ROLES / role / "meta" / "argument_specs.yml").read_text())["argument_specs"][entry]


def defaults(role):
    return yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text()) or {}


def shared(options):
    return {name: value for name, value in options.items() if name.startswith(SHARED_PREFIX)}


@pytest.mark.parametrize("role", SERVER_ROLES)
def test_server_roles_document_the_shared_options_exactly_as_appserver(role):
    assert shared(spec(role)["options"]) == spec("_appserver")["options"]


def test_appserver_unit_entry_point_takes_the_shared_options():
    assert spec("_appserver", "unit")["options"] == spec("_appserver")["options"]


@pytest.mark.parametrize("role", ["_appserver", *SERVER_ROLES])
def test_defaults_mirror_the_spec(role):
    options = spec(role)["options"]
    own_prefix = SHARED_PREFIX if role == "_appserver" else f"webstack_{role}_"
    own = {name: option for name, option in options.items() if name.startswith(own_prefix)}
    values = defaults(role)
    for name, option in own.items():
        if option.get("required"):
            assert name not in values, f"{role}: required option {name} must have no default"
        else:
            assert name in values, f"{role}: {name} is in the spec but not in defaults/main.yml"
            assert values[name] == option["default"], f"{role}: {name} default differs between spec and defaults"
    assert set(values) <= set(own), f"{role}: defaults/main.yml has options the spec lacks: {set(values) - set(own)}"


@pytest.mark.parametrize("role", SERVER_ROLES)
def test_every_option_is_described(role):
    for name, option in spec(role)["options"].items():
        assert option.get("description"), f"{role}: {name} has no description"
        assert option.get("type"), f"{role}: {name} has no type"


def test_role_docs_are_generated_from_the_current_specs():
    import subprocess
    import sys

    tool = ROLES.parent / "tools" / "role_docs.py"
    result = subprocess.run([sys.executable, str(tool), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
