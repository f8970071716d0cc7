"""Tests for telemetry_audit/detectors/paths.py."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telemetry_audit.detectors import paths
from telemetry_audit.detectors.base import AuditEnvironment
from tests.detectors.helpers import PATHOLOGICAL, flagged

ENV = AuditEnvironment(home="/home/alice", cwd="/home/alice/work/billing-api", user="alice")
DETECTOR = paths.build({}, ENV)

TABLE: list[tuple[str, bool]] = [
    ("/home/alice/work/billing-api/serverless.yml", True),
    ("at Object.<anonymous> (/home/bob/proj/node_modules/x.js:10:5)", True),
    ("/Users/carol/Library/Caches/sst", True),
    ("/root/.aws/credentials", True),
    ("C:\\Users\\dave\\AppData\\Roaming\\npm", True),
    ("c:/users/dave/project", True),
    ("\\\\fileserver01\\builds\\x", True),
    ("file:///etc/hosts", True),
    ("config at ~/.serverlessrc", True),
    ("at handle (/opt/app/node_modules/serverless/lib/cli.js:112:17)", True),
    ("cwd=%2Fhome%2Falice%2Fwork%2Fbilling-api", True),
    ('{"cwd":"\\/home\\/alice\\/work\\/billing-api"}', True),
    ("~/work/billing-api", True),
    ("serverless.yml", False),
    ("src/handler.js", False),
    ("./node_modules/.bin/sls", False),
    ("/v1/events", False),
    ("/batch/", False),
    ("https://telemetry.ion.sst.dev/batch/", False),
    ("node-fetch/1.0 (+https://github.com/bitinn/node-fetch)", False),
    ("application/json", False),
    ("@serverless/dashboard-plugin", False),
    ("/rootfs", False),
    ("~1.2.3", False),
    ("2026-11-22T07:58:27Z", False),
    ("", False),
]


@pytest.mark.parametrize(("value", "should_flag"), TABLE)
def test_paths(value: str, should_flag: bool) -> None:
    assert bool(flagged(DETECTOR, value)) is should_flag


def test_cwd_and_home_ids() -> None:
    assert flagged(DETECTOR, "cwd=%2Fhome%2Falice%2Fwork%2Fbilling-api") == ["paths.cwd"]
    assert flagged(DETECTOR, "see https://example.com/home/alice") == ["paths.home"]


def test_whole_path_is_the_span() -> None:
    value = "Error at (/home/bob/proj/index.js:1:2)"
    (match,) = DETECTOR.find(value)
    assert value[match.start:match.end] == "/home/bob/proj/index.js"


@pytest.mark.parametrize(("setting", "value", "detector_id"), [
    ("bare_filenames", "serverless.yml", "paths.filename"),
    ("bare_filenames", ".env", "paths.filename"),
    ("relative_paths", "src/handlers/index.ts", "paths.relative"),
    ("relative_paths", "./node_modules/.bin/sls", "paths.relative"),
    ("absolute_paths", "/srv/build/output", "paths.absolute"),
])
def test_opt_in_settings(setting: str, value: str, detector_id: str) -> None:
    assert flagged(DETECTOR, value) == []
    assert flagged(paths.build({setting: True}, ENV), value) == [detector_id]


def test_short_or_general_directories_are_not_needles() -> None:
    detector = paths.build({}, AuditEnvironment(home="/", cwd="/tmp"))
    assert flagged(detector, "/tmp/x and /") == []


def test_disable() -> None:
    detector = paths.build({"disable": ["paths.home-dir", "paths.home", "paths.cwd"]}, ENV)
    assert flagged(detector, "/home/bob/x") == []


@pytest.mark.parametrize("bad", [{"bare_filenames": 1}, {"disable": ["paths.nope"]}, {"relative": True}])
def test_bad_settings_raise(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="paths"):
        paths.build(bad, ENV)


@pytest.mark.parametrize("value", PATHOLOGICAL, ids=lambda v: f"{v[:12]!r}x{len(v)}")
def test_pathological_values_complete(value: str) -> None:
    everything = {"bare_filenames": True, "relative_paths": True, "absolute_paths": True}
    for detector in (DETECTOR, paths.build(everything, ENV)):
        flagged(detector, value)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("/\\~.:%aZ09 _-@()"), max_size=200) | st.text())
def test_never_raises(value: str) -> None:
    flagged(paths.build({"bare_filenames": True, "relative_paths": True, "absolute_paths": True}, ENV), value)
