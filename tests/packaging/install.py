"""Build thingwire's wheel and install it into a fresh virtualenv, offline and in seconds.

The fresh virtualenv sees nothing of the development one except the distributions that the
wheel's own metadata requires (followed transitively, markers and extras evaluated). Those are
linked file by file from the development virtualenv, which `make setup` filled with exactly the
pinned versions, so no registry is asked; the wheel itself is installed by pip. A dependency
missing from pyproject.toml is therefore missing here too, and the import that needs it fails,
which `--system-site-packages` would hide.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from email.parser import BytesParser
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
#: What a source checkout holds that is not part of the build (and would slow the copy).
_NOT_SOURCES = shutil.ignore_patterns(
    ".git", ".venv", "node_modules", "var", "build", "dist", "*.egg-info", "__pycache__", ".*_cache"
)


def build_wheel(out_dir: Path) -> Path:
    """Build the wheel from a copy of the checkout, so the build leaves nothing in it.

    No build isolation and no index: setuptools comes from the development virtualenv.
    """
    source = out_dir / "source"
    shutil.copytree(ROOT, source, ignore=_NOT_SOURCES)
    pip_wheel = [sys.executable, "-m", "pip", "wheel", str(source), "--wheel-dir", str(out_dir)]
    _run([*pip_wheel, "--no-deps", "--no-build-isolation", "--no-index", "--quiet"])
    (wheel,) = out_dir.glob("thingwire-*.whl")
    return wheel


def wheel_requirements(wheel: Path, extras: set[str]) -> list[Requirement]:
    """The wheel's `Requires-Dist` that apply with the given extras."""
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        message = BytesParser().parsebytes(archive.read(name))
    return _applicable(message.get_all("Requires-Dist") or [], extras)


def _applicable(specs: list[str], extras: set[str]) -> list[Requirement]:
    wanted = extras | {""}
    found = []
    for spec in specs:
        requirement = Requirement(spec)
        marker = requirement.marker
        if marker is None or any(marker.evaluate({"extra": extra}) for extra in wanted):
            found.append(requirement)
    return found


def closure(requirements: list[Requirement]) -> dict[str, metadata.Distribution]:
    """Every installed distribution the requirements need, by canonical name.

    Fails when a requirement is not installed in this virtualenv, or at another version.
    """
    found: dict[str, metadata.Distribution] = {}
    done: set[tuple[str, frozenset[str]]] = set()
    todo = list(requirements)
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        key = (name, frozenset(requirement.extras))
        if key in done:
            continue
        done.add(key)
        dist = metadata.distribution(requirement.name)
        assert requirement.specifier.contains(dist.version, prereleases=True), (
            f"{requirement} is not what `make setup` installed ({dist.version})"
        )
        found[name] = dist
        todo += _applicable(dist.requires or [], set(requirement.extras))
    return found


def fresh_venv(path: Path, dists: dict[str, metadata.Distribution], wheel: Path) -> Path:
    """A new virtualenv at `path` with `dists` linked in and `wheel` installed; its python."""
    _run([sys.executable, "-m", "venv", "--without-pip", str(path)])
    python = path / "bin" / "python"
    site = path / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    site = site / "site-packages"
    for dist in dists.values():
        _link(dist, site, path / "bin", python)
    pip_install = [sys.executable, "-m", "pip", "--python", str(python), "install", str(wheel)]
    _run([*pip_install, "--no-deps", "--no-index", "--no-compile", "--quiet"])
    return python


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}{result.stderr}"


def _link(dist: metadata.Distribution, site: Path, bin_dir: Path, python: Path) -> None:
    """Link an installed distribution's files into `site`; copy its scripts into `bin_dir`."""
    assert dist.files is not None, f"{dist.metadata['Name']} has no RECORD"
    for file in dist.files:
        source = Path(str(dist.locate_file(file)))
        if file.parts[0] == "..":
            if file.parent.name == "bin" and source.is_file():
                _copy_script(source, bin_dir / file.name, python)
            continue
        target = site / file
        if target.exists() or not source.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(source)


def _copy_script(source: Path, target: Path, python: Path) -> None:
    """A console script, with its `#!` pointing at the fresh virtualenv's interpreter."""
    content = source.read_bytes()
    if content.startswith(b"#!"):
        _shebang, _, rest = content.partition(b"\n")
        content = b"#!" + str(python).encode() + b"\n" + rest
    target.write_bytes(content)
    target.chmod(0o755)
