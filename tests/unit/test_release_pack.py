"""The release role's controller-side packer (roles/release/files/pack.sh): the same
source gives the same release id and the same bytes; a change gives a new id."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACK = ROOT / "roles" / "release" / "files" / "pack.sh"
DEMO = ROOT / "examples" / "demoapp"
EXCLUDE = [".git", "__pycache__", "*.pyc", ".venv", "staticfiles", "media", "db.sqlite3", ".pytest_cache"]


def pack(kind: str, source: Path | str, cache: Path, version: str = "main", id_override: str = "") -> dict:
    proc = subprocess.run(["bash", str(PACK), kind, str(source), version, str(cache), "demo", id_override, *EXCLUDE],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    copy = tmp_path / "src" / "demoapp"
    shutil.copytree(DEMO, copy, ignore=shutil.ignore_patterns("__pycache__", "staticfiles", "db.sqlite3"))
    (copy / "pulse" / "__pycache__").mkdir()
    (copy / "pulse" / "__pycache__" / "junk.pyc").write_bytes(b"junk")
    (copy / "db.sqlite3").write_bytes(b"not code")
    return copy


def test_a_directory_packs_to_the_same_id_and_bytes_twice(project: Path, tmp_path: Path):
    first = pack("dir", project, tmp_path / "c1")
    (project / "manage.py").touch()  # a new mtime alone changes nothing
    second = pack("dir", project, tmp_path / "c2")
    assert first["id"] == second["id"]
    assert len(first["id"]) == 12
    assert Path(first["tarball"]).read_bytes() == Path(second["tarball"]).read_bytes()


def test_a_changed_file_gives_a_new_id(project: Path, tmp_path: Path):
    before = pack("dir", project, tmp_path / "c")
    (project / "pulse" / "views.py").write_text((project / "pulse" / "views.py").read_text() + "\n# changed\n")
    assert pack("dir", project, tmp_path / "c")["id"] != before["id"]


def test_excluded_files_stay_out_and_modes_are_not_group_writable(project: Path, tmp_path: Path):
    (project / "settings_mode.py").write_text("")
    (project / "settings_mode.py").chmod(0o666)
    with tarfile.open(pack("dir", project, tmp_path / "c")["tarball"]) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert "./manage.py" in members
    assert not [name for name in members if "__pycache__" in name or name.endswith("db.sqlite3")]
    assert all(m.uid == 0 and m.gid == 0 and not m.mode & 0o022 for m in members.values())


def test_an_archive_of_one_directory_is_id_by_its_own_hash(project: Path, tmp_path: Path):
    archive = tmp_path / "demo.tar.gz"
    subprocess.run(["tar", "-czf", str(archive), "-C", str(project.parent), "demoapp"], check=True)
    result = pack("archive", archive, tmp_path / "c")
    assert result["id"] == hashlib.sha256(archive.read_bytes()).hexdigest()[:12]
    with tarfile.open(result["tarball"]) as tar:
        assert "./manage.py" in tar.getnames()


def test_git_gives_the_commit_and_follows_the_branch(project: Path, tmp_path: Path):
    git = ["git", "-C", str(project), "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "one"], check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    assert pack("git", f"file://{project}", tmp_path / "c")["id"] == commit[:12]
    (project / "README.md").write_text("two\n")
    subprocess.run([*git, "commit", "-qam", "two"], check=True)
    commit2 = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    assert pack("git", f"file://{project}", tmp_path / "c")["id"] == commit2[:12]
    assert pack("git", f"file://{project}", tmp_path / "c", version=commit)["id"] == commit[:12]


def test_a_source_without_manage_py_is_refused(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    proc = subprocess.run(["bash", str(PACK), "dir", str(tmp_path / "empty"), "main", str(tmp_path / "c"), "demo", ""],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 3
    assert "no manage.py" in proc.stderr


def test_an_id_override_names_the_release(project: Path, tmp_path: Path):
    assert pack("dir", project, tmp_path / "c", id_override="v1.2.3")["id"] == "v1.2.3"
