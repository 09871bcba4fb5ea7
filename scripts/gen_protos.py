"""Generate the Python code for the onceonly contract from ``protos/``.

This script is the only way the files under ``onceonly/v1/`` change.

    python scripts/gen_protos.py          # regenerate in place
    python scripts/gen_protos.py --check  # exit 1 if the committed code is stale
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
PACKAGE_DIR = Path("onceonly") / "v1"
SOURCE_INFO_FILE = "contract.binpb"
INIT_TEXT = '"""Generated from protos/onceonly/v1 by scripts/gen_protos.py. Do not edit."""\n'


def generate(out_root: Path) -> list[Path]:
    """Run protoc into ``out_root``; return the generated files relative to it."""
    from grpc_tools import protoc  # imported here: a dev dependency only

    protos = sorted(PROTO_ROOT.glob("onceonly/v1/*.proto"))
    if not protos:
        raise SystemExit(f"no .proto files under {PROTO_ROOT}")
    # Only protos/: the contract ships every file it imports (google/rpc, google/protobuf), so
    # what compiles here compiles for a client in any language with nothing else.
    # Typed gRPC stubs (servicers and client stubs, sync and asyncio) from mypy-protobuf's plugin.
    grpc_stubs = Path(sys.executable).parent / "protoc-gen-mypy_grpc"
    if not grpc_stubs.exists():
        raise SystemExit(f"{grpc_stubs} not found: install the dev dependencies (mypy-protobuf)")
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"--plugin=protoc-gen-mypy_grpc={grpc_stubs}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        f"--mypy_grpc_out=quiet:{out_root}",
        # The contract with its comments, for server reflection (the code's embedded descriptors
        # carry none): grpcurl describe, Postman and the like show them.
        "--include_source_info",
        f"--descriptor_set_out={out_root / PACKAGE_DIR / SOURCE_INFO_FILE}",
        *[str(p.relative_to(PROTO_ROOT)) for p in protos],
    ]
    (out_root / PACKAGE_DIR).mkdir(parents=True, exist_ok=True)
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    (out_root / PACKAGE_DIR / "__init__.py").write_text(INIT_TEXT)
    (out_root / "onceonly" / "__init__.py").unlink(missing_ok=True)
    return sorted(p.relative_to(out_root) for p in (out_root / PACKAGE_DIR).iterdir() if p.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed code is stale")
    opts = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        files = generate(out)
        target = ROOT / PACKAGE_DIR
        committed = (
            sorted(p.relative_to(ROOT) for p in target.glob("*") if p.is_file()) if target.exists() else []
        )
        if opts.check:
            stale = [
                str(f)
                for f in files
                if not (ROOT / f).exists() or not filecmp.cmp(out / f, ROOT / f, shallow=False)
            ]
            extra = [str(f) for f in committed if f not in files]
            if stale or extra:
                print("generated code is stale; run: python scripts/gen_protos.py", file=sys.stderr)
                for name in stale + extra:
                    print(f"  {name}", file=sys.stderr)
                return 1
            print("generated code is up to date")
            return 0
        target.mkdir(parents=True, exist_ok=True)
        for f in committed:
            if f not in files:
                (ROOT / f).unlink()
        for f in files:
            shutil.copyfile(out / f, ROOT / f)
        print(f"generated {len(files)} files under {PACKAGE_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
