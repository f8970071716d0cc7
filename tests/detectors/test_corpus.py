"""The labelled corpus: recall on planted values, and no findings on the real captures."""

from __future__ import annotations

import pytest

from telemetry_audit.detectors import catalogue
from telemetry_audit.detectors.base import AuditEnvironment
from telemetry_audit.detectors.providers import PROVIDERS
from tests.detectors import corpus


def test_committed_corpus_is_reproducible() -> None:
    assert [r.to_json() for r in corpus.generate()] == [r.to_json() for r in corpus.load()]


def test_recall_and_precision_on_the_corpus() -> None:
    scores = corpus.evaluate(corpus.load(), corpus.build_all())
    for family, score in scores.items():
        assert score.labels > 0, family
        assert score.recall >= 0.95, (family, score.missed)
    assert scores["overall"].false_positives == 0, scores["overall"].false


def test_every_secret_format_has_three_positives() -> None:
    counts: dict[str, int] = {}
    for record in corpus.load():
        if record.detector:
            counts[record.detector] = counts.get(record.detector, 0) + 1
    assert set(counts) == set(corpus.SECRET_FORMATS) | {"secrets.key-context"}
    assert min(counts.values()) >= 3


def test_every_secret_detector_has_samples() -> None:
    catalogued = {d.id for d in catalogue() if d.family == "secrets"}
    assert catalogued - set(corpus.SECRET_FORMATS) == {"secrets.key-context", "secrets.high-entropy"}


def test_each_provider_sample_is_found_by_its_own_detector() -> None:
    detectors = corpus.build_all()
    for record in corpus.load():
        if not record.detector:
            continue
        found = {m.detector_id for path, value in corpus.flatten(record.event)
                 for _, m in corpus.scan(detectors, value, path)}
        assert record.detector in found, (record.id, found)


def test_every_provider_format_cites_its_documentation() -> None:
    assert len(PROVIDERS) >= 100
    for pattern in PROVIDERS:
        assert pattern.source.startswith("https://"), pattern.id
        assert pattern.keywords or pattern.prefilter, pattern.id  # the pre-filter decides which patterns run


def test_captures_are_all_copied() -> None:
    shared = corpus.DATA.parent.parent.parent / "shared" / "wire" / "captures"
    if not shared.is_dir():
        pytest.skip("shared captures not beside the project")
    wanted = {p.name for p in shared.iterdir() if p.suffix in (".json", ".body")}
    assert wanted <= {p.name for p in corpus.captures()}


@pytest.mark.parametrize("capture", corpus.captures(), ids=lambda p: p.name)
def test_no_findings_on_real_captures(capture: object) -> None:
    detectors = corpus.build_all()
    findings = [(path, m.detector_id) for path, value in corpus.capture_values(capture)  # type: ignore[arg-type]
                for _, m in corpus.scan(detectors, value)]
    assert findings == []


def test_localstack_token_in_session_capture_is_caught_by_env_values() -> None:
    # The session capture carries the (fake) raw LOCALSTACK_AUTH_TOKEN as `api_key`; its value is not in a
    # documented token format, so only the env-values family, knowing the variable, can flag it.
    environment = AuditEnvironment(env={"LOCALSTACK_AUTH_TOKEN": "ls-FAKE-TOKEN-1234"})
    detectors = corpus.build_all(environment)
    values = corpus.capture_values(corpus.CAPTURES / "localstack-session.json")
    findings = [(path, m.title) for path, value in values for _, m in corpus.scan(detectors, value)]
    assert findings == [("body.payload.api_key", "value of $LOCALSTACK_AUTH_TOKEN")]
