"""Detector benchmark: recall, precision and throughput, beside detect-secrets on the same corpus.

Run from the project root:

    python benchmarks/bench_detectors.py [--per-format N] [--seconds S]

The corpus is generated in memory from `tests/detectors/corpus.py` with a
different seed and more samples than the committed test corpus; the real
captures in `tests/data/captures/` are scanned as negatives. Throughput is
measured on one core with every family on: each event is flattened to its
string values and every value goes through every family, as the engine does.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.detectors import corpus  # noqa: E402


def _timed(work: Callable[[], int], seconds: float) -> tuple[int, float]:
    """Repeat `work` for about `seconds`; returns (units done, elapsed seconds)."""
    done = 0
    start = time.perf_counter()
    elapsed = 0.0
    while elapsed < seconds:
        done += work()
        elapsed = time.perf_counter() - start
    return done, elapsed


def _detect_secrets_scanner() -> Callable[[str], list[tuple[int, int]]]:
    from detect_secrets.core.scan import scan_line
    from detect_secrets.settings import default_settings

    settings = default_settings()
    settings.__enter__()  # detect-secrets configures a global; `spans` keeps the context alive

    def spans(value: str, _context: object = settings) -> list[tuple[int, int]]:
        out = []
        for secret in scan_line(value):
            text = secret.secret_value or ""
            at = value.find(text) if text else -1
            # A finding we cannot locate is scored as a false positive (span outside any planted value).
            out.append((at, at + len(text)) if at >= 0 else (-2, -1))
        return out

    return spans


def _score_detect_secrets(records: Iterable[corpus.Record], spans: Callable[[str], list[tuple[int, int]]],
                          families: tuple[str, ...]) -> corpus.Score:
    score = corpus.Score()
    for record in records:
        labels = [(i, t) for i, (f, t) in enumerate(record.labels) if f in families]
        found: set[int] = set()
        for _, value in corpus.flatten(record.event):
            planted = [(i, s, s + len(t)) for i, t in labels for s in corpus._occurrences(value, t)]
            for start, end in spans(value):
                hit = [i for i, s, e in planted if s < end and start < e]
                if hit or any(s < end and start < s + len(t) for _, t in record.labels
                              for s in corpus._occurrences(value, t)):
                    score.true_positives += 1
                    found.update(hit)
                else:
                    score.false_positives += 1
        score.labels += len(labels)
        score.found += len(found)
    return score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-format", type=int, default=20, help="positives per secret format")
    parser.add_argument("--seconds", type=float, default=3.0, help="time per throughput measurement")
    args = parser.parse_args()

    records = corpus.generate(seed=corpus.SEED + 1, per_format=args.per_format, negatives=400)
    detectors = corpus.build_all()
    scores = corpus.evaluate(records, detectors)
    capture_values = [pv for p in corpus.captures() for pv in corpus.capture_values(p)]
    capture_fp = {name: 0 for name in detectors}
    for path, value in capture_values:  # with key-name context, as the engine scans them
        for family, _ in corpus.scan(detectors, value, path):
            capture_fp[family] += 1
    spans = _detect_secrets_scanner()
    ds_family = {name: _score_detect_secrets(records, spans, (name,)) for name in detectors}

    print(f"corpus: {len(records)} events, {scores['overall'].labels} planted values, "
          f"{sum(1 for r in records if not r.labels)} benign events; "
          f"{len(corpus.captures())} real captures ({len(capture_values)} string values)")
    print(f"{'family':<12} {'labels':>6} {'recall':>8} {'precision':>10} {'FP(corpus)':>11} {'FP(captures)':>13}"
          f" | {'detect-secrets recall':>21} {'precision':>10}")
    for name, score in scores.items():
        fp = sum(capture_fp.values()) if name == "overall" else capture_fp[name]
        theirs = ds_family.get(name)
        versus = f" | {theirs.recall:>21.1%} {theirs.precision:>10.1%}" if theirs else " |"
        print(f"{name:<12} {score.labels:>6} {score.recall:>8.1%} {score.precision:>10.1%} "
              f"{score.false_positives:>11} {fp:>13}{versus}")
    for name, score in scores.items():
        if name != "overall":
            for line in score.missed[:5]:
                print(f"  missed  {line}")
            for line in score.false[:5]:
                print(f"  false+  {line}")

    events = [r.event for r in records]
    sizes = [len(json.dumps(e, separators=(",", ":"))) for e in events]
    mean_kb = sum(sizes) / len(sizes) / 1024

    def ours() -> int:
        for event in events:
            for path, value in corpus.flatten(event):
                corpus.scan(detectors, value, path)
        return len(events)

    def flatten_only() -> int:
        for event in events:
            for _ in corpus.flatten(event):
                pass
        return len(events)

    capture_events = [json.loads(p.read_bytes()) if p.suffix == ".body" else json.loads(p.read_text())["body_json"]
                      for p in corpus.captures()]
    capture_kb = sum(len(json.dumps(e, separators=(",", ":"))) for e in capture_events) / len(capture_events) / 1024

    def ours_on_captures() -> int:
        for event in capture_events:
            for path, value in corpus.flatten(event):
                corpus.scan(detectors, value, path)
        return len(capture_events)

    cap_done, cap_elapsed = _timed(ours_on_captures, args.seconds)
    cap_rate = cap_done / cap_elapsed
    print(f"\nthroughput on the real capture bodies, all four families, one core: {cap_rate:,.0f} requests/s "
          f"(mean body {capture_kb:.2f} KB -> {cap_rate * capture_kb:,.0f} 1 KB events/s)")
    done, elapsed = _timed(ours, args.seconds)
    rate = done / elapsed
    flat_done, flat_elapsed = _timed(flatten_only, min(args.seconds, 1.0))
    print(f"throughput on the labelled corpus (2/3 of events carry a planted value): {rate:,.0f} events/s "
          f"(mean event {mean_kb:.2f} KB -> {rate * mean_kb:,.0f} 1 KB events/s; "
          f"flattening alone {flat_done / flat_elapsed:,.0f} events/s)")

    ds_secrets = _score_detect_secrets(records, spans, ("secrets",))
    ds_all = _score_detect_secrets(records, spans, ("secrets", "paths", "env_values", "pii"))
    ds_capture_fp = sum(len(spans(v)) for _, v in capture_values)

    def theirs() -> int:
        for event in events:
            for _, value in corpus.flatten(event):
                spans(value)
        return len(events)

    ds_done, ds_elapsed = _timed(theirs, args.seconds)
    ds_rate = ds_done / ds_elapsed
    print("\ndetect-secrets (default plugins, scan_line per value) on the same corpus:")
    print(f"  secrets recall {ds_secrets.recall:.1%}, all-families recall {ds_all.recall:.1%}, "
          f"precision {ds_all.precision:.1%} ({ds_all.false_positives} false positives in the corpus, "
          f"{ds_capture_fp} in the real captures)")
    print(f"  throughput {ds_rate:,.0f} events/s ({ds_rate * mean_kb:,.0f} 1 KB events/s)")
    print(f"  ours: secrets recall {scores['secrets'].recall:.1%}, overall precision "
          f"{scores['overall'].precision:.1%}, {rate / ds_rate:.1f}x the speed")


if __name__ == "__main__":
    main()
