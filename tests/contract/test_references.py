"""Every file the code and the docs point a reader to is in the repository.

A reference to a note that lives elsewhere, or to a test that was renamed, sends a newcomer
nowhere; the design notes the code relies on are in docs/.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("server", "gateway", "device_agent", "scripts", "bench", "tests", "docs", ".ci")
TOP_FILES = ("README.md", "CHANGELOG.md", "Makefile", "pyproject.toml", "buf.yaml")
#: A repository path with an extension, as prose and comments cite one.
CITED_PATH = re.compile(
    r"(?<![\w./-])((?:server|gateway|device_agent|scripts|bench|tests|docs|proto|generated)"
    r"/[\w./-]*\w\.(?:py|md|lua|proto|yaml|binpb|json))(?!\.?\w)"
)
#: Notes that are not in the repository.
OUTSIDE_NOTES = re.compile(r"\b(?:DESIGN|STYLE)\.md\b")


def _texts() -> dict[str, str]:
    files = [ROOT / name for name in TOP_FILES]
    for top in SOURCES:
        files += [
            p for p in (ROOT / top).rglob("*") if p.is_file() and "__pycache__" not in p.parts
        ]
    texts = {}
    for path in files:
        if path.suffix in {".pyc", ".binpb"} or path == Path(__file__):
            continue
        texts[str(path.relative_to(ROOT))] = path.read_text(encoding="utf-8")
    return texts


def test_no_reference_to_notes_outside_the_repository() -> None:
    cited = [name for name, text in _texts().items() if OUTSIDE_NOTES.search(text)]
    assert not cited, f"cite docs/ instead of notes outside the repository in: {cited}"


def test_every_cited_path_exists() -> None:
    missing = sorted(
        f"{name}: {path}"
        for name, text in _texts().items()
        for path in CITED_PATH.findall(text)
        if not (ROOT / path).exists()
    )
    assert not missing, "\n".join(["cited but not in the repository:", *missing])
