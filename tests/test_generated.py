"""The committed generated code matches the .proto contract."""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


async def _gen_check(root: Path) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(root / "scripts" / "gen_protos.py"),
        "--check",
        cwd=root,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, output.decode(errors="replace")


async def test_generated_code_is_up_to_date() -> None:
    code, output = await _gen_check(ROOT)
    assert code == 0, output
    assert "up to date" in output


async def test_the_check_notices_a_changed_contract(tmp_path: Path) -> None:
    # A copy of the tree, so that the real one is never touched.
    for part in ("scripts", "protos", "onceonly/v1"):
        shutil.copytree(ROOT / part, tmp_path / part, ignore=shutil.ignore_patterns("__pycache__"))
    common = tmp_path / "protos" / "onceonly" / "v1" / "common.proto"
    common.write_text(common.read_text() + "\nmessage AddedForTheTest {}\n")

    code, output = await _gen_check(tmp_path)

    assert code == 1, output
    assert "common_pb2" in output
