"""One import name: what the wheel installs, and the public API it promises."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

import onceonly.client
import onceonly.provider_sdk

REPO = Path(__file__).resolve().parents[1]

CLIENT_API = [
    "Access",
    "AlreadyExists",
    "BrokerClient",
    "BrokerError",
    "BulkItem",
    "Check",
    "ClientTls",
    "Consumer",
    "Denied",
    "Exhausted",
    "InsecureIdentity",
    "InvalidArgument",
    "LegalBasis",
    "NotFound",
    "Outcome",
    "OversightClient",
    "Purpose",
    "ResidentReport",
    "Subject",
    "Trace",
    "TraceQuery",
    "TracedCheck",
    "Unauthenticated",
    "Unavailable",
    "Usage",
    "UsageRow",
    "Verification",
    "VerificationJob",
    "verify_attestation",
]
PROVIDER_SDK_API = [
    "AttestQuery",
    "CertificateTypeSupport",
    "Deferred",
    "FieldSpec",
    "FieldType",
    "InvalidQuery",
    "ProviderAdapter",
    "SubjectNotFound",
    "TlsConfig",
    "parse_parameters",
    "serve_provider",
    "start_provider",
]


@pytest.mark.parametrize(
    ("module", "expected"),
    [(onceonly.client, CLIENT_API), (onceonly.provider_sdk, PROVIDER_SDK_API)],
    ids=["client", "provider_sdk"],
)
def test_public_api_is_pinned(module: object, expected: list[str]) -> None:
    """Adding or removing a public name is a deliberate change: update this list and the CHANGELOG."""
    assert sorted(module.__all__) == sorted(expected)  # type: ignore[attr-defined]
    for name in expected:
        assert getattr(module, name) is not None


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(out), str(REPO)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [built] = out.glob("onceonly-*.whl")
    return built


def test_wheel_installs_one_top_level_package(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        [top_level] = [n for n in names if n.endswith(".dist-info/top_level.txt")]
        assert archive.read(top_level).decode().split() == ["onceonly"]
    assert {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")} == {"onceonly"}
    for expected in (
        "onceonly/py.typed",
        "onceonly/v1/broker_pb2.pyi",
        "onceonly/v1/broker_pb2_grpc.pyi",  # typed gRPC stubs for the client's users
        "onceonly/v1/contract.binpb",  # the contract with its comments, for server reflection
        "onceonly/broker/service.py",
        "onceonly/broker/data/agreements.toml",
        "onceonly/broker/migrations/versions/0001_initial.py",
        "onceonly/providers/sdk.py",
        "onceonly/consumers/cli.py",
    ):
        assert expected in names


def test_installed_demo_passes_beside_folders_named_like_ours(wheel: Path, tmp_path: Path) -> None:
    """Installed in a new virtual environment, ``onceonly demo`` passes from a directory that has
    its own ``providers/``, ``consumers/`` and ``broker/`` packages (which would break if imported)."""
    env_dir = tmp_path / "env"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    # The dependencies come from the development environment (a path file, not its editable
    # install of onceonly): the package under test is only the one from the wheel.
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    (site / "dev-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    work = tmp_path / "agency"
    for name in ("providers", "consumers", "broker"):
        (work / name).mkdir(parents=True)
        (work / name / "__init__.py").write_text(f"raise ImportError('the agency\\'s own {name} package')\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ONCEONLY_", "PYTHON"))}
    env["ONCEONLY_VAR_DIR"] = str(work / "var")
    where = subprocess.run(
        [str(python), "-c", "import onceonly, sys; print(onceonly.__file__)"],
        cwd=work,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert where.startswith(str(site)), where
    demo = subprocess.run(
        [str(env_dir / "bin" / "onceonly"), "demo"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "ledger" in demo.stdout
