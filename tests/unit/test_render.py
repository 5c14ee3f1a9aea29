"""Rendering manifests for a release: pure functions, no cluster."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from textwrap import dedent, indent
from typing import Any

import pytest
import yaml

from deploybook.config.model import Confinement
from deploybook.errors import RenderError
from deploybook.images.references import image_name
from deploybook.manifests.load import Manifest, load_manifests
from deploybook.manifests.render import render_manifests, rendered_text

GATEWAY_REF = "localhost:5000/dx29/gateway@sha256:" + "a" * 64
MIGRATE_REF = "localhost:5000/dx29/migrate@sha256:" + "b" * 64
IMAGES = {"dx29/gateway": GATEWAY_REF, "dx29/migrate": MIGRATE_REF}
LABELS = {"deploybook.io/environment": "local", "deploybook.io/release": "dx29"}
ANNOTATIONS = {"deploybook.io/release-id": "local-20260101-1", "deploybook.io/git-sha": "0" * 40}

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: dx29-gateway-deployment
  labels:
    app.kubernetes.io/name: gateway
spec:
  replicas: 1
  selector:
    matchLabels:
      app: dx29-gateway-backend
  template:
    metadata:
      labels:
        app: dx29-gateway-backend
    spec:
      initContainers:
        - name: migrate
          image: dx29/migrate:1.0
      containers:
        - name: gateway
          image: dx29/gateway
"""
SERVICE = """\
apiVersion: v1
kind: Service
metadata:
  name: dx29-gateway
spec:
  selector:
    app: dx29-gateway-backend
  ports:
    - port: 80
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def manifest(text: str, source: str = "app.yaml", index: int = 1) -> Manifest:
    return Manifest(doc=yaml.safe_load(text), source=Path(source), index=index, line=1)


def render(manifests: list[Manifest], **overrides: Any) -> list[dict[str, Any]]:
    options: dict[str, Any] = {
        "images": IMAGES,
        "namespace": "dx29-local",
        "labels": LABELS,
        "annotations": ANNOTATIONS,
        "pull_secret": "deploybook-registry",
        "replicas": {},
    }
    options.update(overrides)
    return render_manifests(manifests, **options)


class TestLoadManifests:
    def test_reads_documents_with_file_index_and_line(self, tmp_path: Path) -> None:
        path = write(tmp_path, "gateway.yaml", DEPLOYMENT + "---\n" + SERVICE)
        loaded = load_manifests(path)
        assert [(m.doc["kind"], m.index, m.line) for m in loaded] == [
            ("Deployment", 1, 1),
            ("Service", 2, DEPLOYMENT.count("\n") + 2),
        ]
        assert loaded[1].where == f"{path}, document 2 (line {DEPLOYMENT.count(chr(10)) + 2})"

    def test_what_helm_runs_only_under_helm_test_is_left_out(self, tmp_path: Path) -> None:
        # As `helm template` writes a `helm create` chart: its connection check is a test hook;
        # a migration Job hooked to upgrades is a release's object and stays.
        hooked = """\
apiVersion: v1
kind: Pod
metadata:
  name: shop-test-connection
  annotations:
    "helm.sh/hook": {hooks}
spec:
  containers: [{{name: wget, image: busybox}}]
  restartPolicy: Never
"""
        text = "---\n".join([DEPLOYMENT, hooked.format(hooks="test"), hooked.format(hooks="test-success, test")])
        text += "---\n" + hooked.format(hooks="pre-upgrade,post-install").replace("Pod\n", "Job\n", 1)
        loaded = load_manifests(write(tmp_path, "chart.yaml", text))
        assert [(m.doc["kind"], m.index) for m in loaded] == [("Deployment", 1), ("Job", 4)]

    def test_directory_is_read_recursively_in_sorted_order(self, tmp_path: Path) -> None:
        (tmp_path / "sub").mkdir()
        write(tmp_path, "b.yml", SERVICE)
        write(tmp_path / "sub", "a.yaml", DEPLOYMENT)
        write(tmp_path, "notes.txt", "not a manifest")
        names = [m.source.name for m in load_manifests(tmp_path)]
        assert names == ["b.yml", "a.yaml"]  # "b.yml" < "sub/a.yaml"

    def test_a_json_file_is_read_as_json_tabs_and_exponents_too(self, tmp_path: Path) -> None:
        doc = yaml.safe_load(DEPLOYMENT)
        doc["spec"]["template"]["metadata"]["annotations"] = {"ratio": 1e3}
        write(tmp_path, "a.json", json.dumps(doc, indent="\t"))  # PyYAML refuses tab indentation
        write(tmp_path, "b.yaml", SERVICE)
        write(tmp_path, "c.json", json.dumps({"apiVersion": "v1", "kind": "List", "items": [yaml.safe_load(SERVICE)]}))
        loaded = load_manifests(tmp_path)
        assert [(m.source.name, m.doc["kind"], m.item) for m in loaded] == [
            ("a.json", "Deployment", None),
            ("b.yaml", "Service", None),
            ("c.json", "Service", 1),
        ]
        assert loaded[0].doc == doc and loaded[0].where == f"{tmp_path / 'a.json'}, document 1 (line 1)"

    @pytest.mark.parametrize(
        ("text", "problem"),
        [
            ('{"apiVersion": "v1",\n "kind": }', "malformed JSON at line 2, column 10: Expecting value"),
            ('{"kind": "ConfigMap", "metadata": {"name": "x"}}', "missing or empty 'apiVersion'"),
            ('{"a": ' * 150 + "1" + "}" * 150, "nests deeper than 100 levels (limit max_depth)"),
            ("[" * 5000 + "]" * 5000, "nests deeper than 100 levels"),
            ('{"kind": "ConfigMap", "data": {"A": "1", "A": "2"}}', "key 'A' written twice in one JSON object"),
        ],
        ids=["malformed", "no-apiVersion", "deep", "deeper-than-recursion", "a-key-twice"],
    )
    def test_a_bad_json_file_names_the_file_and_the_problem(self, tmp_path: Path, text: str, problem: str) -> None:
        path = write(tmp_path, "bad.json", text)
        with pytest.raises(RenderError) as info:
            load_manifests(path)
        assert problem in str(info.value) and str(path) in str(info.value)

    def test_empty_documents_are_skipped_but_counted(self, tmp_path: Path) -> None:
        path = write(tmp_path, "x.yaml", "---\n# only a comment\n---\n" + SERVICE)
        (only,) = load_manifests(path)
        assert only.doc["kind"] == "Service"
        assert only.index == 2

    def test_malformed_yaml_names_file_and_line(self, tmp_path: Path) -> None:
        path = write(tmp_path, "bad.yaml", SERVICE + "---\nkind: Service\nmetadata: [unclosed\n")
        with pytest.raises(RenderError) as info:
            load_manifests(path)
        message = str(info.value)
        assert str(path) in message
        assert "document 2" in message
        assert "line 13" in message  # the line after the unclosed bracket

    @pytest.mark.parametrize(
        ("text", "missing"),
        [
            ("apiVersion: v1\nmetadata: {name: x}\n", "'kind'"),
            ("kind: Service\nmetadata: {name: x}\n", "'apiVersion'"),
            ("apiVersion: v1\nkind: Service\nmetadata: {}\n", "'metadata.name'"),
            ("apiVersion: v1\nkind: Service\n", "'metadata.name'"),
            ("apiVersion: batch/v1\nkind: Job\nmetadata: {generateName: seed-}\n", "generateName 'seed-'"),
        ],
    )
    def test_missing_required_keys_name_the_document(self, tmp_path: Path, text: str, missing: str) -> None:
        path = write(tmp_path, "m.yaml", SERVICE + "---\n" + text)
        with pytest.raises(RenderError) as info:
            load_manifests(path)
        assert missing in str(info.value)
        assert f"{path}, document 2 (line {SERVICE.count(chr(10)) + 2})" in str(info.value)

    def test_a_list_document_is_rejected(self, tmp_path: Path) -> None:
        with pytest.raises(RenderError, match="must be a mapping, not list"):
            load_manifests(write(tmp_path, "l.yaml", "- a\n- b\n"))

    def test_a_v1_list_stands_for_its_items_each_named_by_its_place(self, tmp_path: Path) -> None:
        items = indent(DEPLOYMENT, "    ").replace("    apiVersion", "  - apiVersion", 1)
        items += indent(SERVICE, "    ").replace("    apiVersion", "  - apiVersion", 1)
        path = write(tmp_path, "list.yaml", SERVICE + "---\napiVersion: v1\nkind: List\nitems:\n" + items)
        loaded = load_manifests(path)
        assert [(m.doc["kind"], m.index, m.item) for m in loaded] == [
            ("Service", 1, None),
            ("Deployment", 2, 1),
            ("Service", 2, 2),
        ]
        assert loaded[1].where.endswith(f"document 2 (line {SERVICE.count(chr(10)) + 2}), item 1")

    @pytest.mark.parametrize(
        ("items", "problem"),
        [
            ("items: {a: 1}\n", "a List needs 'items'"),
            ("items:\n  - {apiVersion: v1, kind: Service, metadata: {}}\n", "'metadata.name' in Service"),
            ("items:\n  - {apiVersion: v1, kind: List, items: []}\n", "a List inside a List"),
            ("items:\n  - just a string\n", "must be a mapping, not str"),
        ],
        ids=["no-items", "nameless-item", "nested", "not-a-mapping"],
    )
    def test_a_bad_list_names_the_document_and_item(self, tmp_path: Path, items: str, problem: str) -> None:
        path = write(tmp_path, "list.yaml", "apiVersion: v1\nkind: List\n" + items)
        with pytest.raises(RenderError) as info:
            load_manifests(path)
        assert problem in str(info.value) and f"{path}, document 1 (line 1)" in str(info.value)

    @pytest.mark.parametrize(
        ("name", "text", "tool"),
        [
            ("kustomization.yaml", "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n", "kustomize"),
            ("Chart.yaml", "apiVersion: v2\nname: shop\nversion: 0.1.0\n", "Helm"),
        ],
    )
    def test_a_kustomization_or_a_chart_says_what_it_is_and_how_to_render_it(
        self, tmp_path: Path, name: str, text: str, tool: str
    ) -> None:
        with pytest.raises(RenderError) as info:
            load_manifests(write(tmp_path, name, text))
        assert f"a {tool} file, not a Kubernetes manifest" in str(info.value)
        assert "render them once" in info.value.one_line()

    def test_missing_path_and_empty_directory(self, tmp_path: Path) -> None:
        with pytest.raises(RenderError, match="does not exist"):
            load_manifests(tmp_path / "nope")
        with pytest.raises(RenderError, match="no manifest files"):
            load_manifests(tmp_path)


class TestImages:
    @pytest.mark.parametrize(
        ("image", "name"),
        [
            ("dx29/gateway", "dx29/gateway"),
            ("dx29/gateway:1.2", "dx29/gateway"),
            ("dx29/gateway@sha256:" + "c" * 64, "dx29/gateway"),
            ("dx29/gateway:1.2@sha256:" + "c" * 64, "dx29/gateway"),
            ("localhost:5000/dx29/gateway", "localhost:5000/dx29/gateway"),
            ("localhost:5000/dx29/gateway:3", "localhost:5000/dx29/gateway"),
        ],
    )
    def test_image_name_drops_tag_and_digest_not_port(self, image: str, name: str) -> None:
        assert image_name(image) == name

    def test_containers_and_init_containers_are_pinned(self) -> None:
        (deployment,) = render([manifest(DEPLOYMENT)])
        spec = deployment["spec"]["template"]["spec"]
        assert spec["containers"][0]["image"] == GATEWAY_REF
        assert spec["initContainers"][0]["image"] == MIGRATE_REF

    def test_unknown_image_names_file_document_and_image(self) -> None:
        text = DEPLOYMENT.replace("image: dx29/gateway\n", "image: dx29/unknown:2\n")
        with pytest.raises(RenderError) as info:
            render([manifest(SERVICE, index=1), manifest(text, "apps/dx29/manifests/gw.yaml", index=2)])
        message = str(info.value)
        assert "apps/dx29/manifests/gw.yaml, document 2" in message
        assert "'dx29/unknown:2'" in message
        assert "container 'gateway'" in message

    def test_an_image_no_service_builds_is_pinned_as_resolved_and_listed(self) -> None:
        from deploybook.manifests.render import unbuilt_images

        pinned = "localhost:5000/vendor/cache@sha256:" + "c" * 64
        text = DEPLOYMENT + "        - name: cache\n          image: localhost:5000/vendor/cache:7\n"
        doc = manifest(text)
        assert unbuilt_images(doc, IMAGES) == [("cache", "localhost:5000/vendor/cache:7")]
        (deployment,) = render([doc], pins={"localhost:5000/vendor/cache:7": pinned})
        images = [c["image"] for c in deployment["spec"]["template"]["spec"]["containers"]]
        assert images == [GATEWAY_REF, pinned]
        with pytest.raises(RenderError, match="not pinned to a digest"):
            render([doc], pins={"localhost:5000/vendor/cache:7": "localhost:5000/vendor/cache:7"})

    def test_unpinned_reference_is_refused(self) -> None:
        with pytest.raises(RenderError, match="not pinned to a digest"):
            render([manifest(DEPLOYMENT)], images={**IMAGES, "dx29/gateway": "localhost:5000/dx29/gateway:1"})

    def test_pod_and_cronjob_specs_are_pinned_too(self) -> None:
        pod = manifest(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: c, image: dx29/gateway}]\n"
        )
        cron = manifest(
            "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: c}\nspec:\n  schedule: '* * * * *'\n"
            "  jobTemplate:\n    spec:\n      template:\n        spec:\n"
            "          containers: [{name: m, image: 'dx29/migrate:9'}]\n"
        )
        rendered_pod, rendered_cron = render([pod, cron])
        assert rendered_pod["spec"]["containers"][0]["image"] == GATEWAY_REF
        cron_spec = rendered_cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        assert cron_spec["containers"][0]["image"] == MIGRATE_REF
        assert cron_spec["imagePullSecrets"] == [{"name": "deploybook-registry"}]


class TestMetadata:
    def test_namespaced_objects_get_the_environments_namespace(self) -> None:
        own = manifest(SERVICE.replace("metadata:\n", "metadata:\n  namespace: dx29-local\n", 1))
        namespace = manifest("apiVersion: v1\nkind: Namespace\nmetadata: {name: dx29-local}\n")
        deployment, service, ns = render([manifest(DEPLOYMENT), own, namespace])
        assert deployment["metadata"]["namespace"] == "dx29-local"
        assert service["metadata"]["namespace"] == "dx29-local"
        assert "namespace" not in ns["metadata"]  # the environment's own Namespace is allowed

    def test_another_namespace_is_refused_unless_allowed_by_name(self) -> None:
        foreign = manifest(SERVICE.replace("metadata:\n", "metadata:\n  namespace: kube-system\n", 1))
        with pytest.raises(RenderError) as info:
            render([foreign])
        assert "names namespace 'kube-system'" in info.value.message
        assert "stays in namespace dx29-local" in info.value.message
        assert info.value.source == "app.yaml, document 1 (line 1)"
        assert "confinement: {namespaces: [kube-system]}" in (info.value.hint or "")
        (allowed,) = render([foreign], confinement=Confinement(namespaces=frozenset({"kube-system"})))
        assert allowed["metadata"]["namespace"] == "kube-system"

    @pytest.mark.parametrize(
        "text",
        [
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: dx29-admin}\n"
            "roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}\n"
            "subjects: [{kind: ServiceAccount, name: default, namespace: dx29-local}]\n",
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: other}\n",
        ],
        ids=["cluster-role-binding", "another-namespace-object"],
    )
    def test_cluster_scoped_objects_are_refused_unless_allowed_by_kind_and_name(self, text: str) -> None:
        obj = manifest(text)
        name = f"{obj.doc['kind']}/{obj.doc['metadata']['name']}"
        with pytest.raises(RenderError) as info:
            render([obj])
        stays = "a release of this environment stays in namespace dx29-local"
        assert info.value.message == f"{name} is cluster-scoped: {stays}"
        assert f"confinement: {{cluster_scoped: [{name}]}}" in (info.value.hint or "")
        (allowed,) = render([obj], confinement=Confinement(cluster_scoped=frozenset({name})))
        assert "namespace" not in allowed["metadata"]

    def test_objects_get_labels_and_annotations(self) -> None:
        (service,) = render([manifest(SERVICE)])
        assert service["metadata"]["labels"] == {**LABELS, "app.kubernetes.io/managed-by": "deploybook"}
        assert service["metadata"]["annotations"] == ANNOTATIONS
        assert service["spec"]["selector"] == {"app": "dx29-gateway-backend"}  # untouched

    def test_pod_template_gets_labels_without_touching_selector_keys(self) -> None:
        labels = {**LABELS, "app": "something-else"}
        (deployment,) = render([manifest(DEPLOYMENT)], labels=labels)
        template = deployment["spec"]["template"]["metadata"]
        assert template["labels"]["app"] == "dx29-gateway-backend"
        assert template["labels"]["deploybook.io/environment"] == "local"
        assert template["labels"]["app.kubernetes.io/managed-by"] == "deploybook"
        assert template["annotations"] == ANNOTATIONS
        assert deployment["spec"]["selector"] == {"matchLabels": {"app": "dx29-gateway-backend"}}
        assert deployment["metadata"]["labels"]["app"] == "something-else"  # object labels are free

    def test_existing_labels_and_annotations_are_kept(self) -> None:
        text = SERVICE.replace("name: dx29-gateway\n", "name: dx29-gateway\n  annotations: {team: dx29}\n")
        (service,) = render([manifest(text)])
        assert service["metadata"]["annotations"] == {"team": "dx29", **ANNOTATIONS}

    def test_invalid_label_value_is_refused(self) -> None:
        with pytest.raises(RenderError, match="not a valid Kubernetes label value"):
            render([manifest(SERVICE)], labels={"deploybook.io/release": "has spaces"})

    def test_non_string_annotation_is_refused(self) -> None:
        with pytest.raises(RenderError, match="must be a string"):
            render([manifest(SERVICE)], annotations={"deploybook.io/attempt": 3})


class TestPodSpec:
    def test_pull_secret_is_added_once(self) -> None:
        text = DEPLOYMENT.replace(
            "    spec:\n      initContainers",
            "    spec:\n      imagePullSecrets: [{name: deploybook-registry}]\n      initContainers",
        )
        (deployment,) = render([manifest(text)])
        assert deployment["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "deploybook-registry"}]

    def test_no_pull_secret_when_none(self) -> None:
        (deployment,) = render([manifest(DEPLOYMENT)], pull_secret=None)
        assert "imagePullSecrets" not in deployment["spec"]["template"]["spec"]

    def test_replicas_by_workload_name_or_app_name_label(self) -> None:
        (by_name,) = render([manifest(DEPLOYMENT)], replicas={"dx29-gateway-deployment": 3})
        (by_label,) = render([manifest(DEPLOYMENT)], replicas={"gateway": 2})
        assert by_name["spec"]["replicas"] == 3
        assert by_label["spec"]["replicas"] == 2

    def test_replicas_by_service_name_through_the_manifest_file(self) -> None:
        (deployment, service) = render(
            [manifest(DEPLOYMENT, "apps/dx29/manifests/front.yaml"), manifest(SERVICE, "front.yaml")],
            replicas={"front": 4},
        )
        assert deployment["spec"]["replicas"] == 4
        assert "replicas" not in service["spec"]

    def test_workload_name_wins_over_file_stem(self) -> None:
        (deployment,) = render(
            [manifest(DEPLOYMENT, "gateway.yaml")], replicas={"gateway": 2, "dx29-gateway-deployment": 5}
        )
        assert deployment["spec"]["replicas"] == 5

    def test_replicas_for_an_unknown_workload_is_refused(self) -> None:
        with pytest.raises(RenderError, match="matches no Deployment or StatefulSet"):
            render([manifest(DEPLOYMENT)], replicas={"gatewya": 2})

    def test_negative_replicas_is_refused(self) -> None:
        with pytest.raises(RenderError, match="non-negative integer"):
            render([manifest(DEPLOYMENT)], replicas={"gateway": -1})


class TestPurity:
    def test_inputs_are_not_changed_and_output_is_deterministic(self) -> None:
        manifests = [manifest(DEPLOYMENT), manifest(SERVICE)]
        before = copy.deepcopy([m.doc for m in manifests])
        first = render(manifests)
        second = render(manifests)
        assert [m.doc for m in manifests] == before
        assert first == second
        assert rendered_text(first) == rendered_text(second)

    def test_rendered_text_round_trips(self) -> None:
        rendered = render([manifest(DEPLOYMENT), manifest(SERVICE)])
        text = rendered_text(rendered)
        assert text.startswith("apiVersion: apps/v1\n")  # keys sorted: the same objects, the same text
        assert list(yaml.safe_load_all(text)) == rendered


def test_rendered_sample_round_trip_through_files(tmp_path: Path) -> None:
    """load -> render -> YAML, as the apply stage does it."""
    write(tmp_path, "gateway.yaml", dedent(DEPLOYMENT) + "---\n" + SERVICE)
    rendered = render(load_manifests(tmp_path))
    assert [o["kind"] for o in rendered] == ["Deployment", "Service"]
    assert "dx29/gateway@sha256:" in rendered_text(rendered)


def test_rendered_text_shows_a_secrets_values_as_sha256_markers_only() -> None:
    secret = manifest(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: app-settings}\n"
        "data: {token: c3VwZXItc2VjcmV0LXRva2Vu}\nstringData: {password: correct-horse-battery}\n"
    )
    (obj,) = render([secret])
    assert obj["data"] == {"token": "c3VwZXItc2VjcmV0LXRva2Vu"}  # applied as written
    text = rendered_text([obj])
    for value in ("super-secret-token", "c3VwZXItc2VjcmV0LXRva2Vu", "correct-horse-battery"):
        assert value not in text
    for plain in ("super-secret-token", "correct-horse-battery"):
        assert f"sha256:{hashlib.sha256(plain.encode()).hexdigest()}" in text.replace("\n", " ").replace("  ", " ")


def test_what_only_the_server_sets_is_left_out_of_an_exported_manifest() -> None:
    """A manifest saved with ``kubectl get -o yaml``: its server-set metadata is not applied."""
    exported = yaml.safe_load(DEPLOYMENT)
    exported["metadata"].update(
        uid="0b7e1f0e-1111-2222-3333-444455556666",
        resourceVersion="123456",
        generation=7,
        creationTimestamp="2025-01-01T00:00:00Z",
        managedFields=[{"manager": "kubectl", "operation": "Update"}],
        annotations={"team.example/owner": "shop"},
    )
    exported["status"] = {"replicas": 1, "readyReplicas": 1}
    [obj] = render([Manifest(doc=exported, source=Path("app.yaml"), index=1, line=1)])
    [plain] = render([manifest(DEPLOYMENT)])
    assert obj.pop("status") == {"replicas": 1, "readyReplicas": 1}  # the server ignores it (a subresource)
    assert obj["metadata"]["annotations"].pop("team.example/owner") == "shop"  # the team's own kept
    assert obj == plain
    assert exported["metadata"]["resourceVersion"] == "123456"  # the input is left untouched
