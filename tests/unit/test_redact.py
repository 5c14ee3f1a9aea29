"""Secret redaction: markers with the sha256 of each value, never the value."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from typing import Any

import yaml

from deploybook.manifests.redact import LAST_APPLIED, marker, redact_objects, redact_secret, secret_values

PASSWORD = "planted-Pa55word-7f3a"
TOKEN = "planted-api-token-91c2e0"
REGISTRY_PASSWORD = "planted-registry-pw-4d1b"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def secret(**fields: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "secret-appsettings", "namespace": "app-ingress"},
        "type": "Opaque",
        **fields,
    }


def pull_secret(password: str = REGISTRY_PASSWORD) -> dict[str, Any]:
    """The shape deploybook.apply.pull_secret_object writes."""
    token = b64(f"deploybook:{password}")
    config = {"auths": {"localhost:5000": {"username": "deploybook", "password": password, "auth": token}}}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "deploybook-registry", "namespace": "app-ingress"},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": b64(json.dumps(config, sort_keys=True))},
    }


def planted_forms() -> list[str]:
    return [
        PASSWORD,
        b64(PASSWORD),
        TOKEN,
        b64(TOKEN),
        REGISTRY_PASSWORD,
        b64(f"deploybook:{REGISTRY_PASSWORD}"),
    ]


class TestRedactSecret:
    def test_data_and_stringdata_values_become_markers(self) -> None:
        redacted = redact_secret(secret(data={"token": b64(TOKEN)}, stringData={"password": PASSWORD}))
        assert redacted["data"]["token"] == f"<redacted sha256:{sha(TOKEN)}, {len(TOKEN)} bytes>"
        assert redacted["stringData"]["password"] == f"<redacted sha256:{sha(PASSWORD)}, {len(PASSWORD)} bytes>"
        assert redacted["metadata"] == {"name": "secret-appsettings", "namespace": "app-ingress"}
        assert redacted["type"] == "Opaque"

    def test_planted_values_never_reach_the_rendered_yaml(self) -> None:
        objs = [
            secret(data={"token": b64(TOKEN)}, stringData={"password": PASSWORD}),
            pull_secret(),
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"a": "b"}},
        ]
        text = yaml.safe_dump_all(redact_objects(objs))
        assert "kind: Secret" in text
        for planted in planted_forms():
            assert planted not in text, planted
        assert "redacted sha256:" in text

    def test_the_same_value_gives_the_same_marker_in_data_and_stringdata(self) -> None:
        as_data = redact_secret(secret(data={"password": b64(PASSWORD)}))
        as_string = redact_secret(secret(stringData={"password": PASSWORD}))
        assert as_data["data"]["password"] == as_string["stringData"]["password"]

    def test_a_changed_value_gives_a_changed_marker(self) -> None:
        before = redact_secret(secret(data={"password": b64(PASSWORD)}))
        after = redact_secret(secret(data={"password": b64(PASSWORD + "!")}))
        assert before["data"]["password"] != after["data"]["password"]

    def test_binary_data_is_hashed_decoded(self) -> None:
        raw = bytes(range(256))
        redacted = redact_secret(secret(data={"blob": base64.b64encode(raw).decode()}))
        assert redacted["data"]["blob"] == f"<redacted sha256:{hashlib.sha256(raw).hexdigest()}, 256 bytes>"

    def test_base64_with_line_breaks_decodes_as_the_api_server_does(self) -> None:
        wrapped = b64(PASSWORD * 4)
        wrapped = wrapped[:40] + "\n" + wrapped[40:]
        redacted = redact_secret(secret(data={"password": wrapped}))
        assert redacted["data"]["password"] == marker((PASSWORD * 4).encode())

    def test_malformed_base64_is_redacted_with_a_note_and_does_not_crash(self) -> None:
        redacted = redact_secret(secret(data={"password": PASSWORD}))  # plain text where base64 belongs
        value = redacted["data"]["password"]
        assert value.startswith(f"<redacted sha256:{sha(PASSWORD)}, {len(PASSWORD)} bytes, not valid base64")
        assert PASSWORD not in value

    def test_values_that_are_not_strings_are_redacted_too(self) -> None:
        redacted = redact_secret(secret(stringData={"port": 5432, "empty": None}))
        assert redacted["stringData"]["port"] == marker(b"5432", note="not a string but int")
        assert redacted["stringData"]["empty"] == marker(b"null", note="not a string but NoneType")

    def test_the_last_applied_annotation_is_redacted(self) -> None:
        live = secret(data={"password": b64(PASSWORD)})
        live["metadata"] = {
            **live["metadata"],
            "annotations": {
                LAST_APPLIED: json.dumps(secret(data={"password": b64(PASSWORD)})),
                "team": "dx29",
            },
        }
        redacted = redact_secret(live)
        annotations = redacted["metadata"]["annotations"]
        assert annotations["team"] == "dx29"
        assert annotations[LAST_APPLIED].startswith("<redacted sha256:")
        assert b64(PASSWORD) not in yaml.safe_dump(redacted)

    def test_the_input_is_left_untouched(self) -> None:
        original = secret(data={"token": b64(TOKEN)}, stringData={"password": PASSWORD})
        kept = copy.deepcopy(original)
        redact_secret(original)
        assert original == kept

    def test_other_kinds_come_back_as_an_equal_copy(self) -> None:
        configmap: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "c"},
            "data": {"k": "v"},
        }
        copied = redact_secret(configmap)
        assert copied == configmap
        copied["data"]["k"] = "changed"
        assert configmap["data"]["k"] == "v"

    def test_a_secret_with_a_mistyped_apiversion_is_still_redacted(self) -> None:
        typo = secret(stringData={"password": PASSWORD})
        typo["apiVersion"] = "v1beta1"
        assert PASSWORD not in yaml.safe_dump(redact_secret(typo))

    def test_secrets_inside_lists_are_redacted(self) -> None:
        as_list = {"apiVersion": "v1", "kind": "List", "items": [secret(stringData={"password": PASSWORD})]}
        item = {"metadata": {"name": "s"}, "data": {"token": b64(TOKEN)}}  # list items carry no kind
        listed = {"apiVersion": "v1", "kind": "SecretList", "items": [item]}
        text = yaml.safe_dump_all(redact_objects([as_list, listed]))
        assert PASSWORD not in text
        assert b64(TOKEN) not in text
        assert text.count("redacted sha256:") == 2


class TestSecretValues:
    def test_every_form_of_a_planted_value_is_listed(self) -> None:
        values = secret_values([secret(data={"token": b64(TOKEN)}, stringData={"password": PASSWORD}), pull_secret()])
        for planted in planted_forms():
            assert planted in values, planted
        assert f"deploybook:{REGISTRY_PASSWORD}" in values

    def test_the_registry_username_and_other_kinds_are_not_listed(self) -> None:
        configmap = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "not-a-secret"}}
        values = secret_values([pull_secret(), configmap])
        assert "deploybook" not in values
        assert "not-a-secret" not in values

    def test_a_legacy_dockercfg_is_searched_too(self) -> None:
        config = {"registry.example:5000": {"username": "u", "password": REGISTRY_PASSWORD, "email": "u@x"}}
        legacy = secret(type="kubernetes.io/dockercfg", data={".dockercfg": b64(json.dumps(config))})
        assert REGISTRY_PASSWORD in secret_values([legacy])

    def test_a_value_with_quotes_is_also_listed_json_escaped(self) -> None:
        values = secret_values([secret(stringData={"password": 'pa"ss\\word'})])
        assert 'pa\\"ss\\\\word' in values

    def test_the_long_lines_of_a_pem_key_are_listed_but_not_its_armour(self) -> None:
        body = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7"  # not a key: a line of base64
        label = " ".join(("PRIVATE", "KEY"))  # the armour made here, so no file holds key-like text
        pem = f"-----BEGIN {label}-----\n{body}\n-----END {label}-----\n"
        values = secret_values([secret(type="kubernetes.io/tls", data={"tls.key": b64(pem)})])
        assert pem in values
        assert body in values
        assert f"-----BEGIN {label}-----" not in values

    def test_malformed_base64_and_binary_values_are_listed_as_written(self) -> None:
        raw = base64.b64encode(b"\xff\xfe\x00binary").decode()
        values = secret_values([secret(data={"broken": "not base64!", "blob": raw})])
        assert {"not base64!", raw} <= values

    def test_empty_values_are_left_out(self) -> None:
        assert secret_values([secret(data={"empty": ""}, stringData={"blank": ""})]) == set()

    def test_secrets_in_lists_are_found(self) -> None:
        as_list = {"apiVersion": "v1", "kind": "List", "items": [secret(stringData={"password": PASSWORD})]}
        assert PASSWORD in secret_values([as_list])
