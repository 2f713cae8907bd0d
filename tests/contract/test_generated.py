"""generated/ must be exactly what proto/ compiles to, and buf must guard the JSON contract."""

from __future__ import annotations

import filecmp
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import generate_protos  # noqa: E402

BUF = ROOT / "node_modules" / ".bin" / "buf"


def _tree(root: Path) -> dict[str, Path]:
    return {
        str(p.relative_to(root)): p
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_generated_code_matches_protos(tmp_path: Path) -> None:
    generate_protos.generate(tmp_path)
    fresh, committed = _tree(tmp_path), _tree(ROOT / "generated")
    assert sorted(fresh) == sorted(committed), "run `make generate` and commit generated/"
    stale = [name for name in fresh if not filecmp.cmp(fresh[name], committed[name], False)]
    assert stale == [], f"stale generated files {stale}: run `make generate`"


def _image_with_renamed_field(tmp_path: Path) -> Path:
    """Build an image from a copy of proto/ in which LoginResponse.token is renamed."""
    proto_copy = tmp_path / "proto"
    shutil.copytree(ROOT / "proto", proto_copy)
    auth = proto_copy / "thingwire" / "auth" / "v1" / "auth.proto"
    source = auth.read_text()
    assert "  string token = 1;\n  // The user logged in." in source
    auth.write_text(
        source.replace(
            "  string token = 1;\n  // The user logged", "  string jwt = 1;\n  // The user logged"
        )
    )
    out = tmp_path / "out"
    original = generate_protos.PROTO_DIR
    generate_protos.PROTO_DIR = proto_copy
    try:
        generate_protos.generate(out)
    finally:
        generate_protos.PROTO_DIR = original
    return generate_protos.image_path(out)


def test_buf_breaking_rejects_a_json_rename(tmp_path: Path) -> None:
    image = _image_with_renamed_field(tmp_path)
    result = subprocess.run(
        [BUF, "breaking", str(image), "--against", str(ROOT / "proto" / "baseline.binpb")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "token" in result.stdout + result.stderr


def test_buf_breaking_accepts_the_current_protos() -> None:
    result = subprocess.run(
        [
            BUF,
            "breaking",
            str(generate_protos.image_path(ROOT / "generated")),
            "--against",
            "proto/baseline.binpb",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
