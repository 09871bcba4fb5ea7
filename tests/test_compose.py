"""compose.yaml checked against the code, without a Docker engine: it is parsed, not run.

What a typo would break at ``docker compose up`` is checked here instead: the services and
their images or build contexts, every ``onceonly`` command line (parsed by the real CLI parser),
every ``ONCEONLY_*`` variable (one the code reads, with a value the broker's configuration
accepts), every ``OTEL_*`` variable (a standard one), ports, health checks, start-up order,
volumes, certificates naming every host they are reached at, and the collector's pipeline.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from onceonly.broker.config import _ENV_NAMES, BrokerConfig, packaged_seed
from onceonly.consumers.cli import build_parser
from onceonly.pki import main as pki_main
from onceonly.processes import onceonly_argv
from onceonly.serving import split_bind
from tests.conftest import Platform, free_port

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "compose.yaml"
IMAGE_ROOT = "/app"  # where deploy/Dockerfile copies the repository
PROVIDERS = ("registry", "tax", "employment")
SOURCE_PACKAGES = ("onceonly", "broker", "providers", "consumers")


def _interpolate(value: Any) -> Any:
    """Compose's ``${VAR:-default}`` / ``${VAR}`` substitution, with an empty environment."""
    if isinstance(value, str):
        return re.sub(r"\$\{(\w+)(?::?-([^}]*))?\}", lambda m: m.group(2) or "", value)
    if isinstance(value, list):
        return [_interpolate(v) for v in value]
    if isinstance(value, dict):
        return {k: _interpolate(v) for k, v in value.items()}
    return value


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = _interpolate(yaml.safe_load(COMPOSE.read_text("utf-8")))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(compose["services"])


def env_of(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def command_of(service: Mapping[str, Any]) -> list[str]:
    command = service.get("command") or []
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def command_lines(service: Mapping[str, Any]) -> list[list[str]]:
    """The ``onceonly`` command lines a service runs: its command, or each ``onceonly …`` of a
    ``sh -c`` script joined by ``&&`` (without the leading ``onceonly``)."""
    if service.get("entrypoint") == ["sh", "-c"]:
        script = (
            " ".join(command_of(service))
            if isinstance(service.get("command"), str)
            else service["command"][0]
        )
        lines = [shlex.split(part) for part in script.split("&&")]
        assert all(line[0] == "onceonly" for line in lines), f"only onceonly commands: {script}"
        return [line[1:] for line in lines]
    return [command_of(service)]


def uses_onceonly_image(service: Mapping[str, Any]) -> bool:
    build = service.get("build")
    return isinstance(build, dict) and build.get("dockerfile") == "deploy/Dockerfile"


def brokers(services: Mapping[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in services.items() if command_of(s)[:2] == ["serve", "broker"]}


def providers(services: Mapping[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in services.items() if command_of(s)[:2] == ["serve", "provider"]}


def source_env_names() -> set[str]:
    """Every ``ONCEONLY_*`` name that appears as a string literal in the product's source."""
    names: set[str] = set()
    for package in SOURCE_PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "v1" in path.relative_to(ROOT).parts:
                continue
            names.update(re.findall(r"[\"'](ONCEONLY_[A-Z0-9_]+)[\"']", path.read_text("utf-8")))
    return names


def standard_otel_names() -> set[str]:
    """The ``OTEL_*`` variables the OpenTelemetry Python API and SDK define."""
    from opentelemetry import environment_variables as api
    from opentelemetry.sdk import environment_variables as sdk

    return {getattr(m, n) for m in (api, sdk) for n in dir(m) if n.startswith("OTEL_")}


def healthcheck_command(service: Mapping[str, Any]) -> list[str]:
    test = service["healthcheck"]["test"]
    if isinstance(test, str):
        return shlex.split(test)
    assert test[0] in ("CMD", "CMD-SHELL"), test
    return list(test[1:]) if test[0] == "CMD" else shlex.split(test[1])


def host_ports(service: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(host port, container port) of each published port."""
    for entry in service.get("ports") or []:
        parts = str(entry).split(":")
        assert len(parts) in (2, 3), f"publish ports as HOST:CONTAINER, got {entry!r}"
        yield parts[-2], parts[-1].split("/")[0]


# --- the tests ----------------------------------------------------------------------------------


def test_the_platform_is_all_there(services: dict[str, dict[str, Any]]) -> None:
    for name in ("postgres", "pki", *PROVIDERS, "otel-collector", "jaeger"):
        assert name in services, f"compose.yaml has no service {name!r}"
    assert len(brokers(services)) >= 2, "at least two broker replicas"
    assert sorted(command_of(s)[2] for s in providers(services).values()) == sorted(PROVIDERS)
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["jaeger"]["image"].startswith("jaegertracing/all-in-one")
    for name, service in services.items():
        image = service.get("image", "")
        assert "build" in service or image, f"{name}: neither an image nor a build"
        if image and "build" not in service:
            assert ":" in image and not image.endswith(":latest"), f"{name}: pin the image version"


def test_build_context_and_dockerfile_exist(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        if "build" not in service:
            continue
        build = service["build"]
        context = ROOT / (build if isinstance(build, str) else build.get("context", "."))
        dockerfile = context / (
            build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile"
        )
        assert context.is_dir(), f"{name}: no build context {context}"
        assert dockerfile.is_file(), f"{name}: no Dockerfile {dockerfile}"
        for line in dockerfile.read_text("utf-8").splitlines():
            if line.startswith("COPY ") and "--from" not in line:
                *sources, _dest = line.split()[1:]
                for source in sources:
                    assert (context / source).exists(), f"{dockerfile}: COPY {source}: not in the context"


def test_every_command_is_a_real_onceonly_command(services: dict[str, dict[str, Any]]) -> None:
    parser = build_parser()
    for name, service in services.items():
        if not uses_onceonly_image(service):
            continue
        for command in command_lines(service):
            assert command, f"{name}: no command (the image's entrypoint is `onceonly`)"
            try:
                parser.parse_args(command)
            except SystemExit:
                pytest.fail(f"{name}: `onceonly {' '.join(command)}` does not parse")
        if "healthcheck" in service:
            check = healthcheck_command(service)
            assert check[0] == "onceonly", f"{name}: health check should use `onceonly health`"
            parser.parse_args(check[1:])


def test_every_onceonly_variable_is_one_the_code_reads(services: dict[str, dict[str, Any]]) -> None:
    known = source_env_names()
    assert set(_ENV_NAMES.values()) <= known  # the grep finds the broker's configuration
    for name, service in services.items():
        for var in env_of(service):
            if var.startswith("ONCEONLY_"):
                assert var in known, f"{name}: {var} is read nowhere in the code"
                assert not var.startswith("ONCEONLY_TEST_"), f"{name}: {var} is for the test suite"


def test_every_otel_variable_is_a_standard_one(services: dict[str, dict[str, Any]]) -> None:
    standard = standard_otel_names()
    for name, service in services.items():
        for var in env_of(service):
            if var.startswith("OTEL_"):
                assert var in standard, f"{name}: {var} is not an OpenTelemetry variable"


def test_brokers_are_replicas_of_one_platform(services: dict[str, dict[str, Any]]) -> None:
    replicas = brokers(services)
    configs = {name: BrokerConfig.from_env(env_of(s)) for name, s in replicas.items()}  # values parse
    chain_ids = [c.chain_id for c in configs.values()]
    assert all(chain_ids) and len(set(chain_ids)) == len(chain_ids), "each replica needs its own chain"
    assert len({c.database_url for c in configs.values()}) == 1, "replicas share one database"
    url = next(iter(configs.values())).database_url
    assert url.startswith("postgresql://")
    assert url.split("@", 1)[1].split(":")[0] in services, "the database host is a compose service"
    for name, config in configs.items():
        service = replicas[name]
        assert not config.insecure
        mounts = dict(reversed(v.split(":")[:2]) for v in service["volumes"])
        # One keys directory for all: the same JWKS, pseudonyms and stored replies everywhere.
        assert mounts.get(str(config.keys_dir)) == "broker-keys", f"{name}: mount the shared keys"
        assert str(config.effective_tls_dir) in mounts
        assert set(config.providers) == set(PROVIDERS)
        for pid, target in config.providers.items():
            host, port = split_bind(target)
            assert host in services, f"{name}: provider {pid} at unknown host {host}"
            listen = env_of(services[host]).get("ONCEONLY_PROVIDER_LISTEN", "")
            assert split_bind(listen)[1] == port, f"{name}: {pid} listens on {listen}, not {port}"
        listen_port = str(split_bind(config.listen)[1])
        scsp_port = str(split_bind(config.scsp_listen)[1])  # the SCSP facade, which needs the seal
        assert [c for _, c in host_ports(service)] == [listen_port, scsp_port], f"{name}: publish both ports"
        assert env_of(service).get("OTEL_TRACES_EXPORTER") == "otlp"
    seeders = [n for n, c in configs.items() if c.agreements_seed is not None]
    assert seeders, "one replica seeds the agreements"
    for name in seeders:
        seed = configs[name].agreements_seed
        assert seed is not None
        if seed == packaged_seed():  # `demo`: the file shipped in the package, wherever it is installed
            assert seed.is_file()
            continue
        assert seed.is_relative_to(IMAGE_ROOT)
        assert (ROOT / seed.relative_to(IMAGE_ROOT)).is_file(), f"{name}: no seed file {seed} in the image"


def test_published_ports_are_unique(services: dict[str, dict[str, Any]]) -> None:
    published = Counter(h for s in services.values() for h, _ in host_ports(s))
    assert published, "the brokers are published"
    assert [p for p, n in published.items() if n > 1] == []


def test_health_checks_and_start_up_order(services: dict[str, dict[str, Any]]) -> None:
    for name in ("postgres", *brokers(services), *providers(services)):
        assert "healthcheck" in services[name], f"{name}: no health check"
    assert healthcheck_command(services["postgres"])[0] == "pg_isready"
    for name, service in {**brokers(services), **providers(services)}.items():
        check = build_parser().parse_args(healthcheck_command(service)[1:])
        assert check.command == "health"
        env = env_of(service)
        listen = env.get("ONCEONLY_BROKER_LISTEN") or env.get("ONCEONLY_PROVIDER_LISTEN") or ""
        assert split_bind(check.target)[1] == split_bind(listen)[1], f"{name}: health checks another port"
        assert split_bind(check.target)[0] == "127.0.0.1"
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        for dep, spec in depends.items() if isinstance(depends, dict) else ((d, {}) for d in depends):
            assert dep in services, f"{name} depends on unknown service {dep!r}"
            condition = spec.get("condition", "service_started")
            if condition == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep} to be healthy: no check"
            elif condition == "service_completed_successfully":
                assert services[dep].get("restart", "no") == "no", f"{dep} is a one-shot job"
            else:
                assert condition == "service_started", condition
    for name in brokers(services):
        depends = services[name]["depends_on"]
        assert any(d == "postgres" or d in brokers(services) for d in depends), name
        assert all(depends.get(p, {}).get("condition") == "service_healthy" for p in PROVIDERS), name


def test_volumes_are_declared_and_bind_mounts_exist(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        for volume in service.get("volumes") or []:
            source = str(volume).split(":")[0]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name}: bind mount {source} does not exist"
            else:
                assert source in declared, f"{name}: volume {source} is not declared"


def test_certificates_name_every_host_they_are_reached_at(services: dict[str, dict[str, Any]]) -> None:
    args = build_parser().parse_args(command_lines(services["pki"])[0])
    assert args.pki_command == "init"
    names = set(args.server_name)
    for name, service in {**brokers(services), **providers(services)}.items():
        assert name in names, f"the certificates do not name {name}"
        aliases = (service.get("networks") or {}).get("default", {}) or {}
        for alias in aliases.get("aliases", []) if isinstance(aliases, dict) else []:
            assert alias in names, f"the certificates do not name {alias} ({name}'s alias)"


def test_telemetry_reaches_jaeger(services: dict[str, dict[str, Any]]) -> None:
    collector = services["otel-collector"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in collector["volumes"]}
    config_path = next(a.split("=", 1)[1] for a in command_of(collector) if a.startswith("--config="))
    config = yaml.safe_load((ROOT / mounts[config_path]).read_text("utf-8"))
    pipeline = config["service"]["pipelines"]["traces"]
    for kind in ("receivers", "processors", "exporters"):
        for component in pipeline.get(kind, []):
            assert component in config[kind], f"collector: {kind[:-1]} {component} is not defined"
    grpc_port = split_bind(config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"])[1]
    for name, service in brokers(services).items():
        endpoint = env_of(service)["OTEL_EXPORTER_OTLP_ENDPOINT"]
        host, port = split_bind(endpoint.split("://", 1)[1])
        assert (host, port) == ("otel-collector", grpc_port), f"{name}: spans go to {endpoint}"
    exporters = [config["exporters"][e] for e in pipeline["exporters"]]
    assert any(split_bind(e["endpoint"])[0] == "jaeger" for e in exporters), "collector exports to jaeger"
    assert env_of(services["jaeger"]).get("COLLECTOR_OTLP_ENABLED") == "true"
    metrics_pipeline = config["service"]["pipelines"]["metrics"]
    assert "otlp" in metrics_pipeline["receivers"] and metrics_pipeline["exporters"] == ["prometheus"]
    for name, service in {**brokers(services), **providers(services)}.items():
        assert env_of(service).get("OTEL_METRICS_EXPORTER") == "otlp", f"{name}: metrics are not sent"


def test_the_collector_is_the_pinned_contrib_binary_with_a_health_check_that_can_run(
    services: dict[str, dict[str, Any]],
) -> None:
    """The published collector image is distroless (nothing in it could probe a port), so compose
    builds the same pinned binary onto Alpine; the check asks the health_check extension the
    collector's configuration enables, on the port it listens on."""
    collector = services["otel-collector"]
    dockerfile = (
        ROOT
        / "deploy"
        / collector["build"]["context"].removeprefix("deploy")
        / collector["build"]["dockerfile"]
    )
    stages = [
        line.split()[1] for line in dockerfile.read_text("utf-8").splitlines() if line.startswith("FROM ")
    ]
    assert stages[0].startswith("otel/opentelemetry-collector-contrib:"), stages
    assert stages[-1].startswith("alpine:"), "the final image must have a shell tool to probe with"
    for image in stages:
        assert ":" in image and not image.endswith(":latest"), f"{dockerfile.name}: pin {image}"
    assert collector["image"].rsplit(":", 1)[1] == stages[0].rsplit(":", 1)[1], (
        "tag the image as the collector"
    )

    mounts = {v.split(":")[1]: v.split(":")[0] for v in collector["volumes"]}
    config_path = next(a.split("=", 1)[1] for a in command_of(collector) if a.startswith("--config="))
    config = yaml.safe_load((ROOT / mounts[config_path]).read_text("utf-8"))
    assert "health_check" in config["service"]["extensions"]
    health_port = split_bind(config["extensions"]["health_check"]["endpoint"])[1]
    test = healthcheck_command(collector)
    assert test[0] == "wget"
    url = test[-1]
    assert (
        url.startswith("http://127.0.0.1:")
        and split_bind(url.split("://", 1)[1].rstrip("/"))[1] == health_port
    )


# --- the health check the compose file relies on -------------------------------------------------


async def onceonly_health(*args: str) -> tuple[int, str]:
    """``onceonly health ARGS`` as a container health check runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONCEONLY_")}
    proc = await asyncio.create_subprocess_exec(
        *onceonly_argv(),
        "health",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_onceonly_health_reports_serving_draining_and_unreachable(platform: Platform) -> None:
    await platform.start_reference_providers()
    app = await platform.start_broker()
    tls = ["--tls-dir", str(platform.pki.dir)]

    code, out = await onceonly_health("--target", app.target, *tls, "--cert", "broker")
    assert (code, out.strip()) == (0, f"{app.target}: SERVING")
    # A provider, checked with its own certificate (any certificate of the CA will do).
    tax = platform.providers["tax"].target
    assert (await onceonly_health("--target", tax, *tls, "--cert", "tax"))[0] == 0
    # Without a client certificate the broker's mutual TLS refuses the connection: the broker is up,
    # the credential is missing (exit 5, and the tool says so), not "unreachable" (4).
    code, out = await onceonly_health("--target", app.target, *tls, "--timeout", "2")
    assert code == 5 and "the broker requires a client certificate" in out, out

    await app.server.health.enter_graceful_shutdown()  # what SIGTERM does first
    code, out = await onceonly_health("--target", app.target, *tls, "--cert", "broker")
    assert (code, out.strip()) == (1, f"{app.target}: NOT_SERVING")

    closed = f"127.0.0.1:{free_port()}"
    code, out = await onceonly_health("--target", closed, *tls, "--cert", "broker", "--timeout", "1")
    assert code == 4 and ("UNAVAILABLE" in out or "DEADLINE_EXCEEDED" in out), out


def test_the_file_follows_the_compose_specification() -> None:
    """Validated against the compose specification's JSON schema (check-jsonschema's vendored copy:
    no network), besides parsing it."""
    checker = Path(sys.executable).parent / "check-jsonschema"
    done = subprocess.run(
        [str(checker), "--builtin-schema", "vendor.compose-spec", str(ROOT / "compose.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_each_service_holds_only_its_own_key(services: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    """A compromised provider must not mint an oversight certificate: no running service mounts the
    CA's key, and each mounts a volume of its own. The pki service's script, run here, gives each
    volume only its certificate and key, the CA certificate (and the revocation list)."""
    mounts = {
        name: {str(v).split(":")[0] for v in service.get("volumes") or []}
        for name, service in services.items()
    }
    assert [n for n, m in mounts.items() if "pki-ca" in m] == ["pki"]
    for name in [*brokers(services), *providers(services)]:
        own = {m for m in mounts[name] if m.startswith("pki-")}
        expected = "pki-broker" if name in brokers(services) else f"pki-{name}"
        assert own == {expected}, f"{name} mounts {own}"

    ca, out = tmp_path / "ca", tmp_path / "out"
    for line in command_lines(services["pki"]):
        args = [a.replace("/ca", str(ca)).replace("/out", str(out)) for a in line]
        assert pki_main(args[1:]) == 0, args
    for name in ("broker", "registry", "tax", "employment"):
        files = sorted(p.name for p in (out / name).iterdir())
        seal = ["broker-seal.pem", "broker-seal-key.pem"] if name == "broker" else []  # its SCSP answers
        assert files == sorted(["ca.pem", f"{name}.pem", f"{name}-key.pem", *seal]), (name, files)
        assert (out / name / f"{name}-key.pem").stat().st_mode & 0o077 == 0
