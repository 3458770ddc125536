"""The README's layout section names every module and folder of the package, so a newcomer
finds each one there."""

from __future__ import annotations

import re
from pathlib import Path

import duet

README = Path(__file__).parents[1] / "README.md"
PACKAGE_DIR = Path(duet.__file__).parent


def layout_block() -> str:
    text = README.read_text()
    section = text[text.index("## Layout") :]
    return section[section.index("```") : section.index("```", section.index("```") + 3)]


def test_the_layout_names_every_module_and_folder() -> None:
    block = layout_block()
    named = set(re.findall(r"[A-Za-z_][\w.]*", block))
    parts = [
        p for p in PACKAGE_DIR.iterdir() if p.name != "__pycache__" and not p.name.startswith(".")
    ]
    missing = [
        p.name
        for p in parts
        if p.name != "__init__.py"
        and p.suffix in {".py", ""}
        and p.name not in named
        and p.name.removesuffix(".py") + ".py" not in named
    ]
    folders = [p.name for p in parts if p.is_dir() and p.name + "/" not in block]
    assert missing == [] and folders == [], (missing, folders)
    for folder in (p for p in parts if p.is_dir() and p.name in {"views", "bench", "metrics"}):
        modules = [m.name for m in folder.glob("*.py") if m.name != "__init__.py"]
        absent = [m for m in modules if m not in named and m.removesuffix(".py") not in named]
        assert absent == [], f"{folder.name}/: {absent}"
