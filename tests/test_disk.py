"""A full disk and a read-only database, on real file systems: a small tmpfs that fills up, and
the same tmpfs remounted read-only. Mounting needs root: CI runs as root, and under CI a failed
mount fails these tests (a developer without root sees them skipped, with the reason)."""

import hashlib
import os
import subprocess
import sys

import pytest

from iml_core.config import RunConfig
from iml_core.errors import RunFailed
from iml_core.runner import create_run, execute_run
from iml_core.store import Store

CONFIG = RunConfig(steps=150, eval_size=100, batch_size=16, momentum=0.5, seed=3)


@pytest.fixture
def small_disk(tmp_path):
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        reason = f"cannot mount a small tmpfs here (needs root): {mounted.stderr.strip()}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=True)


def remount(mount_point, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(mount_point)], check=True)


def test_a_full_disk_fails_the_run_with_a_message_and_damages_nothing(small_disk, tmp_path):
    with Store(tmp_path / "reference.duckdb") as reference:
        reference_id = create_run(reference, CONFIG)
        execute_run(reference, reference_id)
        expected = reference.steps(reference_id)

    path = small_disk / "runs.duckdb"
    store = Store(path)
    run_id = create_run(store, CONFIG)
    with pytest.raises(RunFailed, match=r"the disk holding the database .* is full;.*free some space"):
        execute_run(store, run_id)
    store.close()

    remount(small_disk, "size=64m")  # space freed; the same file, opened again
    with Store(path) as store:
        run = store.run(run_id)
        assert run["status"] == "failed" and "is full" in run["error"]
        kept = store.steps(run_id)
        assert 0 < len(kept) < len(expected)  # the disk filled up mid-run
        for got, want in zip(kept, expected, strict=False):  # every committed step intact
            assert (got["step"], got["notes"], got["eval_accuracy"]) == (want["step"], want["notes"],
                                                                       want["eval_accuracy"])
        execute_run(store, run_id)  # resumable once there is space
        assert [s["notes"] for s in store.steps(run_id)] == [s["notes"] for s in expected]


def test_a_read_only_database_is_refused_with_a_message_and_left_unchanged(small_disk):
    path = small_disk / "runs.duckdb"
    with Store(path) as store:
        execute_run(store, create_run(store, RunConfig(steps=3, eval_size=20)))
    remount(small_disk, "ro")
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    for command in (["run", "--steps", "2"], ["runs"]):
        result = subprocess.run([sys.executable, "-m", "iml_core", *command, "--db", str(path)],
                                capture_output=True, text=True)
        assert result.returncode == 1  # the disk failed, not the input: RunFailed
        assert result.stderr.strip() == (
            f"iml: failed: the database {path} cannot be written (its file or disk is read-only); make it "
            "writable or pass --db with a writable file; nothing in it was changed")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
