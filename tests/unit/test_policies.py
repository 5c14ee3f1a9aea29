"""Policies: set in the environment file and per service, relaxed only with a reason; each one judged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from deploybook.config.environment import parse_environment
from deploybook.config.model import Environment, PolicySetting
from deploybook.errors import ConfigError, PreflightFailed
from deploybook.manifests.load import Manifest
from deploybook.manifests.policies import manifest_policy_problems
from deploybook.release.preflight import preflight_release
from deploybook.verify.containers import ContainerFacts, policy_problems

BASE = """\
cluster: {context: c, namespace: ns}
registry: {address: localhost:5000}
branch: {name: null}
manifests: {path: m}
"""
SERVICES = """\
services:
  - {name: api, context: a, image: app/api, manifest: api.yaml, port: 8080}
  - name: web
    context: a
    image: app/web
    manifest: web.yaml
"""


def parse(text: str) -> Environment:
    return parse_environment(text, file=Path("environments/x.yaml"), name="x", root=Path("/repo"))


def error_of(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse(text)
    return info.value


# --------------------------------------------------------------------------- the environment file


def test_every_policy_is_enforced_by_default() -> None:
    env = parse(BASE + SERVICES)
    assert all(s.enforce for s in env.policies_for(env.service("api")).values())
    assert set(env.policies_for(env.service("api"))) == {
        "non_root",
        "port_listening",
        "resources_requested",
        "no_latest_tag",
    }
    assert env.relaxed_policies() == []


def test_a_relaxation_for_the_environment_holds_for_every_service_and_names_its_line() -> None:
    env = parse(BASE + 'policies: {non_root: {enforce: false, reason: "vendor image runs as root"}}\n' + SERVICES)
    relaxed = env.relaxed_policies()
    assert [(name, s.policy, s.reason, s.where) for name, s in relaxed] == [
        ("api", "non_root", "vendor image runs as root", "environments/x.yaml:5"),
        ("web", "non_root", "vendor image runs as root", "environments/x.yaml:5"),
    ]


def test_a_service_setting_wins_over_the_environments_policy_by_policy() -> None:
    services = SERVICES.replace(
        "    manifest: web.yaml\n",
        "    manifest: web.yaml\n    policies:\n      non_root: true\n"
        "      port_listening: {enforce: false, reason: the worker listens on nothing}\n",
    )
    env = parse(BASE + "policies:\n  non_root: {enforce: false, reason: legacy}\n" + services)
    web = env.policies_for(env.service("web"))
    assert web["non_root"].enforce and not web["port_listening"].enforce
    assert not env.policies_for(env.service("api"))["non_root"].enforce
    assert [(n, s.policy) for n, s in env.relaxed_policies()] == [("api", "non_root"), ("web", "port_listening")]


def test_an_override_in_the_environment_file_relaxes_an_app_service(tmp_path: Path) -> None:
    (tmp_path / "app.yaml").write_text("services:\n  - {name: api, context: a, image: app/api, manifest: api.yaml}\n")
    text = BASE + "services:\n  api:\n    policies: {resources_requested: {enforce: false, reason: burstable}}\n"
    env = parse_environment(text, file=tmp_path / "environments" / "x.yaml", name="x", root=tmp_path)
    ((name, setting),) = env.relaxed_policies()
    assert (name, setting.policy, setting.reason) == ("api", "resources_requested", "burstable")


@pytest.mark.parametrize(
    ("policies", "key", "message"),
    [
        ("{non_root: false}", "policies.non_root", "relaxing a policy needs a reason"),
        ("{non_root: {enforce: false}}", "policies.non_root.reason", "relaxing non_root needs a reason"),
        ("{non_root: {enforce: false, reason: '  '}}", "policies.non_root.reason", "needs a reason"),
        ("{run_as_root: true}", "policies.run_as_root", "unknown key (allowed: non_root, port_listening"),
        ("{non_root: {reason: x}}", "policies.non_root.enforce", "required: true or false"),
        ("{non_root: {enforce: no-way, reason: x}}", "policies.non_root.enforce", "expected true or false"),
        ("{non_root: 1}", "policies.non_root", "expected true or {enforce: false, reason: ...}"),
        ("{non_root: {enforce: false, reason: x, by: me}}", "policies.non_root.by", "unknown key"),
    ],
)
def test_a_bad_policy_value_is_located(policies: str, key: str, message: str) -> None:
    error = error_of(BASE + f"policies: {policies}\n" + SERVICES)
    assert (error.file, error.line, error.key) == ("environments/x.yaml", 5, key)
    assert message in str(error)


def test_a_bad_service_policy_is_located_under_the_service() -> None:
    services = SERVICES.replace("    manifest: web.yaml\n", "    manifest: web.yaml\n    policies: {non_root: false}\n")
    error = error_of(BASE + services)
    assert (error.line, error.key) == (11, "services[1].policies.non_root")


# --------------------------------------------------------------------------- pre-apply policies

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: api}
spec:
  template:
    spec:
      initContainers:
        - {name: migrate, image: app/api, resources: {requests: {cpu: 1m}}}
      containers:
        - {name: api, image: app/api, resources: {requests: {cpu: 10m, memory: 16Mi}}}
        - {name: cache, image: IMAGE, resources: RESOURCES}
"""


def manifest(image: str = "redis:7", resources: str = "{requests: {memory: 8Mi}}") -> Manifest:
    text = DEPLOYMENT.replace("IMAGE", image).replace("RESOURCES", resources)
    return Manifest(yaml.safe_load(text), Path("m/api.yaml"), 1, 1)


def judge(m: Manifest, **relaxed: str) -> list[str]:
    settings = {name: PolicySetting(name, False, reason) for name, reason in relaxed.items()}
    return manifest_policy_problems(
        [m], built={"app/api"}, settings=settings, service="api", environment_file="environments/x.yaml"
    )


def test_manifests_that_request_resources_and_fix_their_tags_pass() -> None:
    assert judge(manifest()) == []
    assert judge(manifest("redis:latest@sha256:" + "a" * 64)) == []  # a digest fixes it


@pytest.mark.parametrize("resources", ["{}", "{limits: {memory: 8Mi}}", "{requests: {}}", "null"])
def test_a_container_without_requests_breaks_resources_requested(resources: str) -> None:
    (problem,) = judge(manifest(resources=resources))
    assert problem.startswith("m/api.yaml, document 1 (line 1): Deployment/api container 'cache' requests no resources")
    assert "(policy resources_requested): add resources.requests" in problem
    assert "environments/x.yaml: services: {api: {policies: {resources_requested: {enforce: false" in problem
    assert judge(manifest(resources=resources), resources_requested="vendor chart") == []


@pytest.mark.parametrize("image", ["redis", "redis:latest", "localhost:5000/vendor/cache:latest"])
def test_an_unbuilt_image_on_latest_breaks_no_latest_tag(image: str) -> None:
    (problem,) = judge(manifest(image))
    assert f"container 'cache' runs image {image!r}, which is the moving tag latest (policy no_latest_tag)" in problem
    assert "no_latest_tag: {enforce: false" in problem
    assert judge(manifest(image), no_latest_tag="pinned by the vendor") == []


def test_a_service_image_is_not_judged_by_its_tag() -> None:
    m = manifest()
    m.doc["spec"]["template"]["spec"]["containers"][0]["image"] = "app/api:latest"
    assert judge(m) == []  # the release pins it to the digest it pushed


# --------------------------------------------------------------------------- runtime policies


def facts(uid: int, listening: set[int]) -> ContainerFacts:
    return ContainerFacts("api-1", "api", uid, frozenset(listening))


def runtime(f: ContainerFacts, port: int | None = 8080, **relaxed: str) -> list[str]:
    settings = {name: PolicySetting(name, False, reason) for name, reason in relaxed.items()}
    return policy_problems(f, port=port, settings=settings, service="api", file="environments/x.yaml")


def test_a_non_root_process_on_its_port_passes() -> None:
    assert runtime(facts(10001, {8080})) == []


def test_root_breaks_non_root_and_says_how_to_relax_it() -> None:
    (problem,) = runtime(facts(0, {8080}))
    assert problem.startswith("pod api-1 container api runs as root (uid 0), and policy non_root expects")
    assert 'services: {api: {policies: {non_root: {enforce: false, reason: "why"}}}}' in problem
    assert runtime(facts(0, {8080}), non_root="vendor image runs as root") == []


def test_a_declared_port_not_listening_breaks_port_listening() -> None:
    (problem,) = runtime(facts(10001, {9090}))
    assert "listens on [9090], not on the declared port 8080 (policy port_listening)" in problem
    assert runtime(facts(10001, {9090}), port_listening="listens late") == []
    assert runtime(facts(10001, set()), port=None) == []  # no port declared, nothing to listen on


# --------------------------------------------------------------------------- the preflight


def preflight(tmp_path: Path, text: str, env_extra: str = "", rules: Any = None) -> list[Any]:
    (tmp_path / "m").mkdir(exist_ok=True)
    (tmp_path / "m" / "api.yaml").write_text(text)
    env_text = BASE + env_extra + "services:\n  - {name: api, context: a, image: app/api, manifest: api.yaml}\n"
    env = parse_environment(env_text, file=tmp_path / "environments" / "x.yaml", name="x", root=tmp_path)
    refs = {"app/api": "localhost:5000/app/api@sha256:" + "0" * 64}
    return preflight_release(
        None, env, tmp_path / "m", refs=refs, pull_secret=None, release_id="r", git_sha="0" * 40, rules=rules
    )


POD = "apiVersion: v1\nkind: Pod\nmetadata: {name: api}\nspec:\n  containers: [{name: api, image: app/api}]\n"


def test_the_preflight_refuses_a_breach_before_anything_is_applied(tmp_path: Path) -> None:
    with pytest.raises(PreflightFailed) as info:
        preflight(tmp_path, POD)
    text = info.value.one_line()
    assert "1 of 1 services' manifests refused" in text and "m/api.yaml" in text
    assert "Pod/api container 'api' requests no resources (policy resources_requested)" in text


def test_a_relaxed_policy_lets_the_preflight_pass(tmp_path: Path) -> None:
    relax = "policies: {resources_requested: {enforce: false, reason: a pod of the test}}\n"
    (result,) = preflight(tmp_path, POD, relax)
    assert result.ok


def test_a_teams_manifest_rules_refuse_before_anything_is_applied(tmp_path: Path) -> None:
    relax = "policies: {resources_requested: {enforce: false, reason: a pod of the test}}\n"
    seen: list[tuple[str, list[str]]] = []

    def rules(service: Any, objects: list[dict[str, Any]]) -> list[str]:
        seen.append((service.name, [o["kind"] for o in objects]))
        return ["Pod/api: the team wants a Deployment"]

    with pytest.raises(
        PreflightFailed, match=r"the team's policies refuse .*api\.yaml: Pod/api: the team wants a Deployment"
    ):
        preflight(tmp_path, POD, relax, rules=rules)
    assert seen == [("api", ["Pod"])]
