"""Environment files: the shipped ones load; every bad value is one located ConfigError."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploybook.config.environment import load_environment, parse_environment
from deploybook.config.model import Confinement
from deploybook.errors import ConfigError, UnknownEnvironment

ROOT = Path(__file__).resolve().parents[2]
STACK_VARS = {
    "DEPLOYBOOK_REGISTRY": "localhost:5000",
    "DEPLOYBOOK_REGISTRY_USER": "deploybook",
    "DEPLOYBOOK_REGISTRY_PASSWORD_FILE": "/var/lib/deploybook-stack/registry/password",
    "DEPLOYBOOK_REGISTRY_CA": "/var/lib/deploybook-stack/pki/ca.crt",
    "DEPLOYBOOK_PROD_REGISTRY": "localhost:5001",
    "DEPLOYBOOK_PROD_REGISTRY_USER": "deploybook",
    "DEPLOYBOOK_PROD_REGISTRY_PASSWORD_FILE": "/var/lib/deploybook-stack/registry-prod/password",
    "DEPLOYBOOK_PROD_REGISTRY_CA": "/var/lib/deploybook-stack/pki/ca.crt",
    "DEPLOYBOOK_GIT_URL": "https://localhost:8443",
    "DEPLOYBOOK_GIT_CA": "/var/lib/deploybook-stack/pki/ca.crt",
    "DEPLOYBOOK_GIT_CREDENTIAL_HELPER": "/repo/stack/git-credential",
}
MINIMAL = """\
cluster:
  context: ctx
  namespace: ns
registry:
  address: reg.example:5000
branch:
  name: null
manifests:
  path: manifests
services:
  - name: api
    context: apps/api
    image: app/api
    manifest: api.yaml
"""


def parse(text: str) -> object:
    return parse_environment(text, file=Path("environments/x.yaml"), name="x", root=Path("/repo"))


def error_of(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse(text)
    return info.value


@pytest.fixture
def stack_vars(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in STACK_VARS.items():
        monkeypatch.setenv(key, value)


@pytest.mark.parametrize("name", ["local", "dev", "test", "prod"])
def test_shipped_environments_load(name: str, stack_vars: None) -> None:
    env = load_environment(name, ROOT / "environments")
    assert env.name == name
    assert env.service_names == ("gateway", "annotation", "terms", "worker")
    assert env.service("worker").port is None and env.service("worker").http == ()


def test_local_uses_the_stack_variables(stack_vars: None) -> None:
    env = load_environment("local", ROOT / "environments")
    assert env.registry.address == "localhost:5000"
    assert env.registry.password_file == STACK_VARS["DEPLOYBOOK_REGISTRY_PASSWORD_FILE"]
    assert env.registry.ca_file == STACK_VARS["DEPLOYBOOK_REGISTRY_CA"]
    assert env.cluster.context == "deploybook-admin"
    assert env.branch.name is None and not env.branch.clean_tree
    assert env.image_repository(env.service("gateway")) == "localhost:5000/dx29/gateway"
    assert env.service("gateway").dockerfile == ROOT / "apps/dx29/gateway/Dockerfile"


def test_dx29_rules_for_dev_test_prod(stack_vars: None) -> None:
    dev, test, prod = (load_environment(n, ROOT / "environments") for n in ("dev", "test", "prod"))
    assert dev.branch.name == "develop" and dev.manifests.service_path == "manifests"
    assert test.branch.name == "main" and test.manifests.git is not None
    assert test.manifests.git.url == "https://localhost:8443/dx29-env-test.git"
    assert prod.branch.name == "main" and prod.branch.clean_tree
    assert prod.promote_from == "test" and prod.manifests.git is not None
    assert prod.registry.address == "localhost:5001" != test.registry.address
    for env in (dev, test, prod):
        assert env.cluster.namespace == f"dx29-{env.name}"
        assert (env.cluster.context, env.cluster.read_only_context) == (
            f"deploybook-{env.name}",
            f"deploybook-{env.name}-view",
        )
        assert env.git.credential_helper == "/repo/stack/git-credential" and env.git.ca_file is not None
    gateway = dev.service("gateway")
    assert gateway.source is not None and gateway.source.url == "https://localhost:8443/dx29-gateway.git"
    assert dev.source_ref(gateway) == "develop" and test.source_ref(test.service("gateway")) == "main"
    assert gateway.source.prepare == ("./prepare",) and gateway.port == 8080  # the rest is app.yaml's
    # The runbook's own checkout is a source only where something is built from it or it decides.
    assert (dev.project_is_source, test.project_is_source, prod.project_is_source) == (False, False, True)


def test_aks_examples_load() -> None:
    for name in ("dev", "test", "prod"):
        file = ROOT / "docs" / "aks-example" / f"{name}.yaml"
        env = parse_environment(file.read_text(), file=file, name=name, root=ROOT)
        assert env.registry.address.endswith(".azurecr.io") and env.cluster.namespace == "app-ingress"
        assert env.git.credential_helper == "manager" and env.cluster.read_only_context


def test_unknown_environment_lists_known(tmp_path: Path) -> None:
    (tmp_path / "alpha.yaml").write_text(MINIMAL)
    (tmp_path / "beta.yaml").write_text(MINIMAL)
    with pytest.raises(UnknownEnvironment) as info:
        load_environment("gamma", tmp_path)
    assert "alpha, beta" in str(info.value) and "'gamma'" in str(info.value)


def test_malformed_yaml_names_file_and_line() -> None:
    err = error_of(MINIMAL.replace("  namespace: ns", "  namespace: [ns"))
    assert err.file == "environments/x.yaml" and err.line is not None and err.line >= 3
    assert "malformed YAML" in str(err)


def test_environment_files_compose_the_same_with_or_without_libyaml(monkeypatch: pytest.MonkeyPatch) -> None:
    """libyaml's parser is the fast path; its node lines, and a syntax error's wording, are the pure one's."""
    import yaml

    from deploybook.config import yamlnode

    def lines(node: yaml.Node) -> list[tuple[int, str]]:
        found = [(node.start_mark.line, node.tag)]
        for child in node.value if isinstance(node.value, list) else ():
            for part in child if isinstance(child, tuple) else (child,):
                found += lines(part)
        return found

    broken = MINIMAL.replace("  namespace: ns", "  namespace: [ns")
    fast, fast_error = yamlnode.compose(MINIMAL), error_of(broken)
    monkeypatch.delattr(yaml, "CSafeLoader")
    assert fast is not None and (pure := yamlnode.compose(MINIMAL)) is not None
    assert lines(fast) == lines(pure) and len(lines(pure)) > 20
    assert str(error_of(broken)) == str(fast_error)


@pytest.mark.parametrize(
    ("change", "key", "line"),
    [
        (("    image: app/api\n", "    image: app/api\n    port: eighty\n"), "services[0].port", 14),
        (("    image: app/api\n", "    image: app/api\n    port: 70000\n"), "services[0].port", 14),
        (("  namespace: ns", "  namespace: Not_A_Label"), "cluster.namespace", 3),
        (("  context: ctx\n", "  context: ctx\n  colour: red\n"), "cluster.colour", 3),
        (("  path: manifests\n", "  path: m\n  git: {url: u, ref: r}\n"), "manifests.path", 9),
        (("branch:\n  name: null\n", "branch:\n  clean_tree: true\n"), "branch.name", 7),
        (
            (
                "    manifest: api.yaml\n",
                "    manifest: api.yaml\n  - name: api\n    context: c\n    image: i\n    manifest: m\n",
            ),
            "services[1].name",
            15,
        ),
    ],
)
def test_bad_values_are_located(change: tuple[str, str], key: str, line: int) -> None:
    err = error_of(MINIMAL.replace(*change))
    assert err.key == key
    assert err.line == line
    assert f"environments/x.yaml:{line}" in str(err)


def test_two_services_building_one_image_are_refused_at_the_second() -> None:
    text = MINIMAL + "  - name: worker\n    context: apps/api\n    image: app/api\n    manifest: worker.yaml\n"
    err = error_of(text)
    assert (err.key, err.line) == ("services[1].image", 17), err
    assert "service 'api' already builds image 'app/api'" in str(err)
    assert "put them all in the manifest of 'api'" in str(err)


def test_two_credential_sources_refused() -> None:
    text = MINIMAL.replace(
        "  address: reg.example:5000\n",
        "  address: reg.example:5000\n  username: u\n  password_env: P\n  docker_config: true\n",
    )
    assert error_of(text).key == "registry.docker_config"


def test_password_reference_needs_username() -> None:
    text = MINIMAL.replace("  address: reg.example:5000\n", "  address: reg.example:5000\n  password_env: P\n")
    assert error_of(text).key == "registry.username"


def test_unset_variable_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOPE_REGISTRY", raising=False)
    err = error_of(MINIMAL.replace("reg.example:5000", "${NOPE_REGISTRY}"))
    assert err.key == "registry.address" and "NOPE_REGISTRY" in str(err)


def test_variable_default_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOPE_REGISTRY", raising=False)
    env = parse(MINIMAL.replace("reg.example:5000", "${NOPE_REGISTRY:-fallback:5000}"))
    assert env.registry.address == "fallback:5000"  # type: ignore[attr-defined]


def test_http_check_needs_port_and_one_expectation() -> None:
    with_http = MINIMAL + "    http:\n      - path: /health\n"
    assert error_of(with_http).key == "services[0].http"
    both = MINIMAL + "    port: 80\n    http:\n      - path: /h\n        expect_text: ok\n        expect_json: {a: 1}\n"
    assert error_of(both).key == "services[0].http[0].expect_text"


def test_promote_from_itself_refused() -> None:
    assert error_of(MINIMAL + "promote_from: x\n").key == "promote_from"


def test_environment_is_frozen() -> None:
    env = parse(MINIMAL)
    with pytest.raises(AttributeError):
        env.name = "other"  # type: ignore[misc]


# --------------------------------------------------------------------------- the app and overlays

APP = """\
name: shop
services:
  - name: api
    context: apps/api
    image: shop/api
    manifest: api.yaml
    port: 8080
    http:
      - {path: /health}
  - name: worker
    context: apps/worker
    image: shop/worker
    manifest: worker.yaml
"""
OVERLAY = MINIMAL[: MINIMAL.index("services:")]


def project(tmp_path: Path, environment: str, app: str | None = APP) -> Path:
    (tmp_path / "environments").mkdir()
    (tmp_path / "environments" / "prod.yaml").write_text(environment)
    if app is not None:
        (tmp_path / "app.yaml").write_text(app)
    return tmp_path / "environments"


def test_services_are_declared_once_in_the_app(tmp_path: Path) -> None:
    env = load_environment("prod", project(tmp_path, OVERLAY))
    assert env.service_names == ("api", "worker")
    assert env.service("api").context == tmp_path / "apps/api" and env.service("api").http[0].path == "/health"


def test_an_environment_overrides_replicas_and_http_checks_only(tmp_path: Path) -> None:
    text = OVERLAY + "services:\n  api:\n    replicas: 3\n    http:\n      - {path: /ready, latency_ms: 500}\n"
    env = load_environment("prod", project(tmp_path, text))
    api = env.service("api")
    assert api.replicas == 3 and [c.path for c in api.http] == ["/ready"] and api.image == "shop/api"
    assert env.service("worker").replicas is None  # what is not overridden is the app's


@pytest.mark.parametrize(
    ("services", "where", "message"),
    [
        ("  payments: {replicas: 2}\n", ":11: key 'services.payments'", "no service 'payments' in app.yaml"),
        (
            "  api: {image: other/api}\n",
            ":11: key 'services.api.image'",
            "unknown key (allowed: replicas, http, source, policies, build_args)",
        ),
        ("  api: {replicas: -1}\n", ":11: key 'services.api.replicas'", "below the minimum 0"),
        ("  worker:\n    http: [{path: /h}]\n", ":12: key 'services.worker.http'", "http checks need a port"),
    ],
)
def test_a_bad_override_names_the_file_line_and_key(tmp_path: Path, services: str, where: str, message: str) -> None:
    directory = project(tmp_path, OVERLAY + "services:\n" + services)
    with pytest.raises(ConfigError) as info:
        load_environment("prod", directory)
    text = str(info.value)
    assert f"{directory / 'prod.yaml'}{where}" in text and message in text


def test_a_list_of_services_makes_an_environment_complete_on_its_own(tmp_path: Path) -> None:
    env = load_environment("prod", project(tmp_path, MINIMAL))
    assert env.service_names == ("api",) and env.service("api").image == "app/api"  # not app.yaml's


def test_without_an_app_an_environment_must_list_its_services(tmp_path: Path) -> None:
    directory = project(tmp_path, OVERLAY, app=None)
    with pytest.raises(ConfigError, match=r"key 'services': required: a list of services here, or app\.yaml"):
        load_environment("prod", directory)


def test_a_bad_app_definition_is_located_in_app_yaml(tmp_path: Path) -> None:
    directory = project(tmp_path, OVERLAY, app=APP.replace("port: 8080", "port: 99999"))
    with pytest.raises(ConfigError) as info:
        load_environment("prod", directory)
    assert f"{tmp_path / 'app.yaml'}:7: key 'services[0].port'" in str(info.value)


def test_build_args_and_target_are_the_apps_with_variables_expanded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHOP_API_URL", "https://api.shop.example")
    app = APP.replace(
        "    port: 8080\n",
        "    port: 8080\n    target: runtime\n"
        "    build_args: {NODE_ENV: production, API_URL: '${SHOP_API_URL}', WORKERS: 4, EMPTY: '', TOKENIZER: bpe}\n",
    )
    env = load_environment("prod", project(tmp_path, OVERLAY, app=app))
    api = env.service("api")
    assert api.target == "runtime"
    assert api.build_args == (
        ("NODE_ENV", "production"),
        ("API_URL", "https://api.shop.example"),
        ("WORKERS", "4"),
        ("EMPTY", ""),
        ("TOKENIZER", "bpe"),  # a word that only starts like a secret's
    )
    assert env.service("worker").build_args == () and env.service("worker").target is None
    overlay = OVERLAY + "services:\n  api:\n    build_args: {NODE_ENV: test, DEBUG: '1'}\n"
    (tmp_path / "overlaid").mkdir()
    api = load_environment("prod", project(tmp_path / "overlaid", overlay, app=app)).service("api")
    assert dict(api.build_args) == {
        "NODE_ENV": "test",
        "API_URL": "https://api.shop.example",
        "WORKERS": "4",
        "EMPTY": "",
        "TOKENIZER": "bpe",
        "DEBUG": "1",
    }


@pytest.mark.parametrize(
    ("args", "key", "message"),
    [
        ("{1ST: a}", "services[0].build_args.1ST", "'1ST' is not a build arg name"),
        ("{VERSION: '2'}", "services[0].build_args.VERSION", "VERSION is set by deploybook from the release"),
        ("{NPM_TOKEN: abc}", "services[0].build_args.NPM_TOKEN", "NPM_TOKEN looks like a secret"),
        ("{db_password: x}", "services[0].build_args.db_password", "a build arg is kept in the image"),
        ("{npmToken: x}", "services[0].build_args.npmToken", "npmToken looks like a secret"),
        ("{AWS_ACCESS_KEY_ID: x}", "services[0].build_args.AWS_ACCESS_KEY_ID", "looks like a secret"),
        ("{DEBUG: true}", "services[0].build_args.DEBUG", "expected a string or a number, got True"),
        ("{LIST: [a]}", "services[0].build_args.LIST", "expected a string or a number"),
        ("[a]", "services[0].build_args", "must be a mapping"),
    ],
)
def test_a_bad_build_arg_is_located_in_app_yaml(tmp_path: Path, args: str, key: str, message: str) -> None:
    app = APP.replace("    port: 8080\n", f"    port: 8080\n    build_args: {args}\n")
    with pytest.raises(ConfigError) as info:
        load_environment("prod", project(tmp_path, OVERLAY, app=app))
    assert f"{tmp_path / 'app.yaml'}:8: key '{key}'" in str(info.value) and message in str(info.value)


# --------------------------------------------------------------------------- sources and git

SOURCED = OVERLAY + "services:\n  api:\n    source: {git: 'https://git.example/api.git', prepare: ./prepare}\n"


def test_an_environment_takes_a_service_from_git_at_its_branch(tmp_path: Path) -> None:
    env = load_environment("prod", project(tmp_path, SOURCED.replace("name: null", "name: develop")))
    api = env.service("api")
    assert api.source is not None and api.source.url == "https://git.example/api.git"
    assert api.source.path == "." and api.source.dockerfile == "Dockerfile" and api.source.prepare == ("./prepare",)
    assert env.source_ref(api) == "develop" and env.source_ref(env.service("worker")) is None
    assert env.project_is_source  # worker still builds from this checkout


@pytest.mark.parametrize(
    ("text", "key", "message"),
    [
        (SOURCED.replace("git.example", "deploy:s3cret@git.example"), "services.api.source.git", "carries a password"),
        (SOURCED.replace("prepare: ./prepare", "path: ../up"), "services.api.source.path", "inside the repository"),
        (SOURCED.replace("prepare:", "branch:"), "services.api.source.branch", "unknown key"),
        (
            MINIMAL.replace("  path: manifests", "  git: {url: 'https://u:p@h/env.git', ref: main}"),
            "manifests.git.url",
            "carries a password",
        ),
        (MINIMAL + "git: {credential_helper: h, password_file: f, username: u}\n", "git.password_file", "choose"),
        (MINIMAL + "git: {username: u}\n", "git.password_file", "go together"),
        (MINIMAL.replace("  path: manifests", "  service_source: manifests"), "manifests.service_source", "api"),
    ],
)
def test_bad_sources_are_located(tmp_path: Path, text: str, key: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_environment("prod", project(tmp_path, text))
    assert info.value.key == key and message in str(info.value)
    assert "s3cret" not in str(info.value)


def test_a_user_without_password_in_a_url_is_allowed() -> None:
    env = parse(MINIMAL.replace("  path: manifests", "  git: {url: 'https://deploy@h/env.git', ref: main}"))
    assert env.manifests.git is not None and env.manifests.git.url == "https://deploy@h/env.git"  # type: ignore[attr-defined]


def test_git_settings_and_read_only_context() -> None:
    text = MINIMAL.replace("  context: ctx\n", "  context: ctx\n  read_only_context: ctx-view\n")
    env = parse(text + "git: {username: deploy, password_file: /run/git-password, ca_file: /ca.crt}\n")
    assert env.cluster.read_only_context == "ctx-view"  # type: ignore[attr-defined]
    assert env.git.password_file == "/run/git-password" and env.git.credential_helper is None  # type: ignore[attr-defined]


def test_confinement_allows_objects_outside_the_namespace_by_name_only() -> None:
    assert parse(MINIMAL).confinement == Confinement()  # type: ignore[attr-defined]
    text = MINIMAL + "confinement:\n  cluster_scoped: [ClusterRole/dx29-reader]\n  namespaces: [monitoring]\n"
    assert parse(text).confinement == Confinement(  # type: ignore[attr-defined]
        cluster_scoped=frozenset({"ClusterRole/dx29-reader"}), namespaces=frozenset({"monitoring"})
    )


@pytest.mark.parametrize(
    ("text", "key", "message"),
    [
        ("confinement:\n  cluster_scoped: [ClusterRole]\n", "confinement.cluster_scoped", "expected Kind/name"),
        ("confinement:\n  cluster_scoped: ClusterRole/x\n", "confinement.cluster_scoped", "must be a list"),
        ("confinement:\n  namespaces: [Kube_System]\n", "confinement.namespaces", "namespace name"),
        ("confinement:\n  everything: true\n", "confinement.everything", "unknown key"),
    ],
)
def test_a_bad_confinement_is_located(text: str, key: str, message: str) -> None:
    err = error_of(MINIMAL + text)
    assert err.key is not None and err.key.startswith(key)
    assert err.line == MINIMAL.count("\n") + 2
    assert message in str(err)


def test_probe_failure_budget_defaults_to_two_and_is_set_under_timeouts() -> None:
    default = parse(MINIMAL)
    assert default.timeouts.probe_failures_allowed == 2  # type: ignore[attr-defined]
    none_allowed = parse(MINIMAL + "timeouts:\n  rollout: 60\n  probe_failures_allowed: 0\n")
    assert none_allowed.timeouts.probe_failures_allowed == 0  # type: ignore[attr-defined]
    assert none_allowed.timeouts.rollout == 60  # type: ignore[attr-defined]


def test_crashes_allowed_defaults_to_none_and_is_set_under_timeouts() -> None:
    assert parse(MINIMAL).timeouts.crashes_allowed == 0  # type: ignore[attr-defined]
    one = parse(MINIMAL + "timeouts:\n  crashes_allowed: 1\n")
    assert one.timeouts.crashes_allowed == 1  # type: ignore[attr-defined]
    assert one.timeouts.probe_failures_allowed == 2  # type: ignore[attr-defined]


@pytest.mark.parametrize("key", ["probe_failures_allowed", "crashes_allowed"])
@pytest.mark.parametrize(("value", "message"), [("-1", "below the minimum 0"), ("many", "expected an integer")])
def test_a_bad_failure_budget_names_file_line_and_key(key: str, value: str, message: str) -> None:
    err = error_of(MINIMAL + f"timeouts:\n  {key}: {value}\n")
    assert err.key == f"timeouts.{key}"
    assert "environments/x.yaml:16" in str(err) and message in str(err)


SECOND = "  - {name: web, context: apps/web, image: app/web, manifest: %s}\n"


@pytest.mark.parametrize(
    ("manifest", "named"),
    [("api.yaml", "'api.yaml'"), ("./api.yaml", "'api.yaml'"), (".", "'api.yaml' and '.'")],
    ids=["same-file", "same-file-written-otherwise", "a-folder-holding-the-file"],
)
def test_two_services_taking_their_manifests_from_one_place_are_refused(manifest: str, named: str) -> None:
    error = error_of(MINIMAL + SECOND % manifest)
    assert f"services 'api' and 'web' both take their manifests from {named}" in str(error), str(error)
    assert error.file == "environments/x.yaml" and error.line == 9 and "its own file or folder" in str(error)


def test_each_services_own_repository_may_hold_its_manifests_at_the_same_path() -> None:
    text = MINIMAL.replace("  path: manifests", "  service_source: k8s").replace("services:\n", "") + (
        "services:\n"
        "  - {name: api, context: ., image: app/api, manifest: app.yaml, source: {git: 'https://g.example/api.git'}}\n"
        "  - {name: web, context: ., image: app/web, manifest: app.yaml, source: {git: 'https://g.example/web.git'}}\n"
    )
    text = text.replace("  - name: api\n    context: apps/api\n    image: app/api\n    manifest: api.yaml\n", "")
    env = parse(text)
    assert [s.manifest for s in env.services] == ["app.yaml", "app.yaml"]  # type: ignore[attr-defined]


IMAGE_KEY = "services[0].image"


@pytest.mark.parametrize(
    ("text", "line", "key"),  # the line of the second
    [
        (MINIMAL + "branch:\n  name: main\n", 15, "branch"),
        (MINIMAL.replace("    manifest: api.yaml\n", "    manifest: api.yaml\n    image: app/b\n"), 15, IMAGE_KEY),
    ],
    ids=["top-level", "in-a-service"],
)
def test_a_key_written_twice_is_refused_naming_both_lines(text: str, line: int, key: str) -> None:
    error = error_of(text)
    assert error.line == line and error.key == key and "key written twice (first at line" in str(error), str(error)
