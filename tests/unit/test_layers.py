"""The import-linter layer contract in pyproject.toml catches a back-import (``make lint`` runs it on the tree)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    """Run lint-imports with the project's contract on a copy of the package in ``tree``."""
    environ = dict(os.environ, PYTHONPATH=str(tree))
    command = [
        sys.executable,
        "-c",
        "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())",
        "--no-cache",
    ]
    return subprocess.run(command, cwd=tree, env=environ, capture_output=True, text=True, timeout=120)


def copy_package(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "otel_gunicorn", tmp_path / "otel_gunicorn", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_contract_holds_for_the_package_as_it_is(tmp_path):
    """An unchanged copy of the package keeps every contract."""
    result = lint_imports(copy_package(tmp_path))
    assert 0 == result.returncode, result.stdout + result.stderr


def test_a_back_import_from_a_shared_core_into_a_process_side_breaks_the_contract(tmp_path):
    """A shared core importing the arbiter side is reported, naming both modules."""
    tree = copy_package(tmp_path)
    snapshot = tree / "otel_gunicorn" / "_snapshot.py"
    snapshot.write_text(snapshot.read_text() + "\nfrom otel_gunicorn._arbiter import merge  # noqa: E402,F401\n")
    result = lint_imports(tree)
    assert 1 == result.returncode
    assert "otel_gunicorn._snapshot is not allowed to import otel_gunicorn._arbiter" in result.stdout


def test_the_worker_side_importing_the_arbiter_side_breaks_the_contract(tmp_path):
    """The two process sides are independent: neither may import the other."""
    tree = copy_package(tmp_path)
    reporter = tree / "otel_gunicorn" / "_worker" / "reporter.py"
    reporter.write_text(reporter.read_text() + "\nfrom otel_gunicorn._arbiter import merge  # noqa: E402,F401\n")
    result = lint_imports(tree)
    assert 1 == result.returncode
    assert "otel_gunicorn._worker is not allowed to import otel_gunicorn._arbiter" in result.stdout
