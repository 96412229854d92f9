"""Tests of webstack.django.deploy_lock on tmp_path: taking, refusing, taking over, releasing, and races.

The host's boot id comes from a file of the test's own (WEBSTACK_DEPLOY_LOCK_BOOT_ID_FILE), so a test can play a
host that booted again. The races run the module's functions in forked processes released together by a barrier.
"""

import fcntl
import importlib.util
import json
import multiprocessing
import os
import stat
import time
from pathlib import Path

import pytest
from ansible.module_utils.testing import patch_module_args

MODULE_PATH = Path(__file__).resolve().parents[4] / "plugins" / "modules" / "deploy_lock.py"


def _load_module():
    spec = importlib.util.spec_from_file_location("deploy_lock", MODULE_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


dl = _load_module()

BOOT = "11111111-2222-4333-8444-555555555555"
OLD_BOOT = "99999999-8888-4777-8666-555555555555"
HOLDER = "deploy by alice@laptop since 2026-01-01T12:00:00Z"
OTHER = "rollback by bob@desk since 2026-01-01T12:01:00Z"


@pytest.fixture(autouse=True)
def boot_id(tmp_path, monkeypatch):
    path = tmp_path / "boot_id"
    path.write_text(BOOT + "\n")
    monkeypatch.setenv(dl.BOOT_ID_FILE_ENV, str(path))
    return path


@pytest.fixture
def lock(tmp_path):
    directory = tmp_path / "var" / "lib" / "webstack"
    directory.mkdir(parents=True)
    return directory / "demo.lock"


def line(holder, run_id, boot):
    return "%s run %s boot %s\n" % (holder, run_id, boot)


def leftovers(path):
    return sorted(name for name in os.listdir(path.parent) if name != path.name)


def run_main(capsys, args, check_mode=False):
    args = dict(args)
    args["_ansible_check_mode"] = check_mode
    with patch_module_args(args):
        with pytest.raises(SystemExit) as info:
            dl.main()
    return info.value.code, json.loads(capsys.readouterr().out)


@pytest.fixture
def warned(monkeypatch):
    """The texts the module passes to AnsibleModule.warn.

    Recorded at the call: whether ansible-core returns them in the result depends on what else the test session
    imported (controller code sends them to its display instead).
    """
    texts = []
    original = dl.AnsibleModule.warn

    def warn(self, warning, *args, **kwargs):
        texts.append(warning)
        return original(self, warning, *args, **kwargs)

    monkeypatch.setattr(dl.AnsibleModule, "warn", warn)
    return texts


# --- the boot id and the lock line -------------------------------------------------------------------------------

def test_boot_id_comes_from_the_file_the_environment_names(boot_id):
    assert dl.read_boot_id() == BOOT
    boot_id.write_text(OLD_BOOT)
    assert dl.read_boot_id() == OLD_BOOT


def test_boot_id_defaults_to_the_kernel_file(monkeypatch):
    monkeypatch.delenv(dl.BOOT_ID_FILE_ENV)
    assert dl.BOOT_ID_FILE == "/proc/sys/kernel/random/boot_id"
    if os.path.exists(dl.BOOT_ID_FILE):
        assert dl.read_boot_id() == Path(dl.BOOT_ID_FILE).read_text().strip()


@pytest.mark.parametrize("content", ["", "\n", "two words\n"])
def test_a_missing_or_bad_boot_id_is_an_error(boot_id, content):
    boot_id.write_text(content)
    with pytest.raises(dl.LockError):
        dl.read_boot_id()
    boot_id.unlink()
    with pytest.raises(dl.LockError, match="cannot read the boot id"):
        dl.read_boot_id()


def test_run_ids_are_unique_and_valid():
    ids = {dl.make_run_id() for _index in range(1000)}
    assert len(ids) == 1000
    assert all(dl.RUN_ID_RE.fullmatch(run_id) for run_id in ids)


def test_lock_line_is_one_line():
    assert dl.lock_line("deploy by a@b\nsince\r\n t", "r1", BOOT) == "deploy by a@b since t run r1 boot %s\n" % BOOT
    assert dl.lock_line(" \n", "r1", BOOT) == "unknown run r1 boot %s\n" % BOOT


@pytest.mark.parametrize("text, parsed", [
    (line(HOLDER, "r1", BOOT), ("r1", BOOT)),
    (line(HOLDER, "r1", BOOT).rstrip("\n"), ("r1", BOOT)),
    # A holder that itself looks like a lock line: the last " run X boot Y" counts.
    (line("odd run r0 boot b0", "r1", BOOT), ("r1", BOOT)),
    # Written by earlier versions of the collection.
    ("%s boot %s\n" % (HOLDER, OLD_BOOT), (None, OLD_BOOT)),
    ("deploy by someone@elsewhere since 2026-01-01T00:00:00Z\n", None),
    ("", None),
    ("\n", None),
    (line(HOLDER, "r1", BOOT) + "garbage\n", None),
    ("%s run r1 boot %s\r\n" % (HOLDER, BOOT), None),
])
def test_parse_lock(text, parsed):
    assert dl.parse_lock(text) == parsed


# --- taking the lock ---------------------------------------------------------------------------------------------

def test_the_first_taker_wins_and_a_second_run_is_refused_with_the_holder_and_age(lock):
    first = dl.acquire(str(lock), HOLDER, "run-1")
    assert (first["rc"], first["outcome"], first["locked"]) == (0, "taken", True)
    assert lock.read_text() == line(HOLDER, "run-1", BOOT)
    assert first["holder"] == line(HOLDER, "run-1", BOOT).rstrip("\n")
    assert stat.S_IMODE(lock.stat().st_mode) == 0o644
    assert leftovers(lock) == []

    past = time.time() - 125
    os.utime(lock, (past, past))
    second = dl.acquire(str(lock), OTHER, "run-2")
    assert (second["rc"], second["outcome"], second["locked"]) == (75, "held", False)
    assert second["holder"] == "%s run run-1 boot %s" % (HOLDER, BOOT)
    assert 125 <= second["age"] < 135
    assert second["previous_holder"] is None
    assert lock.read_text() == line(HOLDER, "run-1", BOOT)
    assert leftovers(lock) == []


def test_the_same_run_taking_it_again_holds_it(lock):
    dl.acquire(str(lock), HOLDER, "run-1")
    again = dl.acquire(str(lock), HOLDER, "run-1")
    assert (again["rc"], again["outcome"], again["locked"]) == (0, "already", True)
    assert lock.read_text() == line(HOLDER, "run-1", BOOT)


def test_a_lock_from_an_earlier_boot_is_taken_over(lock):
    stale = line(OTHER, "killed", OLD_BOOT)
    lock.write_text(stale)
    result = dl.acquire(str(lock), HOLDER, "run-1")
    assert (result["rc"], result["outcome"], result["locked"]) == (0, "rebooted", True)
    assert result["previous_holder"] == stale.rstrip("\n")
    assert lock.read_text() == line(HOLDER, "run-1", BOOT)
    assert leftovers(lock) == []


def test_a_lock_of_an_earlier_version_is_understood(lock):
    lock.write_text("%s boot %s\n" % (OTHER, OLD_BOOT))
    assert dl.acquire(str(lock), HOLDER, "run-1")["outcome"] == "rebooted"
    lock.write_text("%s boot %s\n" % (OTHER, BOOT))
    refused = dl.acquire(str(lock), HOLDER, "run-2")
    assert (refused["rc"], refused["holder"]) == (75, "%s boot %s" % (OTHER, BOOT))


@pytest.mark.parametrize("content", ["deploy by someone@elsewhere since 2026-01-01T00:00:00Z\n", ""])
def test_a_lock_without_a_boot_id_is_held_until_forced(lock, content):
    lock.write_text(content)
    refused = dl.acquire(str(lock), HOLDER, "run-1")
    assert (refused["rc"], refused["outcome"], refused["holder"]) == (75, "held", content.rstrip("\n"))
    assert lock.read_text() == content
    forced = dl.acquire(str(lock), HOLDER, "run-2", force=True)
    assert (forced["rc"], forced["outcome"], forced["previous_holder"]) == (0, "forced", content.rstrip("\n"))
    assert lock.read_text() == line(HOLDER, "run-2", BOOT)


def test_force_takes_over_a_lock_of_this_boot_and_names_its_holder(lock):
    dl.acquire(str(lock), OTHER, "killed-run")
    forced = dl.acquire(str(lock), HOLDER, "run-2", force=True)
    assert (forced["rc"], forced["outcome"], forced["locked"]) == (0, "forced", True)
    assert forced["previous_holder"] == "%s run killed-run boot %s" % (OTHER, BOOT)
    assert lock.read_text() == line(HOLDER, "run-2", BOOT)


def test_force_without_a_lock_just_takes_it(lock):
    result = dl.acquire(str(lock), HOLDER, "run-1", force=True)
    assert (result["outcome"], result["previous_holder"]) == ("taken", None)


def test_force_replaces_only_the_holder_it_saw(lock):
    # The lock was free when this run looked, then a concurrent run took it: that one is respected.
    dl.acquire(str(lock), OTHER, "racer")
    refused = dl.acquire(str(lock), HOLDER, "run-1", force=True, observed=None)
    assert (refused["rc"], refused["outcome"]) == (75, "held")
    # This run saw a killed run's lock, but a concurrent run took it over meanwhile.
    refused = dl.acquire(str(lock), HOLDER, "run-1", force=True, observed=line(OTHER, "killed", BOOT))
    assert (refused["rc"], refused["holder"]) == (75, "%s run racer boot %s" % (OTHER, BOOT))
    assert lock.read_text() == line(OTHER, "racer", BOOT)


def test_leftover_temporary_files_of_a_killed_run_are_removed(lock):
    junk = lock.parent / ".demo.lock.dead-run.4242.tmp"
    junk.write_text("half")
    other_app = lock.parent / "shop.lock"
    other_app.write_text(line(OTHER, "r9", BOOT))
    dl.acquire(str(lock), HOLDER, "run-1")
    assert not junk.exists()
    assert other_app.read_text() == line(OTHER, "r9", BOOT)


def test_a_run_waits_for_the_guard_and_gives_up_after_the_timeout(lock):
    fd = os.open(lock.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        start = time.monotonic()
        with pytest.raises(dl.LockError, match="flock"):
            dl.acquire(str(lock), HOLDER, "run-1", timeout=0.3)
        assert 0.3 <= time.monotonic() - start < 2
        assert not lock.exists()
    finally:
        os.close(fd)
    assert dl.acquire(str(lock), HOLDER, "run-1")["outcome"] == "taken"


def test_check_mode_writes_nothing(lock):
    result = dl.acquire(str(lock), HOLDER, "run-1", check_mode=True)
    assert (result["rc"], result["outcome"], result["locked"]) == (0, "taken", False)
    assert not lock.exists()
    lock.write_text(line(OTHER, "r9", BOOT))
    assert dl.acquire(str(lock), HOLDER, "run-1", check_mode=True)["rc"] == 75
    lock.write_text(line(OTHER, "r9", OLD_BOOT))
    result = dl.acquire(str(lock), HOLDER, "run-1", check_mode=True)
    assert (result["outcome"], result["locked"]) == ("rebooted", False)
    assert lock.read_text() == line(OTHER, "r9", OLD_BOOT)
    assert dl.release(str(lock), "r9", check_mode=True)["outcome"] == "released"
    assert lock.exists()


# --- releasing it ------------------------------------------------------------------------------------------------

def test_release_removes_the_lock_this_run_holds(lock):
    dl.acquire(str(lock), HOLDER, "run-1")
    result = dl.release(str(lock), "run-1")
    assert (result["rc"], result["outcome"], result["locked"]) == (0, "released", False)
    assert not lock.exists()
    assert leftovers(lock) == []


def test_release_with_another_run_id_leaves_the_lock(lock):
    dl.acquire(str(lock), HOLDER, "run-1")
    result = dl.release(str(lock), "run-2")
    assert (result["rc"], result["outcome"]) == (0, "taken_over")
    assert result["holder"] == "%s run run-1 boot %s" % (HOLDER, BOOT)
    assert lock.read_text() == line(HOLDER, "run-1", BOOT)


@pytest.mark.parametrize("content", ["%s boot %s\n" % (OTHER, BOOT), "", "junk"])
def test_release_leaves_a_lock_without_this_run_id(lock, content):
    lock.write_text(content)
    assert dl.release(str(lock), "run-1")["outcome"] == "taken_over"
    assert lock.read_text() == content


def test_a_run_whose_lock_was_forced_away_leaves_it_to_the_new_holder(lock):
    dl.acquire(str(lock), HOLDER, "slow-run")
    forced = dl.acquire(str(lock), OTHER, "forcing-run", force=True)
    assert forced["previous_holder"] == "%s run slow-run boot %s" % (HOLDER, BOOT)
    late = dl.release(str(lock), "slow-run")
    assert (late["outcome"], late["holder"]) == ("taken_over", "%s run forcing-run boot %s" % (OTHER, BOOT))
    assert lock.read_text() == line(OTHER, "forcing-run", BOOT)
    assert dl.release(str(lock), "forcing-run")["outcome"] == "released"
    assert not lock.exists()


def test_release_of_a_lock_already_gone_is_no_error(lock, tmp_path):
    assert dl.release(str(lock), "run-1")["outcome"] == "gone"
    assert dl.release(str(tmp_path / "missing" / "demo.lock"), "run-1")["outcome"] == "gone"


# --- races -------------------------------------------------------------------------------------------------------

def _racer(worker, paths, barrier, results, force):
    for trial, path in enumerate(paths):
        run_id = dl.make_run_id()
        # A forced run replaces the holder it saw when it started: every racer starts before any of them takes over.
        observed = dl.read_lock(path)[0] if force else dl._UNSET
        try:
            barrier.wait()
            result = dl.acquire(path, "racer %d" % worker, run_id, force=force, observed=observed, timeout=10)
            results.put((trial, worker, result["rc"], result["outcome"], run_id))
        except Exception as e:  # reported to the test, which fails on it
            results.put((trial, worker, "error", repr(e), run_id))


def race(tmp_path, racers, trials, content, force=False):
    """Trials of racers runs taking the lock at once, the lock holding content (None: no lock).

    Returns the lock paths and {trial: [(rc, outcome, run id) of each racer]}.
    """
    paths = []
    for trial in range(trials):
        directory = tmp_path / "race" / str(trial)
        directory.mkdir(parents=True)
        if content is not None:
            (directory / "demo.lock").write_text(content)
        paths.append(str(directory / "demo.lock"))
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(racers, timeout=30)
    results = context.Queue()
    processes = [context.Process(target=_racer, args=(worker, paths, barrier, results, force))
                 for worker in range(racers)]
    for process in processes:
        process.start()
    outcomes = {}
    try:
        for _index in range(racers * trials):
            trial, _worker, rc, outcome, run_id = results.get(timeout=60)
            outcomes.setdefault(trial, []).append((rc, outcome, run_id))
    finally:
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
    return paths, outcomes


def check_one_winner(paths, outcomes, racers, won_as):
    for trial, path in enumerate(paths):
        results = outcomes[trial]
        assert len(results) == racers
        winners = [r for r in results if r[0] == 0]
        assert len(winners) == 1, (trial, results)
        assert winners[0][1] == won_as, (trial, results)
        losers = [(rc, outcome) for rc, outcome, _run_id in results if rc != 0]
        assert losers == [(75, "held")] * (racers - 1), (trial, results)
        # The lock on disk is the winner's, and nothing else is left in the directory.
        assert dl.parse_lock(Path(path).read_text()) == (winners[0][2], BOOT), trial
        assert os.listdir(os.path.dirname(path)) == ["demo.lock"], trial


@pytest.mark.parametrize("racers", [2, 8])
def test_exactly_one_of_concurrent_runs_takes_over_a_lock_from_an_earlier_boot(tmp_path, racers):
    paths, outcomes = race(tmp_path, racers, 300, line(OTHER, "killed", OLD_BOOT))
    check_one_winner(paths, outcomes, racers, "rebooted")


@pytest.mark.parametrize("racers", [2, 8])
def test_exactly_one_of_concurrent_forced_runs_takes_over_a_lock(tmp_path, racers):
    paths, outcomes = race(tmp_path, racers, 300, line(OTHER, "killed", BOOT), force=True)
    check_one_winner(paths, outcomes, racers, "forced")


@pytest.mark.parametrize("racers", [2, 8])
def test_exactly_one_of_concurrent_runs_takes_a_free_lock(tmp_path, racers):
    paths, outcomes = race(tmp_path, racers, 100, None)
    check_one_winner(paths, outcomes, racers, "taken")


# --- the module --------------------------------------------------------------------------------------------------

def test_module_takes_the_lock_and_makes_the_directories(capsys, tmp_path, warned):
    path = tmp_path / "var" / "lib" / "webstack" / "demo.lock"
    state_dir = tmp_path / "etc" / "ansible" / "facts.d"
    code, result = run_main(capsys, dict(path=str(path), holder=HOLDER, directories=[str(state_dir)]))
    assert code == 0 and result["rc"] == 0 and result["locked"] is True, result
    assert result["outcome"] == "taken" and result["changed"] is True
    assert dl.RUN_ID_RE.fullmatch(result["run_id"])
    assert path.read_text() == line(HOLDER, result["run_id"], BOOT)
    assert result["boot_id"] == BOOT
    for directory in (path.parent, state_dir):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o755
        assert str(directory) in result["directories_created"]

    code, refused = run_main(capsys, dict(path=str(path), holder=OTHER))
    assert refused["rc"] == 75 and refused["outcome"] == "held"
    assert refused["holder"] == line(HOLDER, result["run_id"], BOOT).rstrip("\n")
    assert "is held by %s" % refused["holder"] in refused["msg"] and " age " in refused["msg"]
    assert refused["directories_created"] == []

    code, released = run_main(capsys, dict(path=str(path), run_id=result["run_id"], state="absent"))
    assert code == 0 and released["outcome"] == "released" and not path.exists()
    assert warned == []


def test_module_existing_directory_gets_mode_0755(capsys, lock):
    os.chmod(lock.parent, 0o700)
    run_main(capsys, dict(path=str(lock), holder=HOLDER))
    assert stat.S_IMODE(lock.parent.stat().st_mode) == 0o755


def test_module_force_names_the_holder_it_removed(capsys, lock):
    old = line(OTHER, "killed-run", BOOT)
    lock.write_text(old)
    code, result = run_main(capsys, dict(path=str(lock), holder=HOLDER, force=True))
    assert code == 0 and result["outcome"] == "forced", result
    assert result["previous_holder"] == old.rstrip("\n")
    assert old.rstrip("\n") in result["msg"]
    assert lock.read_text() == line(HOLDER, result["run_id"], BOOT)


def test_module_takes_over_a_lock_from_before_the_last_boot(capsys, lock):
    old = line(OTHER, "killed-run", OLD_BOOT)
    lock.write_text(old)
    code, result = run_main(capsys, dict(path=str(lock), holder=HOLDER))
    assert result["outcome"] == "rebooted" and result["previous_holder"] == old.rstrip("\n")
    assert "before the host last booted" in result["msg"]


def test_module_release_of_a_lock_taken_over_warns_and_leaves_it(capsys, lock, warned):
    lock.write_text(line(OTHER, "forcing-run", BOOT))
    code, result = run_main(capsys, dict(path=str(lock), run_id="my-run", state="absent"))
    assert code == 0 and result["rc"] == 0 and result["outcome"] == "taken_over", result
    assert result.get("failed") is not True and result["changed"] is False
    assert len(warned) == 1 and "taken over by someone else" in warned[0] and "forcing-run" in warned[0]
    assert lock.read_text() == line(OTHER, "forcing-run", BOOT)


def test_module_release_of_a_lock_gone_warns(capsys, lock, warned):
    code, result = run_main(capsys, dict(path=str(lock), run_id="my-run", state="absent"))
    assert code == 0 and result["outcome"] == "gone"
    assert len(warned) == 1 and "already gone" in warned[0]


def test_module_check_mode_changes_nothing(capsys, tmp_path):
    path = tmp_path / "var" / "lib" / "webstack" / "demo.lock"
    code, result = run_main(capsys, dict(path=str(path), holder=HOLDER), check_mode=True)
    assert code == 0 and result["rc"] == 0 and result["locked"] is False
    assert str(path.parent) in result["directories_created"]
    assert not (tmp_path / "var").exists()


@pytest.mark.parametrize("args, error", [
    (dict(holder=HOLDER, run_id="../x"), "run_id must match"),
    (dict(holder=HOLDER, run_id="a" * 65), "run_id must match"),
    (dict(holder=HOLDER, run_id="r1\n"), "run_id must match"),
    (dict(), "holder"),
    (dict(state="absent"), "run_id"),
    (dict(holder=HOLDER, timeout=-1), "timeout"),
])
def test_module_refuses_bad_arguments(capsys, lock, args, error):
    code, result = run_main(capsys, dict(path=str(lock), **args))
    assert code == 1 and result["failed"] is True and error in result["msg"], result
    assert not lock.exists()
