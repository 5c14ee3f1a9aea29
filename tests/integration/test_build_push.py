"""Build and push against the local stack's real Docker engine and TLS registry with auth.

Each sample service is built with deploybook's `build_image`, started with ``docker run`` and
asked for its health; pushed with `push_image`, its digest confirmed through the registry's v2
API. The failure paths a release meets (missing Dockerfile, failing step, wrong password,
unreachable registry) each give one clear error naming where it came from. A base image kept
in the stack's registry (which refuses anonymous pulls) is pulled with the release's credentials.
"""

from __future__ import annotations

import base64
import io
import json
import subprocess
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker
import pytest

from deploybook.errors import BuildError, PushError, RegistryError
from deploybook.images.build import BuildResult, build_image, oci_labels
from deploybook.images.credentials import RegistryAuth, resolve_credentials
from deploybook.images.push import push_image
from deploybook.images.registry import RegistryClient

pytestmark = pytest.mark.integration

SERVICES = ("gateway", "annotation", "terms", "worker")
HTTP_SERVICES = ("gateway", "annotation", "terms")
Stack = Any  # tests/integration/conftest.py: the stack's client settings
PortPicker = Callable[[], int]
HttpJson = Callable[[str], tuple[int, dict[str, Any]]]

VERSION = "1.4.0-it"
REVISION = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def built(
    engine: docker.DockerClient, prepared_app: Path, run_id: str, cleanup_images: list[str]
) -> dict[str, tuple[BuildResult, list[str]]]:
    """Every sample service built once for this module, with the lines streamed to on_line."""
    results: dict[str, tuple[BuildResult, list[str]]] = {}
    labels = oci_labels(revision=REVISION, source="https://example.invalid/dx29.git", version=VERSION)
    for service in SERVICES:
        streamed: list[str] = []
        tag = f"dx29/{service}:it-{run_id}"
        cleanup_images.append(tag)
        result = build_image(
            engine,
            context=prepared_app / service,
            dockerfile="Dockerfile",
            tag=tag,
            labels=labels,
            on_line=streamed.append,
        )
        results[service] = (result, streamed)
    return results


def _run(engine: docker.DockerClient, containers: list[Any], image: str, **environment: str) -> Any:
    container = engine.containers.run(image, detach=True, network_mode="host", environment=environment)
    containers.append(container)
    return container


@pytest.mark.parametrize("service", SERVICES)
def test_build_labels_user_and_log(
    service: str, engine: docker.DockerClient, built: dict[str, tuple[BuildResult, list[str]]]
) -> None:
    result, streamed = built[service]
    image = engine.api.inspect_image(result.image_id)
    config = image["Config"]
    assert config["Labels"]["org.opencontainers.image.revision"] == REVISION
    assert config["Labels"]["org.opencontainers.image.version"] == VERSION
    assert config["Labels"]["org.opencontainers.image.source"] == "https://example.invalid/dx29.git"
    assert config["Labels"]["org.opencontainers.image.created"].endswith("Z")
    assert config["User"] == "10001:10001"
    assert f"REVISION={REVISION}" in config["Env"] and f"SERVICE={service}" in config["Env"]
    assert image["Size"] < 5_000_000, f"{service} image is {image['Size']} bytes"
    assert result.tag in image["RepoTags"]
    assert streamed and streamed == result.log.splitlines()
    # FROM scratch: nothing to pull, so BuildKit builds it, one numbered line per step.
    assert streamed[0].startswith("BuildKit builds it") and "[2/2] COPY app/ /app/" in " ".join(streamed)
    assert any(line.startswith("Successfully tagged") for line in streamed)


@pytest.mark.parametrize("service", HTTP_SERVICES)
def test_service_answers_health_with_version_and_revision(
    service: str,
    engine: docker.DockerClient,
    built: dict[str, tuple[BuildResult, list[str]]],
    containers: list[Any],
    free_port: PortPicker,
    http_json: HttpJson,
) -> None:
    port = free_port()
    _run(engine, containers, built[service][0].image_id, PORT=str(port))
    status, body = http_json(f"http://127.0.0.1:{port}/health")
    assert (status, body) == (200, {"service": service, "version": VERSION, "revision": REVISION})


def test_gateway_answers_with_the_backends_health(
    engine: docker.DockerClient,
    built: dict[str, tuple[BuildResult, list[str]]],
    containers: list[Any],
    free_port: PortPicker,
    http_json: HttpJson,
) -> None:
    backend_port, gateway_port = free_port(), free_port()
    _run(engine, containers, built["annotation"][0].image_id, PORT=str(backend_port))
    backend = f"http://127.0.0.1:{backend_port}/health"
    _run(engine, containers, built["gateway"][0].image_id, PORT=str(gateway_port), ANNOTATION_URL=backend)
    http_json(backend)  # the backend is up before the gateway is asked
    status, body = http_json(f"http://127.0.0.1:{gateway_port}/api/annotation")
    assert status == 200, body
    assert body["upstream"] == backend
    assert body["answer"] == {"service": "annotation", "version": VERSION, "revision": REVISION}


def test_gateway_reports_an_unreachable_backend_as_502(
    engine: docker.DockerClient,
    built: dict[str, tuple[BuildResult, list[str]]],
    containers: list[Any],
    free_port: PortPicker,
    http_json: HttpJson,
) -> None:
    port = free_port()
    dead = f"http://127.0.0.1:{free_port()}/health"
    _run(engine, containers, built["gateway"][0].image_id, PORT=str(port), TERMS_URL=dead)
    status, body = http_json(f"http://127.0.0.1:{port}/api/terms")
    assert (status, body["upstream"]) == (502, dead)


def test_worker_logs_work_and_its_probe_passes(
    engine: docker.DockerClient, built: dict[str, tuple[BuildResult, list[str]]], containers: list[Any]
) -> None:
    worker = _run(engine, containers, built["worker"][0].image_id, WORK_INTERVAL_S="1")
    deadline = time.monotonic() + 10
    while b'"event":"work"' not in worker.logs() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert b'"event":"work"' in worker.logs(), worker.logs()
    code, output = worker.exec_run(["/app/healthy"])
    assert code == 0, output
    report = json.loads(output)
    assert (report["service"], report["revision"]) == ("worker", REVISION)
    assert worker.attrs["Config"]["User"] == "10001:10001"


def test_worker_probe_fails_on_missing_or_stale_heartbeat(
    engine: docker.DockerClient, built: dict[str, tuple[BuildResult, list[str]]], containers: list[Any]
) -> None:
    worker = _run(engine, containers, built["worker"][0].image_id, WORK_INTERVAL_S="1")
    code, output = worker.exec_run(["/app/healthy"], environment={"HEARTBEAT": "/tmp/never-written"})
    assert code != 0 and b"no heartbeat" in output, output
    deadline = time.monotonic() + 10
    while worker.exec_run(["/app/healthy"])[0] != 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    code, output = worker.exec_run(["/app/healthy"], environment={"HEARTBEAT_MAX_AGE_S": "-1"})
    assert code != 0 and b"heartbeat_age_s" in output, output


@pytest.mark.parametrize("service", SERVICES)
def test_push_digest_confirmed_by_registry(
    service: str,
    stack: Stack,
    engine: docker.DockerClient,
    built: dict[str, tuple[BuildResult, list[str]]],
    registry_auth: RegistryAuth,
    registry_client: RegistryClient,
    run_id: str,
    cleanup_images: list[str],
) -> None:
    repository = f"{stack.registry}/dx29/{service}"
    tag = f"it-{run_id}"
    cleanup_images.append(f"{repository}:{tag}")
    streamed: list[str] = []
    result = push_image(
        engine,
        repository=repository,
        tag=tag,
        auth=registry_auth,
        on_line=streamed.append,
        source=built[service][0].image_id,
        registry=registry_client,
    )
    assert result.digest.startswith("sha256:") and len(result.digest) == 71
    assert result.ref == f"{repository}@{result.digest}"
    assert registry_client.manifest_digest(f"dx29/{service}", tag) == result.digest
    assert f"{repository}@{result.digest}" in engine.api.inspect_image(f"{repository}:{tag}")["RepoDigests"]
    assert any(result.digest in line for line in streamed)


def test_push_with_wrong_password_is_one_clear_error(
    stack: Stack,
    engine: docker.DockerClient,
    built: dict[str, tuple[BuildResult, list[str]]],
    run_id: str,
    cleanup_images: list[str],
) -> None:
    repository = f"{stack.registry}/dx29/terms"
    cleanup_images.append(f"{repository}:bad-{run_id}")
    wrong = RegistryAuth(stack.user, "not-the-password", "test")
    started = time.monotonic()
    with pytest.raises(PushError) as info:
        push_image(
            engine,
            repository=repository,
            tag=f"bad-{run_id}",
            auth=wrong,
            source=built["terms"][0].image_id,
            ca_file=stack.ca_file,
        )
    text = str(info.value)
    assert f"were refused at https://{stack.registry}/v2/" in text and stack.user in text
    assert "not-the-password" not in text
    assert "password" in (info.value.hint or "")
    assert time.monotonic() - started < 30, "a refused password must not be retried"


def test_registry_client_with_wrong_password(stack: Stack) -> None:
    client = RegistryClient(stack.registry, RegistryAuth(stack.user, "not-the-password"), ca_file=stack.ca_file)
    with pytest.raises(RegistryError, match="refused") as info:
        client.ping()
    assert info.value.source == f"https://{stack.registry}"


def test_push_to_unreachable_registry_is_one_clear_error(
    engine: docker.DockerClient,
    built: dict[str, tuple[BuildResult, list[str]]],
    run_id: str,
    cleanup_images: list[str],
) -> None:
    repository = "localhost:1/dx29/terms"
    cleanup_images.append(f"{repository}:{run_id}")
    auth = RegistryAuth("someone", "something")
    with pytest.raises(PushError) as info:
        push_image(engine, repository=repository, tag=run_id, auth=auth, source=built["terms"][0].image_id)
    assert "registry localhost:1 unreachable" in str(info.value)
    assert info.value.source == "https://localhost:1"


def test_registry_client_unreachable(stack: Stack) -> None:
    with pytest.raises(RegistryError, match="unreachable") as info:
        RegistryClient("localhost:1", None, ca_file=stack.ca_file, timeout=2).ping()
    assert info.value.source == "https://localhost:1"


def test_registry_client_without_the_ca_refuses_tls(stack: Stack, registry_auth: RegistryAuth) -> None:
    with pytest.raises(RegistryError, match="TLS verification"):
        RegistryClient(stack.registry, registry_auth).ping()


def test_unknown_tag_is_not_found(registry_client: RegistryClient, run_id: str) -> None:
    with pytest.raises(RegistryError, match=f"dx29/gateway:never-{run_id} not found"):
        registry_client.manifest_digest("dx29/gateway", f"never-{run_id}")


def test_missing_dockerfile_is_reported_before_docker(engine: docker.DockerClient, tmp_path: Path, run_id: str) -> None:
    tag = f"dx29/missing:{run_id}"
    with pytest.raises(BuildError) as info:
        build_image(engine, context=tmp_path, dockerfile="Dockerfile", tag=tag, labels={})
    assert str(tmp_path / "Dockerfile") in str(info.value)
    with pytest.raises(docker.errors.ImageNotFound):
        engine.images.get(tag)


def test_failing_build_step_carries_the_log_tail(engine: docker.DockerClient, tmp_path: Path, run_id: str) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\nCOPY not-in-context /\n")
    streamed: list[str] = []
    with pytest.raises(BuildError) as info:
        build_image(
            engine,
            context=tmp_path,
            dockerfile="Dockerfile",
            tag=f"dx29/broken:{run_id}",
            labels={},
            on_line=streamed.append,
        )
    text = str(info.value)
    assert "not-in-context" in text and "last" in text and "[1/1] COPY not-in-context /" in text
    assert info.value.source == str(tmp_path)
    assert streamed[-1].startswith("ERROR:")


def test_a_tag_built_from_the_same_inputs_is_kept_and_a_changed_context_built(
    engine: docker.DockerClient, tmp_path: Path, run_id: str, cleanup_images: list[str]
) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\nCOPY greeting /\nLABEL purpose=test\n")
    (tmp_path / "greeting").write_text(f"hello {run_id}\n")
    tags = [f"dx29/inputs:{run_id}-{n}" for n in (1, 2)]
    cleanup_images.extend(tags)

    def build(tag: str) -> tuple[BuildResult, list[str]]:
        seen: list[str] = []
        return build_image(
            engine, context=tmp_path, dockerfile="Dockerfile", tag=tag, labels={}, on_line=seen.append
        ), seen

    first, first_lines = build(tags[0])
    again, again_lines = build(tags[0])
    assert any(line.endswith("[1/1] COPY greeting /") for line in first_lines)
    assert again.image_id == first.image_id and again_lines[0].startswith(f"not built: {tags[0]} is")
    assert engine.images.get(tags[0]).labels["io.deploybook.build-input"] == again.labels["io.deploybook.build-input"]

    # The same inputs under another tag are the engine's to build: its cache gives the same image.
    elsewhere, elsewhere_lines = build(tags[1])
    assert elsewhere.image_id == first.image_id and any(
        line.endswith("[1/1] COPY greeting /") for line in elsewhere_lines
    )

    (tmp_path / "greeting").write_text(f"goodbye {run_id}\n")
    changed, changed_lines = build(tags[0])
    assert changed.image_id != first.image_id and any(line.endswith("[1/1] COPY greeting /") for line in changed_lines)


ODD_LABELS = {"team.note": 'say "hi" to $USER \\ there', "team.empty": "", "team.spaces": "a  b"}


# A parser directive naming a frontend sends a build to the classic builder (BuildKit without a
# session could not pull the frontend); the classic builder reads it as a comment.
CLASSIC = "# syntax=docker/dockerfile:1\n"


@pytest.mark.parametrize("builder", ["buildkit", "classic"])
@pytest.mark.parametrize(
    ("ignore", "seen"),
    [
        (".dockerignore\nnotes.txt\n", {"Dockerfile", "app.sh"}),
        ("notes.txt\n", {".dockerignore", "Dockerfile", "app.sh"}),  # kept: the labels go beside the build
    ],
    ids=["one-label-step", "dockerignore-kept"],
)
def test_labels_reach_the_image_and_the_context_is_the_one_docker_build_sends(
    ignore: str,
    seen: set[str],
    builder: str,
    engine: docker.DockerClient,
    tmp_path: Path,
    run_id: str,
    cleanup_images: list[str],
    containers: list[Any],
) -> None:
    (tmp_path / "Dockerfile").write_text((CLASSIC if builder == "classic" else "") + "FROM scratch\nCOPY . /ctx/\n")
    (tmp_path / ".dockerignore").write_text(ignore)
    (tmp_path / "notes.txt").write_text("ignored\n")
    (tmp_path / "app.sh").write_text(f"echo {run_id}\n")
    tag = f"dx29/labels:{run_id}-{builder}-{len(seen)}"
    cleanup_images.append(tag)
    streamed: list[str] = []
    result = build_image(
        engine, context=tmp_path, dockerfile="Dockerfile", tag=tag, labels=ODD_LABELS, on_line=streamed.append
    )
    assert engine.api.inspect_image(tag)["Config"]["Labels"] == dict(result.labels)
    assert {k: v for k, v in result.labels.items() if k.startswith("team.")} == ODD_LABELS
    if builder == "classic":  # one LABEL step appended, or every label a step of its own
        steps = [line for line in streamed if line.startswith("Step ")]
        assert len(steps) == (3 if ignore.startswith(".dockerignore") else 2 + len(result.labels)), steps
    else:  # BuildKit takes the labels beside the build: the COPY is its only step
        assert streamed[0].startswith("BuildKit builds it")
        assert [line for line in streamed if "] COPY" in line] == ["#3 [1/1] COPY . /ctx/"], streamed

    container = engine.containers.create(tag, command=["/none"])
    containers.append(container)
    exported = io.BytesIO(b"".join(container.export()))
    with tarfile.open(fileobj=exported) as fs:
        names = {m.name.removeprefix("ctx/") for m in fs if m.isfile() and m.name.startswith("ctx/")}
        assert names == seen
        if ".dockerignore" in seen:
            assert fs.extractfile("ctx/.dockerignore").read().decode() == ignore  # type: ignore[union-attr]


STAGES = """\
FROM scratch AS base
ARG FLAVOUR=plain
COPY a /a
LABEL flavour=$FLAVOUR
FROM base AS runtime
COPY b /b
FROM runtime AS debug
COPY c /c
"""


@pytest.mark.parametrize("builder", ["buildkit", "classic"])
def test_build_args_and_target_reach_the_build_and_its_inputs(
    builder: str,
    engine: docker.DockerClient,
    tmp_path: Path,
    run_id: str,
    cleanup_images: list[str],
    containers: list[Any],
) -> None:
    (tmp_path / "Dockerfile").write_text((CLASSIC if builder == "classic" else "") + STAGES)
    for name in "abc":
        (tmp_path / name).write_text(f"{name} {run_id}\n")
    tag = f"dx29/stages:{run_id}-{builder}"
    cleanup_images.append(tag)

    def build(target: str | None, flavour: str) -> tuple[BuildResult, list[str], set[str]]:
        seen: list[str] = []
        result = build_image(
            engine,
            context=tmp_path,
            dockerfile="Dockerfile",
            tag=tag,
            labels={},
            build_args={"FLAVOUR": flavour},
            target=target,
            on_line=seen.append,
        )
        container = engine.containers.create(tag, command=["/none"])
        containers.append(container)
        with tarfile.open(fileobj=io.BytesIO(b"".join(container.export()))) as fs:
            files = {m.name for m in fs if m.isfile() and m.name in ("a", "b", "c")}
        return result, seen, files

    runtime, _, files = build("runtime", "spicy")
    labels = engine.api.inspect_image(tag)["Config"]["Labels"]
    assert files == {"a", "b"} and labels["flavour"] == "spicy"
    assert labels["io.deploybook.build-input"] == runtime.labels["io.deploybook.build-input"]  # on the target
    again, lines, _ = build("runtime", "spicy")
    assert again.image_id == runtime.image_id and lines[0].startswith(f"not built: {tag} is")
    # Another arg or another target is another build, not the image the tag holds.
    mild, lines, files = build("runtime", "mild")
    assert (
        not lines[0].startswith("not built") and engine.api.inspect_image(tag)["Config"]["Labels"]["flavour"] == "mild"
    )
    last, lines, files = build(None, "mild")
    assert not lines[0].startswith("not built") and files == {"a", "b", "c"} and last.image_id != mild.image_id


def test_credentials_as_docker_login_leaves_them(stack: Stack, tmp_path: Path) -> None:
    """`docker login` writes config.json; resolve_credentials reads it and the registry accepts it."""
    password = Path(stack.password_file).read_text().strip()
    login = subprocess.run(
        [
            "docker",
            "--config",
            str(tmp_path),
            "--host",
            stack.docker_host,
            "login",
            stack.registry,
            "--username",
            stack.user,
            "--password-stdin",
        ],
        input=password,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert login.returncode == 0, login.stderr
    config = json.loads((tmp_path / "config.json").read_text())
    if "credsStore" in config:
        pytest.fail(f"docker login used a credential store here ({config['credsStore']}); expected a file entry")
    encoded = config["auths"][stack.registry]["auth"]
    assert base64.b64decode(encoded).decode().startswith(f"{stack.user}:")
    auth = resolve_credentials(stack.registry, docker_config=tmp_path / "config.json")
    assert auth is not None and auth.username == stack.user
    RegistryClient(stack.registry, auth, ca_file=stack.ca_file).ping()


def test_a_base_in_the_private_registry_is_pulled_with_the_release_credentials(
    stack: Stack,
    engine: docker.DockerClient,
    registry_auth: RegistryAuth,
    registry_client: RegistryClient,
    tmp_path: Path,
    run_id: str,
    cleanup_images: list[str],
    containers: list[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base_dir, app = tmp_path / "base", tmp_path / "app"
    base_dir.mkdir(), app.mkdir()
    (base_dir / "Dockerfile").write_text("FROM scratch\nCOPY marker /marker\n")
    (base_dir / "marker").write_text(f"base {run_id}\n")
    repository, tag = f"{stack.registry}/dbk-it/base-{run_id}", "1"
    build_image(engine, context=base_dir, dockerfile="Dockerfile", tag=f"{repository}:{tag}", labels={})
    push_image(engine, repository=repository, tag=tag, auth=registry_auth, registry=registry_client)
    engine.images.remove(f"{repository}:{tag}")  # only the registry holds the base now
    (app / "Dockerfile").write_text(f"FROM {repository}:{tag}\nCOPY app.txt /app.txt\n")
    (app / "app.txt").write_text("app\n")
    # An engine client with an empty Docker configuration: no `docker login` to fall back on
    # (without a config.json there, docker-py would read ~/.docker/config.json instead).
    (tmp_path / "docker-config").mkdir()
    (tmp_path / "docker-config" / "config.json").write_text("{}\n")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    bare = docker.DockerClient(base_url=stack.docker_host)
    app_tag = f"dx29/on-private-base:{run_id}"
    cleanup_images.extend([app_tag, f"{repository}:{tag}"])
    with pytest.raises(BuildError, match=repository):  # without them the registry refuses the pull
        build_image(bare, context=app, dockerfile="Dockerfile", tag=app_tag, labels={})

    streamed: list[str] = []
    build_image(
        bare,
        context=app,
        dockerfile="Dockerfile",
        tag=app_tag,
        labels={},
        on_line=streamed.append,
        registry=(stack.registry, registry_auth),
    )
    assert streamed[0] == f"pulling base image {repository}:{tag} with the release's credentials for {stack.registry}"
    assert "BuildKit builds it: the engine holds every image it builds on" in streamed
    assert not any(registry_auth.password in line for line in streamed)
    container = bare.containers.create(app_tag, command=["/none"])
    containers.append(container)
    with tarfile.open(fileobj=io.BytesIO(b"".join(container.export()))) as fs:
        assert fs.extractfile("marker").read().decode() == f"base {run_id}\n"  # type: ignore[union-attr]
        assert fs.extractfile("app.txt").read() == b"app\n"  # type: ignore[union-attr]
