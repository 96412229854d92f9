"""Bad options stop the play before anything changes on the host, naming the option."""

import pytest
from conftest import run_playbook

STATE = ("find /etc/systemd/system /etc/tmpfiles.d /etc/badinput /run/badinput -xdev 2>/dev/null "
         "| sort | xargs -r md5sum 2>/dev/null; getent passwd badinput; getent group badinput; true")

CASES = [
    ("gunicorn", {"webstack_gunicorn_worker_class": "bogus"}, "webstack_gunicorn_worker_class"),
    ("gunicorn", {"webstack_gunicorn_workers": -1}, "webstack_gunicorn_workers must be 1 or more"),
    ("gunicorn", {"webstack_gunicorn_workers": "many"}, "webstack_gunicorn_workers"),
    ("gunicorn", {"webstack_gunicorn_wokers": 3}, "Unknown option(s) webstack_gunicorn_wokers"),
    ("uvicorn", {"webstack_uvicorn_loop": "trio"}, "webstack_uvicorn_loop"),
    ("uvicorn", {"webstack_uvicorn_timeout_graceful_shutdown": 0}, "webstack_uvicorn_timeout_graceful_shutdown"),
    ("daphne", {"webstack_daphne_instances": 0}, "webstack_daphne_instances must be within 1-64"),
    ("daphne", {"webstack_django_slot": "purple"}, "webstack_django_slot"),
    ("daphne", {"webstack_django_user": "root"}, "webstack_django_user must be a dedicated account"),
    ("gunicorn", {"webstack_django_release_dir": "relative/path"}, "webstack_django_release_dir must be an absolute"),
]


@pytest.mark.parametrize(("role", "options", "message"), CASES, ids=[f"{r}-{list(o)[0]}" for r, o, _ in CASES])
def test_bad_option_fails_before_any_change(web1, role, options, message):
    before = web1.check_output(STATE)
    result = run_playbook("bad_input.yml", {"bad_role": role, "webstack_django_app": "badinput", **options})
    assert result.returncode != 0
    assert message in result.stdout, result.stdout[-3000:]
    assert web1.check_output(STATE) == before


def test_app_name_is_checked(web1):
    result = run_playbook("bad_input.yml", {"bad_role": "gunicorn", "webstack_django_app": "Bad App"})
    assert result.returncode != 0
    assert "webstack_django_app must match" in result.stdout
