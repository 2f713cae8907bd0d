"""Compile proto/ into Python modules and the descriptor image that Envoy and buf read.

One script serves `make generate` and the test that fails when generated/ is stale, so the
two can never disagree on how the code is produced.
"""

from __future__ import annotations

import argparse
import importlib.resources
import shutil
import sys
import tempfile
from pathlib import Path

from google.api import annotations_pb2
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
DEFAULT_OUT = ROOT / "generated"
IMAGE_NAME = "thingwire.binpb"


def image_path(out_dir: Path) -> Path:
    """The descriptor image sits inside the `thingwire` package, so the wheel ships it as
    package data and an installed server finds it with importlib.resources."""
    return out_dir / "thingwire" / IMAGE_NAME


def _include_dirs() -> list[Path]:
    """googleapis protos ship in googleapis-common-protos; well-known types in grpc_tools."""
    google_api = Path(annotations_pb2.__file__).parent
    grpc_tools_protos = Path(str(importlib.resources.files("grpc_tools"))) / "_proto"
    return [PROTO_DIR, google_api.parent.parent, grpc_tools_protos]


def proto_files() -> list[str]:
    """Every .proto under proto/, relative to it, in a stable order."""
    return sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.rglob("*.proto"))


def generate(out_dir: Path) -> None:
    """Write Python modules, stubs, type stubs and the descriptor image into out_dir."""
    (out_dir / "thingwire").mkdir(parents=True, exist_ok=True)
    args = ["grpc_tools.protoc", *(f"-I{d}" for d in _include_dirs())]
    args += [
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        "--include_imports",
        "--include_source_info",
        f"--descriptor_set_out={image_path(out_dir)}",
        *proto_files(),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    for package_dir in (out_dir / "thingwire").rglob("*"):
        if package_dir.is_dir():
            (package_dir / "__init__.py").touch()
    (out_dir / "thingwire" / "__init__.py").touch()


def regenerate(out_dir: Path = DEFAULT_OUT) -> None:
    """Replace out_dir's generated content with a fresh build, atomically enough for make."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "generated"
        generate(fresh)
        shutil.rmtree(out_dir / "thingwire", ignore_errors=True)
        shutil.copytree(fresh / "thingwire", out_dir / "thingwire")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    regenerate(parser.parse_args().out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
