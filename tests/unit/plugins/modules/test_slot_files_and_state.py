"""The modules deploy_state and slot_files on tmp_path: durable writes, reconcile, recovery, and the copies of a
slot's files that a rollback restores."""

import json
import os

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.webstack.django.plugins.modules import deploy_state, slot_files

BLUE = {"slot": "blue", "release": "r1", "kind": "gunicorn-sync", "server": "gunicorn", "signature": "s1",
        "kinds": ["gunicorn-sync"], "units": ["demo-blue-gunicorn.service"]}
GREEN = {"slot": "green", "release": "r2", "kind": "uvicorn", "server": "uvicorn", "signature": "s2",
         "kinds": ["uvicorn"], "units": ["demo-green-uvicorn.service"]}


def run(module, capsys, args, check_mode=False):
    if check_mode:
        args = dict(args, _ansible_check_mode=True)
    with patch_module_args(args):
        with pytest.raises(SystemExit) as info:
            module.main()
    return info.value.code, json.loads(capsys.readouterr().out)


@pytest.fixture
def host(tmp_path):
    (tmp_path / "nginx").mkdir()
    (tmp_path / "facts").mkdir()
    return tmp_path


def state_args(host, **extra):
    return dict(path=str(host / "facts" / "webstack_demo.fact"), app="demo",
                upstream_file=str(host / "nginx" / "demo.upstream.conf"), runtime_dir="/run/demo",
                store=str(host / "slots"), **extra)


def route(host, slot):
    (host / "nginx" / "demo.upstream.conf").write_text(
        "upstream demo_http {\n    server unix:/run/demo/%s-gunicorn.sock max_fails=0;\n}\n" % slot)


def test_commit_writes_the_state_and_keeps_the_last_good_copy(capsys, host):
    route(host, "blue")
    code, result = run(deploy_state, capsys, state_args(host, action="commit", slot=BLUE))
    assert code == 0 and result["changed"] and result["state"]["active"]["release"] == "r1"
    route(host, "green")
    run(deploy_state, capsys, state_args(host, action="commit", slot=GREEN))
    saved = json.loads((host / "facts" / "webstack_demo.fact").read_text())
    backup = json.loads((host / "facts" / "webstack_demo.fact.bak").read_text())
    assert saved["active"]["release"] == "r2" and saved["previous"]["release"] == "r1"
    assert backup["active"]["release"] == "r1"
    assert oct(os.stat(host / "facts" / "webstack_demo.fact").st_mode & 0o777) == "0o644"
    assert [p.name for p in (host / "facts").iterdir() if p.name.endswith(".tmp")] == []


def test_a_switch_killed_after_nginx_changed_is_completed_by_the_next_read(capsys, host):
    route(host, "blue")
    run(deploy_state, capsys, state_args(host, action="commit", slot=BLUE))
    run(deploy_state, capsys, state_args(host, action="intend", slot=GREEN))
    route(host, "green")  # nginx switched, then the run was killed
    code, result = run(deploy_state, capsys, state_args(host, nginx_reload=False))
    assert result["state"]["active"]["release"] == "r2" and result["routed_slot"] == "green"
    assert result["changed"] and result["messages"]
    on_disk = json.loads((host / "facts" / "webstack_demo.fact").read_text())
    assert on_disk["active"]["release"] == "r2" and "pending" not in on_disk


def test_read_without_write_reports_but_writes_nothing(capsys, host):
    route(host, "blue")
    run(deploy_state, capsys, state_args(host, action="commit", slot=BLUE))
    run(deploy_state, capsys, state_args(host, action="intend", slot=GREEN))
    route(host, "green")
    before = (host / "facts" / "webstack_demo.fact").read_text()
    code, result = run(deploy_state, capsys, state_args(host, write=False))
    assert result["state"]["active"]["release"] == "r2" and not result["changed"]
    assert (host / "facts" / "webstack_demo.fact").read_text() == before


@pytest.mark.parametrize("torn", ["", "{\"active\": {\"slot\": \"bl", "\0\0\0"])
def test_a_torn_state_is_recovered_from_the_backup(capsys, host, torn):
    route(host, "blue")
    run(deploy_state, capsys, state_args(host, action="commit", slot=BLUE))
    route(host, "green")
    run(deploy_state, capsys, state_args(host, action="commit", slot=GREEN))
    (host / "facts" / "webstack_demo.fact").write_text(torn)
    code, result = run(deploy_state, capsys, state_args(host))
    assert code == 0 and result["messages"]
    # The backup holds r1 active; nginx routes to green, the backup's previous... r1 only: kept with a message.
    assert result["state"]["active"]["release"] in ("r1", "r2")
    assert json.loads((host / "facts" / "webstack_demo.fact").read_text())


def test_a_torn_state_without_backup_is_rebuilt_from_nginx_and_the_kept_descriptions(capsys, host, tmp_path):
    root = make_slot(tmp_path / "root", "green", "v1")
    run(slot_files, capsys, files_args(root, host, "green", "s2", action="snapshot", description=GREEN))
    route(host, "green")
    (host / "facts" / "webstack_demo.fact").write_text("")
    code, result = run(deploy_state, capsys, state_args(host))
    assert result["state"]["active"]["release"] == "r2", result


def test_check_mode_writes_nothing(capsys, host):
    route(host, "blue")
    code, result = run(deploy_state, capsys, state_args(host, action="commit", slot=BLUE), check_mode=True)
    assert result["changed"] and not (host / "facts" / "webstack_demo.fact").exists()


def test_maintenance_is_recorded(capsys, host):
    route(host, "blue")
    run(deploy_state, capsys, state_args(host, action="commit", slot=BLUE))
    code, result = run(deploy_state, capsys, state_args(host, action="maintenance", maintenance=True))
    assert result["changed"] and result["state"]["maintenance"] is True
    code, result = run(deploy_state, capsys, state_args(host, action="maintenance", maintenance=True))
    assert not result["changed"]


# --- slot_files ------------------------------------------------------------------------------------------------

def make_slot(root, slot, version):
    (root / "etc" / "systemd" / "system").mkdir(parents=True, exist_ok=True)
    (root / "etc" / "demo").mkdir(parents=True, exist_ok=True)
    (root / "etc" / "systemd" / "system" / ("demo-%s-gunicorn.service" % slot)).write_text("unit %s\n" % version)
    (root / "etc" / "demo" / ("%s-gunicorn.conf.py" % slot)).write_text("conf %s\n" % version)
    env = root / "etc" / "demo" / ("%s.env" % slot)
    env.write_text("SECRET=%s\n" % version)
    os.chmod(env, 0o640)
    return root


def files_args(root, host, slot, name, **extra):
    return dict(app="demo", slot=slot, store=str(host / "slots"), name=name, root=str(root), **extra)


def test_snapshot_then_restore_puts_back_what_a_failed_deploy_rewrote(capsys, host, tmp_path):
    root = make_slot(tmp_path / "root", "blue", "r1")
    make_slot(root, "green", "r2")
    code, result = run(slot_files, capsys, files_args(root, host, "blue", "s1", action="snapshot", description=BLUE))
    assert result["changed"] and result["matches"] and result["kept"]
    assert oct(os.stat(host / "slots").st_mode & 0o777) == "0o700"
    assert oct(os.stat(host / "slots" / "blue-s1.tar").st_mode & 0o777) == "0o600"
    # A failed deploy rewrites blue with another server kind and environment.
    (root / "etc" / "systemd" / "system" / "demo-blue-gunicorn.service").unlink()
    (root / "etc" / "systemd" / "system" / "demo-blue-uvicorn.service").write_text("unit r3\n")
    (root / "etc" / "demo" / "blue.env").write_text("SECRET=bad\n")
    code, result = run(slot_files, capsys, files_args(root, host, "blue", "s1"))
    assert not result["matches"]
    code, result = run(slot_files, capsys, files_args(root, host, "blue", "s1", action="restore"))
    assert result["changed"] and result["matches"]
    assert (root / "etc" / "demo" / "blue.env").read_text() == "SECRET=r1\n"
    assert oct(os.stat(root / "etc" / "demo" / "blue.env").st_mode & 0o777) == "0o640"
    assert not (root / "etc" / "systemd" / "system" / "demo-blue-uvicorn.service").exists()
    assert (root / "etc" / "systemd" / "system" / "demo-blue-gunicorn.service").read_text() == "unit r1\n"
    # The other slot is untouched, and a second restore changes nothing.
    assert (root / "etc" / "demo" / "green.env").read_text() == "SECRET=r2\n"
    code, result = run(slot_files, capsys, files_args(root, host, "blue", "s1", action="restore"))
    assert not result["changed"]
    assert "SECRET" not in json.dumps(result)


def test_restore_without_a_kept_copy_fails(capsys, host, tmp_path):
    root = make_slot(tmp_path / "root", "blue", "r1")
    code, result = run(slot_files, capsys, files_args(root, host, "blue", "nope", action="restore"))
    assert code == 1 and "No kept copy" in result["msg"]


def test_prune_keeps_the_named_copies(capsys, host, tmp_path):
    root = make_slot(tmp_path / "root", "blue", "r1")
    make_slot(root, "green", "r2")
    run(slot_files, capsys, files_args(root, host, "blue", "s1", action="snapshot"))
    run(slot_files, capsys, files_args(root, host, "blue", "s0", action="snapshot"))
    run(slot_files, capsys, files_args(root, host, "green", "s2", action="snapshot"))
    code, result = run(slot_files, capsys, dict(app="demo", store=str(host / "slots"), action="prune",
                                                keep=[BLUE, "green-s2"]))
    assert sorted(result["removed"]) == ["blue-s0.json", "blue-s0.tar"]
    kept = sorted(p.name for p in (host / "slots").iterdir())
    assert kept == ["blue-s1.json", "blue-s1.tar", "green-s2.json", "green-s2.tar"]


@pytest.mark.parametrize("name", ["../x", "a/b", "", "x\n"])
def test_bad_copy_names_are_refused(capsys, host, tmp_path, name):
    code, result = run(slot_files, capsys, files_args(tmp_path, host, "blue", name))
    assert code == 1


def test_an_unfinished_switch_makes_nginx_load_its_include_before_the_reconcile(capsys, host, monkeypatch):
    """A run killed between writing nginx's include and the reload: nginx -t, then a reload, then the reconcile."""
    calls = []

    def fake_run_command(self, args, **kwargs):
        calls.append(args)
        return (1, "", "unexpected [emerg] in demo.upstream.conf") if kwargs.get("_fail") else (0, "", "")

    monkeypatch.setattr(deploy_state.AnsibleModule, "run_command", fake_run_command)
    route(host, "blue")
    run(deploy_state, capsys, state_args(host, action="commit", slot=BLUE))
    run(deploy_state, capsys, state_args(host, action="intend", slot=GREEN))
    assert calls == []  # only a read reloads
    route(host, "green")
    code, result = run(deploy_state, capsys, state_args(host))
    assert calls == [["nginx", "-t"], ["systemctl", "reload", "nginx"]]
    assert result["state"]["active"]["release"] == "r2" and result["changed"]
    code, result = run(deploy_state, capsys, state_args(host))
    assert len(calls) == 2  # nothing pending any more


def test_an_unfinished_switch_with_a_configuration_nginx_refuses_changes_nothing(capsys, host, monkeypatch):
    monkeypatch.setattr(deploy_state.AnsibleModule, "run_command",
                        lambda self, args, **kwargs: (1, "", "[emerg] unexpected end of file"))
    route(host, "blue")
    run(deploy_state, capsys, state_args(host, action="commit", slot=BLUE))
    run(deploy_state, capsys, state_args(host, action="intend", slot=GREEN))
    before = (host / "facts" / "webstack_demo.fact").read_text()
    code, result = run(deploy_state, capsys, state_args(host))
    assert code == 1 and "nginx refuses" in result["msg"] and "unexpected end of file" in result["msg"]
    assert (host / "facts" / "webstack_demo.fact").read_text() == before
