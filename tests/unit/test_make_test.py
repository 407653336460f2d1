"""`make test` runs its stages in order and, when one fails, says which it was and which stages did not run."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: two stand-in stages, appended to a copy of the Makefile: what `make test` runs is the stage list, not these
STAGES = "\nstage-ok:\n\t@echo stage-ok ran\nstage-fail:\n\t@echo stage-fail ran; false\n"

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def make_test(tmp_path: Path, stages: str) -> subprocess.CompletedProcess[str]:
    """``make test`` in a directory holding only a copy of the Makefile (plus the stand-ins), with ``stages``."""
    (tmp_path / "Makefile").write_text((ROOT / "Makefile").read_text() + STAGES)
    return subprocess.run(
        ["make", "--no-print-directory", "test", f"TEST_STAGES={stages}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_failing_stage_names_itself_and_the_stages_not_run(tmp_path):
    result = make_test(tmp_path, "stage-ok stage-fail later-one later-two")
    assert 0 != result.returncode
    assert ["stage-ok ran", "stage-fail ran"] == result.stdout.splitlines()
    assert "make test: stage stage-fail failed; not run: later-one later-two" in result.stderr.splitlines()


def test_the_last_stage_failing_leaves_none_unrun(tmp_path):
    result = make_test(tmp_path, "stage-ok stage-fail")
    assert 0 != result.returncode
    assert "make test: stage stage-fail failed; not run: none" in result.stderr.splitlines()


def test_every_stage_passing_passes(tmp_path):
    result = make_test(tmp_path, "stage-ok stage-ok")
    assert (0, ["stage-ok ran", "stage-ok ran"], "") == (result.returncode, result.stdout.splitlines(), result.stderr)


def test_the_stages_are_what_ci_runs():
    """The list itself: lint, the docs site, the wheel and sdist, the fast suite, chaos, the oldest gunicorn."""
    declared = re.search(r"^TEST_STAGES := (.+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert declared is not None
    assert "lint docs-site dist test-fast test-chaos test-oldest" == declared.group(1)
