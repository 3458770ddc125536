"""Hard-link an installed distribution and everything it requires from this virtualenv into
another one, so that a second venv needing the same torch does not download and unpack it again.

    SOURCE_VENV/bin/python link_packages.py TARGET_SITE_PACKAGES TARGET_PYTHON_TAG torch==2.13.0

Run with the source venv's interpreter. Links nothing and exits 1 when the source does not hold
exactly the pinned version, or was built for another Python (compiled extensions are per
version): the caller then installs from the index as usual. Each distribution is linked file by
file from its RECORD, its .dist-info included, so pip in the target venv sees it installed and
can uninstall it there; files outside site-packages (console scripts, whose first line names the
source's interpreter) are left out. Hard links share the bytes, not the names: removing or
upgrading a package in either venv leaves the other one intact.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import sys
from importlib.metadata import distributions
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


def closure(name: str) -> list[importlib.metadata.Distribution]:
    """`name`'s distribution and those it requires on this machine, transitively."""
    seen: dict[str, importlib.metadata.Distribution] = {}
    todo = [name]
    while todo:
        current = todo.pop().lower()
        if current in seen:
            continue
        distribution = importlib.metadata.distribution(current)
        seen[current] = distribution
        for line in distribution.requires or ():
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return list(seen.values())


def link(distribution: importlib.metadata.Distribution, target: Path) -> int:
    """Link one distribution's files under `target`; how many files."""
    root = Path(distribution.locate_file("")).resolve()
    count = 0
    for file in distribution.files or ():
        source = Path(distribution.locate_file(file)).resolve()
        if not source.is_relative_to(root) or "__pycache__" in source.parts:
            continue  # a script in bin/, or bytecode the target's Python writes itself
        destination = target / source.relative_to(root)
        if destination.exists() or not source.is_file():
            continue
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, destination)
        except OSError:  # another file system: a copy still saves the download
            shutil.copy2(source, destination)
        count += 1
    return count


def main(target: str, python_tag: str, pinned: str) -> int:
    requirement = Requirement(pinned)
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    try:
        installed = importlib.metadata.version(requirement.name)
    except importlib.metadata.PackageNotFoundError:
        installed = None
    if python_tag != here or installed is None or installed not in requirement.specifier:
        print(f"not linking {pinned}: this venv has {installed} for Python {here}", file=sys.stderr)
        return 1
    # A distribution the target venv already has (its own pip, setuptools) stays its own.
    present = {canonicalize_name(d.metadata["Name"]) for d in distributions(path=[target])}
    linked = [
        d for d in closure(requirement.name) if canonicalize_name(d.metadata["Name"]) not in present
    ]
    files = sum(link(d, Path(target)) for d in linked)
    names = ", ".join(sorted(d.metadata["Name"] for d in linked))
    print(f"linked {files} files of {names}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
