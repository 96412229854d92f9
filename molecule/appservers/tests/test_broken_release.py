"""A release that cannot serve is refused or stopped; it never crash-loops."""

import time

import pytest
from conftest import run_playbook

ROLES = ["gunicorn", "uvicorn", "daphne"]
UNITS = {"gunicorn": "{app}-blue-gunicorn.service", "uvicorn": "{app}-blue-uvicorn.service",
         "daphne": "{app}-blue-daphne@1.service"}


def show(host, unit, prop):
    return host.check_output(f"systemctl show -p {prop} --value {unit}")


@pytest.mark.parametrize("role", ROLES)
def test_a_release_that_fails_to_import_is_refused_before_its_unit_starts(web1, role):
    unit = UNITS[role].format(app=f"broken{role}")
    result = run_playbook("broken.yml", {"broken_role": role, "broken_release": "brokenapp"})
    assert result.returncode != 0
    assert "ImportError" in result.stdout and "this release cannot start" in result.stdout
    unit_file = unit.replace("@1", "@")
    assert not web1.file(f"/etc/systemd/system/{unit_file}").exists
    assert not web1.service(unit).is_running


@pytest.mark.parametrize("role", ROLES)
def test_a_release_that_crashes_when_served_ends_stopped_not_looping(web1, role):
    unit = UNITS[role].format(app=f"crash{role}")
    result = run_playbook("broken.yml", {"broken_role": role, "broken_release": "crashapp"})
    assert result.returncode != 0
    assert f"{unit} did not serve /health/" in result.stdout
    assert "this release crashes when served" in result.stdout, "the failure shows the unit's journal"
    restarts = show(web1, unit, "NRestarts")
    assert show(web1, unit, "ActiveState") in ("failed", "inactive")
    time.sleep(3)
    assert show(web1, unit, "ActiveState") in ("failed", "inactive")
    assert show(web1, unit, "NRestarts") == restarts
    assert int(restarts) <= 5


def test_gunicorn_units_never_retry_exit_codes_that_mean_the_release_cannot_run(host):
    # gunicorn exits 3 when a worker cannot boot and 4 when the application cannot load.
    prevent = show(host, "wsync-blue-gunicorn.service", "RestartPreventExitStatus")
    assert set(prevent.split()) >= {"3", "4"}
