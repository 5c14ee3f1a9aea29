"""The YAML loader with limits: bombs refused at once, ordinary manifests loaded unchanged."""

from __future__ import annotations

import dataclasses
import itertools
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from deploybook.errors import RenderError
from deploybook.manifests.limits import DEFAULT_LIMITS, YamlLimits, check_file_size, load_documents


def billion_laughs(levels: int = 9, width: int = 9) -> str:
    """The classic document: level a holds `width` strings, each next level `width` aliases."""
    names = "abcdefghijklmnopqrstuvwxyz"[:levels]
    lines = ["apiVersion: v1", "kind: ConfigMap", "metadata: {name: lol}", "data:"]
    lines.append(f"  a: &a [{', '.join(['lol'] * width)}]")
    for previous, name in itertools.pairwise(names):
        lines.append(f"  {name}: &{name} [{', '.join([f'*{previous}'] * width)}]")
    return "\n".join(lines) + "\n"


def reference_documents(text: str, source: str) -> Iterator[tuple[int, int, Any]]:
    """render._documents as it stands today: the numbering and words the loader must keep."""
    loader = yaml.SafeLoader(text)
    index = 0
    try:
        while loader.check_node():
            node = loader.get_node()
            index += 1
            if node is not None:
                yield index, node.start_mark.line + 1, loader.construct_document(node)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown line"
        problem = getattr(e, "problem", None) or str(e)
        raise RenderError(f"malformed YAML in document {index + 1} at {where}: {problem}", source=source) from e
    finally:
        loader.dispose()


def refused(text: str, limits: YamlLimits = DEFAULT_LIMITS, source: str = "app.yaml") -> RenderError:
    with pytest.raises(RenderError) as info:
        list(load_documents(text, source=source, limits=limits))
    return info.value


DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: dx29-{n}-deployment
  labels: &labels
    app: dx29-{n}-backend
    app.kubernetes.io/name: "{n}"
spec:
  replicas: {replicas}
  selector:
    matchLabels: *labels
  template:
    metadata:
      labels: *labels
      annotations:
        checksum/config: "0x{n:0>8}"
    spec:
      containers:
        - name: web
          image: dx29/{n}:1.{replicas}
          args: ["--port", "8080", '--verbose']
          env:
            - &tz {{name: TZ, value: UTC}}
            - name: ENABLED
              value: "true"
          resources: &res
            requests: {{cpu: 10m, memory: 16Mi}}
            limits:
              <<: {{memory: 64Mi}}
        - name: sidecar
          image: dx29/sidecar
          env: [*tz]
          resources: *res
"""
SERVICE = """\
apiVersion: v1
kind: Service
metadata:
  name: dx29-{n}
spec:
  type: ClusterIP
  selector: {{app: dx29-{n}-backend}}
  ports:
    - {{name: http, port: 80, targetPort: 8080, protocol: TCP}}
"""
CONFIGMAP = """\
# settings for {n}
apiVersion: v1
kind: ConfigMap
metadata:
  name: dx29-{n}-settings
data:
  appsettings.json: |
    {{"Logging": {{"LogLevel": {{"Default": "Information"}}}}, "Retries": 3}}
  greeting: >-
    hello
    world
  empty: ""
  nothing: null
  when: 2026-01-01T00:00:00Z
  octal: 0o17
  yes_string: "yes"
"""
SECRET = """\
apiVersion: v1
kind: Secret
metadata: {{name: dx29-{n}-secret}}
type: Opaque
stringData:
  password: 's3cret-{n}'
data:
  token: c2VjcmV0LXRva2Vu
"""


def ordinary_file(documents: int = 200) -> str:
    templates = (DEPLOYMENT, SERVICE, CONFIGMAP, SECRET)
    docs = [templates[i % 4].format(n=f"svc{i}", replicas=i % 3 + 1) for i in range(documents)]
    return "---\n".join(docs)


class TestOrdinaryManifests:
    def test_a_200_document_file_loads_the_same_objects_as_safe_load_all(self) -> None:
        text = ordinary_file(200)
        loaded = [doc for _, _, doc in load_documents(text, source="app.yaml")]
        assert len(loaded) == 200
        assert loaded == list(yaml.safe_load_all(text))

    def test_numbering_is_the_same_as_render(self) -> None:
        text = "---\n" + ordinary_file(6) + "---\n---\n# a comment\n" + SERVICE.format(n="last")
        ours = [(index, line) for index, line, _ in load_documents(text, source="app.yaml")]
        assert ours == [(index, line) for index, line, _ in reference_documents(text, "app.yaml")]
        assert ours[-1][0] == 8  # the empty document between the two --- counts

    def test_measured_load_time_against_safe_load_all(self) -> None:
        text = ordinary_file(200)
        started = time.perf_counter()
        list(yaml.safe_load_all(text))
        plain = time.perf_counter() - started
        started = time.perf_counter()
        list(load_documents(text, source="app.yaml"))
        limited = time.perf_counter() - started
        print(f"\n200 documents: safe_load_all {plain:.3f} s, load_documents {limited:.3f} s ({limited / plain:.2f}x)")
        assert limited < 3 * plain + 0.5

    def test_a_document_exactly_at_the_limits_loads(self) -> None:
        text = "a: &x [1, 2]\nb: *x\n"  # 1 map + 2 keys + seq(3) + alias(3) = 9 nodes, 1 alias, depth 3
        limits = YamlLimits(max_nodes=9, max_aliases=1, max_depth=3, max_document_bytes=len(text))
        assert [doc for _, _, doc in load_documents(text, source="app.yaml", limits=limits)] == [
            {"a": [1, 2], "b": [1, 2]}
        ]

    def test_limits_are_frozen(self) -> None:
        with pytest.raises(dataclasses.FrozenInstanceError):
            DEFAULT_LIMITS.max_nodes = 1  # type: ignore[misc]


class TestAliasBombs:
    def test_measured_billion_laughs_is_refused_in_milliseconds_and_little_memory(self) -> None:
        bomb = billion_laughs()
        tracemalloc.start()
        started = time.perf_counter()
        error = refused(bomb, source="apps/dx29/manifests/lol.yaml")
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"\nbillion laughs, {len(bomb)} bytes: refused in {elapsed * 1000:.1f} ms, peak {peak >> 10} KiB")
        assert elapsed < 0.5
        assert peak < 2 * 1024 * 1024
        assert error.source == "apps/dx29/manifests/lol.yaml, document 1 (line 1)"
        assert "max_nodes" in error.message
        assert "more than 1,000,000 nodes" in error.message
        assert "billion laughs" in (error.hint or "")

    def test_the_count_seen_is_in_the_message(self) -> None:
        error = refused("a: &a [1, 2, 3]\nb: [*a, *a, *a]\n", YamlLimits(max_nodes=10))
        # map 1 + key a 1 + seq 4 = 6, key b 1 + seq 1 = 8, then the first alias adds 4.
        assert "more than 10 nodes" in error.message
        assert "12 counted when refused" in error.message

    def test_a_bomb_in_a_later_document_names_that_document_and_its_line(self) -> None:
        text = SERVICE.format(n="a") + "---\n" + SERVICE.format(n="b") + "---\n" + billion_laughs()
        error = refused(text)
        line = 2 * SERVICE.format(n="a").count("\n") + 3
        assert error.source == f"app.yaml, document 3 (line {line})"

    def test_merge_keys_that_multiply_are_counted_as_expanded(self) -> None:
        levels = ["a: &a {x: 1, y: 2, z: 3}"]
        for previous, name in itertools.pairwise("abcdefghi"):
            levels.append(f"{name}: &{name} {{<<: [{', '.join([f'*{previous}'] * 10)}]}}")
        error = refused("\n".join(levels) + "\n")
        assert "max_nodes" in error.message

    def test_too_many_aliases(self) -> None:
        text = "a: &a 1\nb: [*a, *a, *a, *a]\n"
        error = refused(text, YamlLimits(max_aliases=3))
        assert "more than 3 aliases (limit max_aliases; 4 seen when refused)" in error.message
        assert error.source == "app.yaml, document 1 (line 1)"

    @pytest.mark.parametrize("text", ["&a [*a]", "a: &a {b: *a}", "&a {<<: *a}"])
    def test_a_recursive_alias_is_refused(self, text: str) -> None:
        error = refused(text)
        assert "alias *a at line 1 refers to a node that contains it" in error.message

    def test_an_undefined_alias_is_malformed_yaml(self) -> None:
        error = refused("a: 1\n---\nb: *nope\n")
        assert error.message == "malformed YAML in document 2 at line 3, column 4: found undefined alias 'nope'"


class TestDepth:
    def test_nesting_at_the_limit_loads_and_one_deeper_is_refused(self) -> None:
        depth = DEFAULT_LIMITS.max_depth
        ok = "[" * depth + "]" * depth
        expected: list[Any] = []
        for _ in range(depth - 1):
            expected = [expected]
        assert [doc for _, _, doc in load_documents(ok, source="app.yaml")] == [expected]
        error = refused("[" * (depth + 1) + "]" * (depth + 1))
        assert f"nests deeper than {depth} levels (limit max_depth; depth {depth + 1} reached" in error.message

    def test_far_too_deep_text_is_refused_without_a_recursion_error(self) -> None:
        error = refused("[" * 20_000 + "]" * 20_000)
        assert "max_depth" in error.message

    def test_aliases_count_toward_depth(self) -> None:
        # a is 4 deep under the root mapping (depth 2..5); b aliases it under 3 more lists.
        text = "a: &a [[[[1]]]]\nb: [[[*a]]]\n"
        assert list(load_documents(text, source="app.yaml", limits=YamlLimits(max_depth=9)))
        error = refused(text, YamlLimits(max_depth=8))
        assert "depth 9 reached" in error.message


class TestSize:
    def test_a_document_over_the_byte_limit_names_its_document(self) -> None:
        big = "data:\n" + "".join(f"  key{i}: value{i}\n" for i in range(20))
        error = refused("a: 1\n---\n" + big, YamlLimits(max_document_bytes=100))
        assert error.source == "app.yaml, document 2 (line 3)"
        assert "max_document_bytes" in error.message
        assert "3 MiB" in (error.hint or "")

    def test_the_limit_is_in_utf8_bytes_not_characters(self) -> None:
        text = "a: " + "é" * 60 + "\n"  # 64 characters, 124 bytes
        error = refused(text, YamlLimits(max_document_bytes=100))
        assert "document is 124 bytes of YAML, more than 100 (limit max_document_bytes)" in error.message

    def test_a_file_over_the_byte_limit_is_refused_before_parsing(self) -> None:
        error = refused("a: [\n" + "x" * 200, YamlLimits(max_file_bytes=100))  # malformed: never parsed
        assert error.source == "app.yaml"
        assert "manifest file is 205 bytes, more than 100 (limit max_file_bytes)" in error.message

    def test_check_file_size_before_reading(self) -> None:
        check_file_size(DEFAULT_LIMITS.max_file_bytes, source="app.yaml")
        with pytest.raises(RenderError) as info:
            check_file_size(DEFAULT_LIMITS.max_file_bytes + 1, source="app.yaml")
        assert "limit max_file_bytes" in info.value.message

    def test_too_many_documents(self) -> None:
        error = refused("a: 1\n---\n" * 4, YamlLimits(max_documents=3))
        assert "more than 3 YAML documents in one file (limit max_documents)" in error.message


class TestMalformedYaml:
    def test_a_syntax_error_is_worded_as_render_words_it(self) -> None:
        text = SERVICE.format(n="a") + "---\nspec: [unclosed\n"
        with pytest.raises(RenderError) as expected:
            list(reference_documents(text, "app.yaml"))
        assert str(refused(text)) == str(expected.value)

    def test_a_constructor_error_names_the_document_it_is_in(self) -> None:
        # render._documents says "document 3" here: its index moves on before constructing.
        text = "a: 1\n---\nb: !!python/object:os.system x\n"
        error = refused(text)
        assert error.message.startswith("malformed YAML in document 2 at line 3, column 4: ")
        assert "python/object:os.system" in error.message


class TestKeysWrittenTwice:
    def test_a_key_written_twice_names_both_lines(self) -> None:
        text = "a: 1\n---\nkind: ConfigMap\ndata:\n  LOG_LEVEL: info\n  LOG_LEVEL: debug\n"
        error = refused(text)
        assert error.message.startswith("malformed YAML in document 2 at line 6, column 3: "), error.message
        assert "key 'LOG_LEVEL' written twice in one mapping (first at line 5)" in error.message

    def test_in_a_flow_mapping_too(self) -> None:
        assert "key 'a' written twice" in refused("x: {a: 1, a: 2}\n").message

    def test_a_key_overriding_a_merged_one_is_allowed(self) -> None:
        docs = [doc for _, _, doc in load_documents("base: &b {k: 1, j: 1}\nmine:\n  <<: *b\n  k: 2\n", source="m")]
        assert docs == [{"base": {"k": 1, "j": 1}, "mine": {"k": 2, "j": 1}}]

    def test_the_same_text_of_another_type_is_another_key(self) -> None:
        [(_, _, doc)] = load_documents("ports: {80: a, '80': b}\n", source="m")
        assert doc == {"ports": {80: "a", "80": "b"}}
