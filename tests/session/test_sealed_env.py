"""The sealed command's environment: no proxy variables, the CA everywhere; the user's own proxy for the relay."""

from __future__ import annotations

import pytest

from telemetry_audit.session.child_env import CA_BUNDLE_VARIABLES
from telemetry_audit.session.sealed_env import RUN_MARKER, sealed_environment, upstream_proxy_from


def test_proxy_variables_are_removed_and_every_ca_variable_is_set() -> None:
    base = {"PATH": "/bin", "HTTPS_PROXY": "http://corp:3128", "no_proxy": "internal", "http_proxy": "x"}
    env = sealed_environment(base, ca_cert_path="/ca.pem", ca_bundle_path="/bundle.pem", marker="m1")
    assert env["PATH"] == "/bin"
    assert not {"HTTPS_PROXY", "no_proxy", "http_proxy"} & set(env)
    assert all(env[name] == "/bundle.pem" for name in CA_BUNDLE_VARIABLES)
    assert env["NODE_EXTRA_CA_CERTS"] == "/ca.pem" and env[RUN_MARKER] == "m1"
    assert base["HTTPS_PROXY"] == "http://corp:3128"  # the caller's mapping is untouched


@pytest.mark.parametrize(("env", "expected"), [
    ({}, ""),
    ({"HTTPS_PROXY": "http://corp:3128", "HTTP_PROXY": "http://other:80"}, "http://corp:3128"),
    ({"https_proxy": "corp:3128"}, "http://corp:3128"),
    ({"HTTP_PROXY": " http://corp:8080 "}, "http://corp:8080"),
    ({"HTTPS_PROXY": ""}, ""),
])
def test_upstream_proxy_from_the_users_environment(env: dict[str, str], expected: str) -> None:
    assert upstream_proxy_from(env) == expected
