"""The deployment files agree with the code: docker-compose.yml, Dockerfile and .env.example.

No Docker needed: the files are parsed and checked against ``app.config.Settings``, so adding,
renaming or removing a setting without updating them fails here.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic import BaseModel

from app.config import Settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
ENV_EXAMPLE = ROOT / ".env.example"

PREFIX = Settings.model_config["env_prefix"]
DELIMITER = Settings.model_config["env_nested_delimiter"]

SERVICES = ("postgres", "redis", "qdrant", "migrate", "api", "worker", "beat", "flower")
LONG_RUNNING = ("postgres", "redis", "qdrant", "api", "worker", "flower")
DOCVEC_SERVICES = ("migrate", "api", "worker", "beat", "flower")
REQUIRED_ENV = (
    "DOCVEC_DATABASE_URL",
    "DOCVEC_BROKER_URL",
    "DOCVEC_QDRANT_URL",
    "DOCVEC_STORAGE_DIR",
)
CONDITIONS = {"service_healthy", "service_completed_successfully"}
# A line of .env.example that sets a key, or documents an optional one as "# KEY=".
ENV_LINE = re.compile(r"^(?P<comment>#\s*)?(?P<key>[A-Z][A-Z0-9_]*)=(?P<value>.*)$")


# --- settings ------------------------------------------------------------------------------------


def settings_keys(
    model: type[BaseModel] = Settings, prefix: str = PREFIX
) -> dict[str, tuple[str, ...]]:
    """Every environment key of the settings, mapped to its attribute path.

    A field whose type is a model is a nested group (``DOCVEC_EMBEDDING__PROVIDER``); computed from
    ``model_fields``, so new settings and new groups are picked up without touching this test.
    """
    keys: dict[str, tuple[str, ...]] = {}
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            nested_prefix = f"{prefix}{name.upper()}{DELIMITER}"
            for key, path in settings_keys(annotation, nested_prefix).items():
                keys[key] = (name, *path)
        else:
            keys[f"{prefix}{name.upper()}"] = (name,)
    return keys


SETTINGS_KEYS = settings_keys()


def setting(settings: Settings, key: str) -> Any:
    """The value of the setting behind environment key ``key``."""
    value: Any = settings
    for attr in SETTINGS_KEYS[key]:
        value = getattr(value, attr)
    return value


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No DOCVEC_* variable from the calling shell leaks into the Settings built by a test."""
    import os

    for key in list(os.environ):
        if key.upper().startswith(PREFIX):
            monkeypatch.delenv(key)
    return monkeypatch


def test_settings_keys_cover_the_nested_groups() -> None:
    assert "DOCVEC_DATABASE_URL" in SETTINGS_KEYS
    assert "DOCVEC_EMBEDDING__PROVIDER" in SETTINGS_KEYS
    assert "DOCVEC_CHUNKING__CHUNK_SIZE" in SETTINGS_KEYS
    # Groups are expanded, never listed as a key of their own.
    assert "DOCVEC_EMBEDDING" not in SETTINGS_KEYS
    assert "DOCVEC_CHUNKING" not in SETTINGS_KEYS


# --- docker-compose.yml --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def service_env(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment, from either compose form (mapping or list of KEY=VALUE)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def published_ports(service: dict[str, Any]) -> set[int]:
    """Host ports a service publishes ("8000:8000", "127.0.0.1:8000:8000/tcp" or long syntax)."""
    ports: set[int] = set()
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            if entry.get("published") is not None:
                ports.add(int(entry["published"]))
            continue
        parts = str(entry).split("/", 1)[0].split(":")
        if len(parts) >= 2 and parts[-2].isdigit():
            ports.add(int(parts[-2]))
    return ports


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Mount target -> source of a service's volumes (short or long syntax)."""
    result: dict[str, str] = {}
    for entry in service.get("volumes") or []:
        if isinstance(entry, dict):
            result[entry["target"]] = entry.get("source", "")
        else:
            source, target, *_ = str(entry).split(":")
            result[target] = source
    return result


def test_no_obsolete_version_key(compose: dict[str, Any]) -> None:
    assert "version" not in compose


@pytest.mark.parametrize("name", SERVICES)
def test_service_exists(services: dict[str, dict[str, Any]], name: str) -> None:
    assert name in services


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_long_running_service_has_healthcheck(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    check = services[name].get("healthcheck") or {}
    assert not check.get("disable"), f"{name}: healthcheck disabled"
    test = check.get("test")
    assert test, f"{name}: healthcheck without a test"
    if isinstance(test, list):
        assert test[0] in {"CMD", "CMD-SHELL"} and len(test) > 1, f"{name}: bad test {test!r}"


def test_third_party_images_are_pinned(services: dict[str, dict[str, Any]]) -> None:
    for name in ("postgres", "redis", "qdrant"):
        image = services[name]["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: pin a tag, not {image}"
    assert "pgvector" in services["postgres"]["image"], "postgres needs pgvector for that store"


@pytest.mark.parametrize(("name", "port"), [("api", 8000), ("flower", 5555), ("qdrant", 6333)])
def test_published_port(services: dict[str, dict[str, Any]], name: str, port: int) -> None:
    assert port in published_ports(services[name])


def test_worker_is_scalable(services: dict[str, dict[str, Any]]) -> None:
    worker = services["worker"]
    # `docker compose up --scale worker=N` refuses a fixed container name or host port, and a fixed
    # hostname would give every copy the same Celery node name.
    assert not worker.get("ports")
    assert "container_name" not in worker
    assert "hostname" not in worker


@pytest.mark.parametrize("name", DOCVEC_SERVICES)
def test_docvec_service_env_has_the_shared_services(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    env = service_env(services[name])
    missing = [key for key in REQUIRED_ENV if not env.get(key)]
    assert not missing, f"{name}: missing {missing}"


@pytest.mark.parametrize("name", DOCVEC_SERVICES)
def test_docvec_services_run_the_image_role(services: dict[str, dict[str, Any]], name: str) -> None:
    service = services[name]
    assert service.get("build") or service.get("image"), name
    command = service.get("command")
    words = shlex.split(command) if isinstance(command, str) else list(command or [])
    assert words[:2] == ["docvec", name], f"{name}: command {command!r}"


def test_every_docvec_env_key_is_a_setting(services: dict[str, dict[str, Any]]) -> None:
    # Settings ignores unknown keys (extra="ignore"), so a typo would silently do nothing.
    unknown = {
        f"{name}: {key}"
        for name, service in services.items()
        for key in service_env(service)
        if key.upper().startswith(PREFIX) and key.upper() not in SETTINGS_KEYS
    }
    assert not unknown, f"not settings in app/config.py: {sorted(unknown)}"


def test_api_and_worker_share_the_files_volume(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    storage_dirs = {service_env(services[n])["DOCVEC_STORAGE_DIR"] for n in ("api", "worker")}
    assert len(storage_dirs) == 1, f"api and worker disagree on DOCVEC_STORAGE_DIR: {storage_dirs}"
    (storage_dir,) = storage_dirs
    api_source = mounts(services["api"]).get(storage_dir)
    worker_source = mounts(services["worker"]).get(storage_dir)
    assert api_source, f"api mounts nothing at {storage_dir}"
    assert api_source == worker_source, "api and worker must mount the same volume there"
    assert api_source in (compose.get("volumes") or {}), f"{api_source} is not a named volume"


def test_depends_on_waits_for_health_or_completion(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        depends_on = service.get("depends_on")
        if depends_on is None:
            continue
        # The list form only waits for the container to start, not to be ready.
        assert isinstance(depends_on, dict), f"{name}: depends_on needs conditions"
        for dependency, spec in depends_on.items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            condition = (spec or {}).get("condition")
            assert condition in CONDITIONS, f"{name} -> {dependency}: condition {condition!r}"
            if condition == "service_healthy":
                assert services[dependency].get("healthcheck"), f"{dependency} has no healthcheck"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "api",
            {
                "migrate": "service_completed_successfully",
                "postgres": "service_healthy",
                "redis": "service_healthy",
                "qdrant": "service_healthy",
            },
        ),
        (
            "worker",
            {
                "migrate": "service_completed_successfully",
                "postgres": "service_healthy",
                "redis": "service_healthy",
                "qdrant": "service_healthy",
            },
        ),
        ("migrate", {"postgres": "service_healthy"}),
        ("flower", {"redis": "service_healthy"}),
    ],
)
def test_start_order(
    services: dict[str, dict[str, Any]], name: str, expected: dict[str, str]
) -> None:
    depends_on = services[name].get("depends_on") or {}
    for dependency, condition in expected.items():
        assert depends_on.get(dependency, {}).get("condition") == condition, (
            f"{name} must wait for {dependency}: {condition}"
        )


def test_migrate_is_one_shot(services: dict[str, dict[str, Any]]) -> None:
    # A restart policy would rerun a finished migration and never let dependants see "completed".
    assert str(services["migrate"].get("restart", "no")) == "no"


@pytest.mark.parametrize("name", DOCVEC_SERVICES)
def test_compose_env_parses_into_settings(
    clean_env: pytest.MonkeyPatch, services: dict[str, dict[str, Any]], name: str
) -> None:
    env = service_env(services[name])
    for key, value in env.items():
        if key.upper().startswith(PREFIX):
            clean_env.setenv(key, value)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]

    assert settings.database_url is not None
    assert settings.database_url.startswith("postgresql")
    assert settings.sqlalchemy_url == settings.database_url
    assert settings.qdrant_url
    assert settings.vector_store == "qdrant"
    assert settings.broker_url.startswith("redis://")
    assert settings.storage_dir == Path(env["DOCVEC_STORAGE_DIR"])
    assert settings.files_dir == Path(env["DOCVEC_STORAGE_DIR"])
    assert settings.embedding.provider == "local"
    assert settings.embedding.model == "all-MiniLM-L6-v2"
    if name == "api":
        # Inside a container the default 127.0.0.1 is unreachable through the published port.
        assert settings.api_host == "0.0.0.0"
        assert str(settings.api_port) in {str(p) for p in published_ports(services["api"])}


def test_compose_urls_point_at_the_compose_services(
    services: dict[str, dict[str, Any]],
) -> None:
    env = service_env(services["api"])
    db = urlsplit(env["DOCVEC_DATABASE_URL"])
    postgres = service_env(services["postgres"])
    assert db.hostname == "postgres"
    assert db.username == postgres["POSTGRES_USER"]
    assert db.password == postgres["POSTGRES_PASSWORD"]
    assert db.path.lstrip("/") == postgres["POSTGRES_DB"]
    assert urlsplit(env["DOCVEC_BROKER_URL"]).hostname == "redis"
    qdrant = urlsplit(env["DOCVEC_QDRANT_URL"])
    assert qdrant.hostname == "qdrant"
    assert qdrant.port == 6333


# --- docker-compose.rabbitmq.yml: the RabbitMQ variant, merged over the main file ---------------

RABBITMQ_FILE = ROOT / "docker-compose.rabbitmq.yml"


def _merge(base: Any, override: Any) -> Any:
    """Compose's merge of an override file: mappings merge key by key, anything else replaces."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = _merge(base[key], value) if key in base else value
        return merged
    return override


@pytest.fixture(scope="module")
def rabbitmq_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    override = yaml.safe_load(RABBITMQ_FILE.read_text())
    assert isinstance(override, dict)
    merged = _merge(compose, override)
    assert "rabbitmq-data" in merged["volumes"]
    return merged["services"]


def test_rabbitmq_service_is_pinned_and_checked(
    rabbitmq_services: dict[str, dict[str, Any]],
) -> None:
    rabbit = rabbitmq_services["rabbitmq"]
    image = rabbit["image"]
    assert ":" in image and not image.endswith(":latest")
    assert rabbit["healthcheck"]["test"][0] in {"CMD", "CMD-SHELL"}
    assert "/var/lib/rabbitmq" in mounts(rabbit), "queues must survive a container restart"


@pytest.mark.parametrize("name", DOCVEC_SERVICES)
def test_rabbitmq_variant_env_parses_into_settings(
    clean_env: pytest.MonkeyPatch, rabbitmq_services: dict[str, dict[str, Any]], name: str
) -> None:
    service = rabbitmq_services[name]
    env = service_env(service)
    for key, value in env.items():
        if key.upper().startswith(PREFIX):
            clean_env.setenv(key, value)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]  # refuses a short timeout
    broker = urlsplit(settings.broker_url)
    assert broker.scheme == "amqp" and broker.hostname == "rabbitmq"
    rabbit_env = service_env(rabbitmq_services["rabbitmq"])
    assert broker.username == rabbit_env["RABBITMQ_DEFAULT_USER"]
    assert broker.path.lstrip("/") == rabbit_env["RABBITMQ_DEFAULT_VHOST"]
    # docvec's idea of consumer_timeout is RabbitMQ's (milliseconds there).
    erl_args = rabbit_env["RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"].split()
    timeout_ms = int(erl_args[erl_args.index("consumer_timeout") + 1])
    assert timeout_ms == settings.broker_consumer_timeout_s * 1000
    assert settings.longest_delivery_s < settings.broker_consumer_timeout_s
    assert service["depends_on"]["rabbitmq"]["condition"] == "service_healthy"
    # The rest of the shared environment is kept.
    assert settings.database_url and settings.qdrant_url


def test_default_time_limits_are_refused_on_stock_rabbitmq(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("DOCVEC_BROKER_URL", "amqp://guest:guest@localhost:5672//")
    with pytest.raises(ValueError, match="consumer_timeout"):
        Settings(_env_file=None)  # type: ignore[call-arg]
    clean_env.setenv("DOCVEC_BROKER_CONSUMER_TIMEOUT_S", "7200")
    assert Settings(_env_file=None).broker_consumer_timeout_s == 7200  # type: ignore[call-arg]


@pytest.mark.parametrize("name", DOCVEC_SERVICES)
def test_compose_keeps_the_model_offline(services: dict[str, dict[str, Any]], name: str) -> None:
    assert service_env(services[name]).get("HF_HUB_OFFLINE") == "1"


# --- .env.example --------------------------------------------------------------------------------


def env_example_lines() -> list[tuple[str, str, bool]]:
    """(key, value, commented_out) for every DOCVEC_* line of .env.example, in order."""
    result = []
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = ENV_LINE.match(line.strip())
        if match and match["key"].startswith(PREFIX):
            result.append((match["key"], match["value"], bool(match["comment"])))
    return result


def test_env_example_lists_every_setting_exactly() -> None:
    keys = [key for key, _, _ in env_example_lines()]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    assert not duplicates, f"listed twice: {duplicates}"
    missing = sorted(set(SETTINGS_KEYS) - set(keys))
    unknown = sorted(set(keys) - set(SETTINGS_KEYS))
    assert not missing, f"settings missing from .env.example: {missing}"
    assert not unknown, f".env.example keys that are not settings: {unknown}"


def test_env_example_documents_each_key() -> None:
    lines = ENV_EXAMPLE.read_text().splitlines()
    for index, line in enumerate(lines):
        match = ENV_LINE.match(line.strip())
        if not (match and match["key"].startswith(PREFIX)):
            continue
        above = lines[index - 1].strip() if index else ""
        assert above.startswith("#") and not ENV_LINE.match(above), (
            f"{match['key']}: put a one-line comment above it"
        )


def test_env_example_optional_keys_are_the_unset_defaults(clean_env: pytest.MonkeyPatch) -> None:
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    for key, value, commented in env_example_lines():
        if commented:
            assert setting(defaults, key) is None, f"{key} has a default: list it uncommented"
            assert value == "", f"{key}: leave the commented-out example empty"
        else:
            assert setting(defaults, key) is not None, f"{key} defaults to unset: comment it out"


def test_env_example_values_are_the_defaults(clean_env: pytest.MonkeyPatch) -> None:
    from_example = Settings(_env_file=ENV_EXAMPLE)  # type: ignore[call-arg]
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    for key, value, commented in env_example_lines():
        if not commented:
            assert setting(from_example, key) == setting(defaults, key), (
                f"{key}={value} in .env.example, default {setting(defaults, key)!r}"
            )
    assert from_example.model_dump() == defaults.model_dump()


def test_env_example_is_actually_read(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Guards the test above: a file pydantic-settings cannot find or parse would yield the defaults.
    text = ENV_EXAMPLE.read_text()
    assert "\nDOCVEC_QUEUE=docvec\n" in text
    mutated = tmp_path / ".env"
    mutated.write_text(
        text.replace("\nDOCVEC_QUEUE=docvec\n", "\nDOCVEC_QUEUE=from-file\n").replace(
            "\nDOCVEC_EMBEDDING__BATCH_SIZE=32\n", "\nDOCVEC_EMBEDDING__BATCH_SIZE=7\n"
        )
    )
    settings = Settings(_env_file=mutated)  # type: ignore[call-arg]
    assert settings.queue == "from-file"
    assert settings.embedding.batch_size == 7


def test_env_example_mentions_library_variables() -> None:
    text = ENV_EXAMPLE.read_text()
    assert "TIKTOKEN_CACHE_DIR" in text
    assert "HF_HUB_OFFLINE" in text


# --- Dockerfile ----------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        instruction, _, args = line.partition(" ")
        instructions.append((instruction.upper(), args.strip()))
    return instructions


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, args in dockerfile_instructions():
        if instruction == "ENV":
            for word in shlex.split(args):
                key, _, value = word.partition("=")
                env[key] = value
    return env


def pyproject_torch_pin() -> str:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (pin,) = [dep for dep in dependencies if re.match(r"torch\s*==", dep)]
    return pin.replace(" ", "")


def test_dockerfile_installs_cpu_torch_first() -> None:
    runs = [args for instruction, args in dockerfile_instructions() if instruction == "RUN"]
    pin = pyproject_torch_pin()
    torch_runs = [i for i, args in enumerate(runs) if pin in args.split()]
    assert torch_runs, f"no RUN installs {pin} (the pin in pyproject.toml)"
    torch_run = runs[torch_runs[0]]
    assert "--index-url https://download.pytorch.org/whl/cpu" in " ".join(torch_run.split())
    package_runs = [i for i, args in enumerate(runs) if re.search(r"pip install \.(\s|$)", args)]
    assert package_runs, "the package itself is never installed"
    # Otherwise `pip install .` resolves torch from PyPI: the CUDA build, gigabytes of it.
    assert torch_runs[0] < package_runs[0]


def test_dockerfile_base_user_and_command() -> None:
    instructions = dockerfile_instructions()
    assert instructions[0][0] == "FROM"
    assert instructions[0][1].startswith("python:3.11-slim")
    users = [args for instruction, args in instructions if instruction == "USER"]
    assert users and users[-1] not in {"root", "0", "0:0"}, "the image must not run as root"
    cmd = [args for instruction, args in instructions if instruction == "CMD"][-1]
    assert cmd.replace(" ", "") == '["docvec","api"]'
    exposed = [args for instruction, args in instructions if instruction == "EXPOSE"]
    assert any("8000" in args.split() for args in exposed)


def test_dockerfile_env() -> None:
    env = dockerfile_env()
    assert env.get("HF_HUB_OFFLINE") == "1"
    assert env.get("DOCVEC_DATA_DIR") == "/data"
    unknown = sorted(k for k in env if k.startswith(PREFIX) and k not in SETTINGS_KEYS)
    assert not unknown, f"Dockerfile sets unknown settings: {unknown}"


def test_dockerfile_copies_what_the_package_needs() -> None:
    copied: set[str] = set()
    for instruction, args in dockerfile_instructions():
        if instruction == "COPY":
            words = [w for w in shlex.split(args) if not w.startswith("--")]
            copied.update(w.rstrip("/") for w in words[:-1])
    for needed in ("pyproject.toml", "README.md", "alembic.ini", "app", "workers", "alembic"):
        assert needed in copied, f"Dockerfile does not COPY {needed}"
    ignored = {
        line.strip().rstrip("/")
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert not copied & ignored, (
        f".dockerignore hides what the Dockerfile copies: {copied & ignored}"
    )
    assert {".venv", ".git", ".docvec"} <= ignored
