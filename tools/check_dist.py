"""`make dist`: check that the wheel and the sdist in DIST hold what they must, and nothing they must not.

The wheel: every file of the package in the checkout (py.typed too, once there is one), the dist-info with the
`otel-gunicorn` console script, and nothing else (no tests, harness, bench, examples, byte code). The sdist: what
building the wheel from it needs (pyproject.toml, README.md, the package), CHANGELOG.md and any LICENSE, and no caches.

Usage: python tools/check_dist.py DIST
"""

from __future__ import annotations

import re
import sys
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "otel_gunicorn"
SCRIPT = "otel-gunicorn = otel_gunicorn.__main__:main"
SDIST_NEEDS = ["pyproject.toml", "README.md", "CHANGELOG.md", *(p.name for p in ROOT.glob("LICEN[CS]E*"))]
# what a build must never pick up from a working tree (the root .gitignore decides what hatchling leaves out)
JUNK = {"__pycache__", ".venv", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".hypothesis", ".import_linter_cache"}


def package_files() -> set[str]:
    return {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / PACKAGE).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


def junk(names: list[str]) -> list[str]:
    return [name for name in names if JUNK & set(PurePosixPath(name).parts) or name.endswith(".pyc")]


def check_wheel(wheel: Path, version: str, expected: set[str]) -> list[str]:
    dist_info = f"{PACKAGE}-{version}.dist-info/"
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        has_entry_points = dist_info + "entry_points.txt" in names
        entry_points = archive.read(dist_info + "entry_points.txt").decode() if has_entry_points else ""
    problems = [f"{wheel.name}: missing {name}" for name in sorted(expected - set(names))]
    problems += [
        f"{wheel.name}: does not belong in the wheel: {name}"
        for name in names
        if not name.startswith((PACKAGE + "/", dist_info))
    ]
    problems += [f"{wheel.name}: byte code or cache: {name}" for name in junk(names)]
    if SCRIPT not in entry_points.splitlines():
        problems.append(f"{wheel.name}: no console script `{SCRIPT}` in {dist_info}entry_points.txt")
    return problems


def check_sdist(sdist: Path, version: str, expected: set[str]) -> list[str]:
    top = f"{PACKAGE}-{version}/"
    with tarfile.open(sdist) as archive:
        names = [member.name for member in archive.getmembers() if member.isfile()]
    inside = {name.removeprefix(top) for name in names}
    problems = [f"{sdist.name}: outside {top}: {name}" for name in names if not name.startswith(top)]
    problems += [f"{sdist.name}: missing {name}" for name in sorted({*SDIST_NEEDS, *expected} - inside)]
    problems += [f"{sdist.name}: byte code or cache: {name}" for name in junk(names)]
    return problems


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python tools/check_dist.py DIST", file=sys.stderr)
        return 1
    dist = Path(argv[1])
    match = re.search(r'__version__ = "([^"]+)"', (ROOT / PACKAGE / "_version.py").read_text())
    version = match.group(1) if match else "?"
    wheels = sorted(dist.glob("*.whl"))
    sdists = sorted(dist.glob("*.tar.gz"))
    want_wheel, want_sdist = f"{PACKAGE}-{version}-py3-none-any.whl", f"{PACKAGE}-{version}.tar.gz"
    if [p.name for p in wheels] != [want_wheel] or [p.name for p in sdists] != [want_sdist]:
        found = ", ".join(p.name for p in [*wheels, *sdists]) or "nothing"
        print(f"check_dist: {dist} should hold {want_wheel} and {want_sdist} alone, holds {found}", file=sys.stderr)
        return 1
    expected = package_files()
    problems = check_wheel(wheels[0], version, expected) + check_sdist(sdists[0], version, expected)
    for problem in problems:
        print(f"check_dist: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(
        f"check_dist: {want_wheel}: the {len(expected)} files of {PACKAGE}/ and the console script, nothing else; "
        f"{want_sdist}: {', '.join(SDIST_NEEDS)} and {PACKAGE}/, no caches"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
