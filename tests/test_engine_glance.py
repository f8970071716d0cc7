"""Requests under `fields:` checks and custom patterns (the shipped tool packs) decide at a glance exactly as
reading every field decides: documented requests pass, and every kind of finding still comes out."""

from __future__ import annotations

import copy
import functools
import json
from typing import Any

import pytest

from benchmarks import bench_engine
from telemetry_audit.decoders import body_leaves, decode_request
from telemetry_audit.engine import Auditor
from telemetry_audit.model import Action, Limits, Request
from telemetry_audit.policy import default_references, load_policy


@functools.cache
def _auditor(fast_path: bool) -> Auditor:
    return Auditor(load_policy(default_references()), bench_engine.ENVIRONMENT, fast_path=fast_path)


def _summary(request: Request, fast_path: bool) -> tuple[Any, ...]:
    decision = _auditor(fast_path).evaluate(request)
    return (decision.action, decision.tool, decision.rule_ids, decision.redacted_body,
            tuple((f.rule_id, f.field, f.detector, f.kind, f.action, f.fingerprint, f.suppressed)
                  for f in decision.findings))


def _edited(request: Request, edit: Any) -> Request:
    body = json.loads(request.body)
    edit(body)
    return Request.from_url(request.method, request.url, dict(request.headers), json.dumps(body).encode())


def _first(body: Any) -> Any:
    return body[0] if isinstance(body, list) else body


EDITS = {
    "as sent": lambda body: None,
    "undocumented field": lambda body: _first(body).update({"hostname_hash": "abc"}),
    "home path in a documented field": lambda body: _first(body).update(
        {"timezone": "/home/alice/work/billing-api/serverless.yml"}) if isinstance(body, list) else None,
    "token under a documented key": lambda body: _first(body).update(
        {"event": "ghp_Zx8Qw2Er4Ty6Ui8Op0As2Df4Gh6Jk8Lz0Xc2V"}) if not isinstance(body, list) else None,
    "scoped custom pattern (frameworkLocalUserId)": lambda body: _first(body).update(
        {"frameworkLocalUserId": "1f0e2d3c-0000-1000-8000-00aabbccddee"}) if isinstance(body, list) else None,
    "option in SST argv": lambda body: body["batch"][0]["properties"].update({"args": ["deploy", "--stage=prod"]})
    if isinstance(body, dict) and "batch" in body else None,
    "embedded document": lambda body: _first(body).update({"event": '{"token": "x"}'})
    if not isinstance(body, list) else None,
    "e-mail in a list": lambda body: _first(body)["config"]["plugins"].append("alice.smith@initech.example")
    if isinstance(body, list) else None,
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_pack_host_requests_decide_at_a_glance_as_in_full(edit: str) -> None:
    for request in bench_engine.make_pack_host_corpus(6):
        edited = _edited(request, EDITS[edit])
        assert _summary(edited, True) == _summary(edited, False)


def test_documented_pack_host_requests_pass_and_edits_are_found() -> None:
    requests = bench_engine.make_pack_host_corpus(6)
    assert all(_auditor(True).evaluate(r).action is Action.ALLOW and not _auditor(True).evaluate(r).findings
               for r in requests)
    serverless = next(r for r in requests if r.host.startswith("sp-notifications"))
    decision = _auditor(True).evaluate(_edited(serverless, EDITS["undocumented field"]))
    assert any(f.field == "[0].hostname_hash" for f in decision.findings)
    decision = _auditor(True).evaluate(_edited(serverless, EDITS["scoped custom pattern (frameworkLocalUserId)"]))
    assert any(f.detector == "serverless.local-user-id" for f in decision.findings)


def test_the_bench_corpus_decides_at_a_glance_as_in_full() -> None:
    for event in bench_engine.make_corpus(40, leak_rate=0.3):
        assert _summary(event.request, True) == _summary(event.request, False)


@pytest.mark.parametrize("document", [
    {"a": 1, "b": [1, "x", None, True, 1.5], "c": {"d": {"e": "f"}}, "g.h": "i", "": []},
    [{"x": [[1, 2], {"y": "z"}]}, "w"],
    {"attributes": [{"key": "k", "value": {"stringValue": "v"}}]},
    {"a": "[1, 2]"},
    {"a": "eyJ0b2tlbiI6ICJ4In0="},
])
def test_body_leaves_name_what_fields_walks(document: Any) -> None:
    request = Request.from_url("POST", "https://example.com/e", {"content-type": "application/json"},
                               json.dumps(document).encode())
    decoded = decode_request(request)
    read = body_leaves(decoded)
    fields = decode_request(request).fields
    body = [(f.generic_path, f.value) for f in fields
            if not f.path.startswith(("header.", "url.", "key:"))]
    keys = [(f.generic_path, f.value) for f in fields if f.path.startswith("key:") and f.path != "key:header"]
    if read is None:  # only where the walk does more than name leaves
        assert any(f.locator and "embedded" in repr(f.locator) for f in fields) or "attributes" in document
        return
    assert read[0] == body
    assert read[1] == keys
    assert json.loads(request.body) == copy.deepcopy(decoded.body_tree)  # naming leaves changes nothing


def test_body_leaves_stop_at_the_limits() -> None:
    request = Request.from_url("POST", "https://example.com/e", {"content-type": "application/json"},
                               json.dumps({"a": list(range(50)), "b": [[[[[[1]]]]]]}).encode())
    assert body_leaves(decode_request(request, Limits(max_fields=10))) is None
    assert body_leaves(decode_request(request, Limits(max_depth=4))) is None
    assert body_leaves(decode_request(request)) is not None


@pytest.mark.parametrize("cookie", [
    "theme=dark; dd_api_key_v=Zq8vL2pR5tW9yBx7Kd3aa",
    "sessionToken=Zq8vL2pR5tW9yBx7Kd3aa",
    "theme=dark; sid=1",
    "password_set=true",
])
@pytest.mark.parametrize("url", ["https://telemetry.sst.dev/events", "https://api.segment.io/v1/track",
                                 "https://sp-notifications-and-metrics-v1.serverless-platform.com/"])
def test_a_cookie_named_like_a_secret_is_seen_at_a_glance(cookie: str, url: str) -> None:
    """The scan text holds the Cookie header, not each cookie's name: key context on cookie names is asked
    separately, so the glance never lets through what reading every field blocks."""
    body = b"[{}]" if url.endswith(".com/") else b"{}"
    request = Request.from_url("POST", url, {"content-type": "application/json", "cookie": cookie,
                                             "user-agent": "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)"},
                               body)
    assert _summary(request, True) == _summary(request, False)
    bare = [Auditor(load_policy(["default"]), bench_engine.ENVIRONMENT, fast_path=f).evaluate(request)
            for f in (True, False)]
    assert bare[0].action == bare[1].action and bare[0].findings == bare[1].findings


@pytest.mark.parametrize("space", ["\u00a0", "\u2003", "\u3000", " ", "\t"])
def test_a_document_behind_unicode_white_space_is_opened_at_a_glance(space: str) -> None:
    """`sniff_embedded` strips Unicode white space before decoding base64 JSON: the glance must see such a
    string as a possible document too (it once let a token inside one through)."""
    import base64

    inner = base64.b64encode(json.dumps({"t": "ghp_" + "Qa8Zx2Wc4Ed6Rf8Tg0Yh2Uj4Ik6Ol8Pm0Nb2V"}).encode()).decode()
    body = json.dumps({"a": space + inner + space}, ensure_ascii=False).encode()
    request = Request.from_url("POST", "https://telemetry.sst.dev/events", {"content-type": "application/json"},
                               body)
    decisions = [Auditor(load_policy(["default"]), bench_engine.ENVIRONMENT, fast_path=f).evaluate(request)
                 for f in (True, False)]
    assert [d.action for d in decisions] == [Action.BLOCK, Action.BLOCK]
    assert decisions[0].findings == decisions[1].findings


@pytest.mark.parametrize("leaves", [40, 44, 45, 46, 50])
def test_the_field_limit_counts_header_fields_at_a_glance(leaves: int) -> None:
    """The full walk lists header and URL fields before the body's, and they count towards `max_fields`."""
    policy = load_policy(default_references())
    request = Request.from_url(
        "POST", "https://sp-notifications-and-metrics-v1.serverless-platform.com/",
        {"content-type": "application/json", "user-agent": "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)",
         "accept": "*/*"},
        json.dumps([{"config": {"plugins": ["serverless-offline"] * (leaves - 1)}, "ciName": None}]).encode())
    limits = Limits(max_fields=50)
    decisions = [Auditor(policy, bench_engine.ENVIRONMENT, fast_path=f, limits=limits).evaluate(request)
                 for f in (True, False)]
    assert decisions[0].action == decisions[1].action
    assert decisions[0].findings == decisions[1].findings


@pytest.mark.parametrize("path", ["/v1/batch", "/v1/b%61tch", "/v1/%62%61%74%63%68/" + "%7E" * 400])
def test_a_percent_encoded_path_does_not_move_the_spans_of_the_body(path: str) -> None:
    """The scan text holds the path as sent and percent-decoded: the body's spans start after both (the body's
    fields around a leak were once looked for at the wrong offset, and a leak there went unseen)."""
    events = [{"event": f"e{i}", "userId": f"u{i}", "properties": {"n": i}} for i in range(40)]
    events[17]["properties"]["cwd"] = "/home/alice/secret-project"
    events[31]["properties"]["contact"] = "alice@example.com"
    request = Request.from_url("POST", "https://api.segment.io" + path, {"content-type": "application/json"},
                               json.dumps({"batch": events}).encode())
    decisions = [Auditor(load_policy(["default"]), bench_engine.ENVIRONMENT, fast_path=f).evaluate(request)
                 for f in (True, False)]
    assert decisions[0].findings == decisions[1].findings
    assert {f.field for f in decisions[0].findings} == {"batch[17].properties.cwd", "batch[31].properties.contact"}


KEY_CONTEXT_BODIES = {
    "credential under a secret-sounding key": {"event": "x", "properties": {"password": "Zq8vL2pR5tW9yBx7Kd3a"}},
    "two credentials in a batch": {"batch": [{"properties": {"api_key": "Zq8vL2pR5tW9yBx7Kd3a"}},
                                             {"properties": {"client_secret": "Kd3aZq8vL2pR5tW9yBx7"}}]},
    "Segment write key beside a leak": {"writeKey": "Zq8vL2pR5tW9yBx7Kd3aZq8v",
                                        "properties": {"cwd": "/home/alice/work/billing-api"}},
    "credential in a long batch": {"batch": [{"i": i, "pad": "x" * 300} for i in range(40)]
                                   + [{"auth_token": "Zq8vL2pR5tW9yBx7Kd3a"}]},
    "OTLP attribute": {"resourceSpans": [{"resource": {"attributes": [
        {"key": "db.password", "value": {"stringValue": "Zq8vL2pR5tW9yBx7Kd3a"}}]}}]},
    "secret-sounding key, harmless value": {"properties": {"password": "true", "token_count": "12"}},
}


@pytest.mark.parametrize("header", [{}, {"x-api-key": "Zq8vL2pR5tW9yBx7Kd3a"}, {"authorization": "Bearer Zq8vL2pR5"}])
@pytest.mark.parametrize("body", list(KEY_CONTEXT_BODIES))
@pytest.mark.parametrize("url", ["https://api.segment.io/v1/batch", "https://telemetry.sst.dev/events",
                                 "https://collector.example/v1/traces"])
def test_key_context_matches_decide_at_a_glance_as_in_full(body: str, header: dict[str, str], url: str) -> None:
    """A credential under a name that says secret is placed at its value (the glance reads just that subtree)
    or, in a header, cookie or OTLP attribute, sends the request to the fields the full path reads: the
    decision is the one reading every field gives, with the bare default and with every pack."""
    request = Request.from_url("POST", url, {"content-type": "application/json", **header},
                               json.dumps(KEY_CONTEXT_BODIES[body]).encode())
    assert _summary(request, True) == _summary(request, False)
    bare = [Auditor(load_policy(["default"]), bench_engine.ENVIRONMENT, fast_path=f).evaluate(request)
            for f in (True, False)]
    assert (bare[0].action, bare[0].findings, bare[0].redacted_body) == \
        (bare[1].action, bare[1].findings, bare[1].redacted_body)


def _batch(events: list[Any], leak: str, at: int) -> Request:
    events = copy.deepcopy(events)
    properties = events[at % len(events)].setdefault("properties", {})
    if leak.startswith("password="):  # a credential known by its name only, a comma inside it
        properties["password"] = leak.removeprefix("password=")
    else:
        properties["note"] = f"see {leak}, then retry"
    return Request.from_url("POST", "https://us.i.posthog.com/batch/", {"content-type": "application/json"},
                            json.dumps({"api_key": "phc_x", "batch": events}).encode())


LEAKS = ["/home/alice/work/billing-api/.env", "alice.smith@initech.example",
         "ghp_Zx8Qw2Er4Ty6Ui8Op0As2Df4Gh6Jk8Lz0Xc2V",
         "eu-west-1,billing-dev", "password=Zq8v,L2pR5tW9yBx7Kd3a", "a,b,c"]


@pytest.mark.parametrize("piece", [40, 300, 5000])
@pytest.mark.parametrize("leak", LEAKS)
def test_a_long_scan_text_read_in_pieces_decides_as_in_full(monkeypatch: pytest.MonkeyPatch, piece: int,
                                                            leak: str) -> None:
    """A long scan text is read by the detectors piece by piece, cut after commas between members: whatever
    the piece size, and wherever the leak sits (commas inside values included), the decision is the full one."""
    from telemetry_audit import decoders
    monkeypatch.setattr(decoders, "SCAN_PIECE_CHARS", piece)
    events = [json.loads(e.request.body) for e in bench_engine.make_corpus(12, leak_rate=0.0)]
    events = [e["batch"][0] if isinstance(e, dict) and "batch" in e else e for e in events]
    for at in (0, 5, 11):
        request = _batch(events, leak, at)
        bare = [Auditor(load_policy(["default"]), bench_engine.ENVIRONMENT, fast_path=f).evaluate(request)
                for f in (True, False)]
        assert (bare[0].action, bare[0].findings, bare[0].redacted_body) == \
            (bare[1].action, bare[1].findings, bare[1].redacted_body)
        assert bare[0].findings or leak == "a,b,c"


@pytest.mark.parametrize("piece", [1, 16, 64])
def test_scan_text_pieces_are_cut_after_commas_between_members(piece: int) -> None:
    from telemetry_audit.decoders import scan_text, scan_text_pieces
    body = {"a": ["x,y", {"b": "c,d", "e": [1, 2.5, "f"]}], "g": "h, i", "j": [{"k": ","}, {"l": "m"}]}
    request = Request.from_url("POST", "https://c.test/e", {"content-type": "application/json"},
                               json.dumps(body).encode())
    decoded = decode_request(request)
    text = scan_text(decoded, "content-type\napplication/json")
    assert text is not None
    starts = scan_text_pieces(decoded, "content-type\napplication/json", len(text), piece)
    assert starts[0] == 0 and len(starts) > 1 and starts == sorted(set(starts))
    body_start = text.index("{")
    for start in starts[1:]:
        assert text[start - 1] == ","
        assert text[body_start:start].count("\x00") % 2 == 0  # outside every string


def test_a_string_full_of_commas_is_never_cut() -> None:
    """Commas inside a string are passed in one step (its end is the next quote): a hostile body made of them
    costs a few C-speed searches, not one step per comma, and no piece starts inside a string."""
    from telemetry_audit.decoders import scan_text, scan_text_pieces
    body = json.dumps({"a": "x," * 3_000_000, "b": ["c", "d"], "e": "y," * 100_000}).encode()
    request = Request.from_url("POST", "https://c.test/e", {"content-type": "application/json"}, body)
    decoded = decode_request(request, Limits(max_body_bytes=len(body) + 1, max_decoded_bytes=len(body) + 1))
    text = scan_text(decoded, "")
    assert text is not None
    starts = scan_text_pieces(decoded, "", len(text), 1000)
    # Past the first string, the next cut would fall inside "b" (shorter than a piece), then inside "e": none.
    assert len(starts) == 2 and text[starts[1] - 1] == "," and text[starts[1]:].lstrip(" ").startswith("\n\x00\nb")


@pytest.mark.parametrize("properties", [
    {"password.x": "Xy7kLm9pQ2wZr4Tn"}, {"token.v2": "Xy7kLm9pQ2wZr4Tn"}, {"password": "pAb3dE9x"},
    {"password": "phAb3dE9"}, {"password": "phcAb3dE9"}, {"password": "qAb3dE9x"},
])
def test_key_context_names_and_short_values_decide_at_a_glance_as_in_full(properties: dict[str, str]) -> None:
    """Found by review: a key with a dot was judged by its last part at a glance (the full path reads the whole
    key), and an 8-character credential starting with `p` was below the glance's hint: both passed at a glance
    what the full path blocks."""
    for url, body in (("https://api.segment.io/v1/batch", {"event": "e", "properties": properties}),
                      ("https://x.example/v1/traces", {"resourceSpans": [{"resource": {"attributes": [
                          {"key": k, "value": {"stringValue": v}} for k, v in properties.items()]}}]})):
        request = Request.from_url("POST", url, {"content-type": "application/json"}, json.dumps(body).encode())
        for policy in (load_policy(["default"]), load_policy(default_references())):
            decisions = [Auditor(policy, bench_engine.ENVIRONMENT, audit_all=True, fast_path=f).evaluate(request)
                         for f in (True, False)]
            assert (decisions[0].action, decisions[0].findings) == (decisions[1].action, decisions[1].findings)
            assert decisions[1].action is Action.BLOCK


@pytest.mark.parametrize("name", ["x-pwd", "x-credential", "x-dsn", "x-passphrase", "x-write-key"])
def test_a_credential_under_a_header_name_no_gate_entry_predicts_is_found_at_a_glance(name: str) -> None:
    """The joint gate reads the scan text, which holds header values without their names: a header whose name
    says secret is asked of the key-context detector even when no gate entry hits (these names hit none)."""
    request = Request.from_url("POST", "https://api.segment.io/v1/batch",
                               {"content-type": "application/json", name: "Kd3a-Zq8v-L2pR-5tW9"}, b'{"event":"x"}')
    decisions = [Auditor(load_policy(["default"]), bench_engine.ENVIRONMENT, fast_path=f).evaluate(request)
                 for f in (True, False)]
    assert (decisions[0].action, decisions[0].findings) == (decisions[1].action, decisions[1].findings)
    assert decisions[0].action is Action.BLOCK


def test_a_secret_name_of_the_policy_is_read_at_a_glance(tmp_path: Any) -> None:
    """With `secret_names`, any name may say secret: the secrets gate then matches every text (`ALWAYS`)."""
    path = tmp_path / "names.yaml"
    path.write_text("version: 1\nextends: [default]\nsettings:\n  detectors:\n    secrets:\n"
                    "      secret_names: [launch_code]\nrules: []\n")
    request = Request.from_url("POST", "https://api.segment.io/v1/track", {"content-type": "application/json"},
                               json.dumps({"event": "e", "properties": {"launch_code": "Kd3aZq8vL2pR5tW9"}}).encode())
    decisions = [Auditor(load_policy([str(path)]), bench_engine.ENVIRONMENT, fast_path=f).evaluate(request)
                 for f in (True, False)]
    assert (decisions[0].action, decisions[0].findings) == (decisions[1].action, decisions[1].findings)
    assert [f.field for f in decisions[0].findings] == ["properties.launch_code"]


def test_without_a_joint_gate_each_family_runs_its_own_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where RE2 cannot run the joint set (its program past the memory budget), every detector is asked with its
    own pass, and the bench corpus decides as reading every field does."""
    from telemetry_audit.detectors import base
    monkeypatch.setattr(base, "JOINT_GATE_MAX_MEM", 1 << 10)
    monkeypatch.setattr(base, "SET_MAX_MEM_LIMIT", 1 << 10)  # not grown: the joint set cannot compile
    glance = Auditor(load_policy(["default"]), bench_engine.ENVIRONMENT)
    full = Auditor(load_policy(["default"]), bench_engine.ENVIRONMENT, fast_path=False)
    requests = [e.request for e in bench_engine.make_corpus(60, leak_rate=0.3)]
    assert [glance.evaluate(r) for r in requests] == [full.evaluate(r) for r in requests]
    rules = glance.route(requests[0])[1]
    assert glance.joint_gate(rules) is None


def test_a_clean_request_asks_no_detector(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the joint gate is for: one RE2 pass over a clean request's scan text, and no family asked after it
    (a clean 1 KB event then costs about two thirds of what one pass per family did)."""
    auditor = Auditor(load_policy(["default"]), bench_engine.ENVIRONMENT)
    clean = [e.request for e in bench_engine.make_corpus(40, leak_rate=0.0)]
    auditor.evaluate(clean[0])  # builds the detectors
    asked: list[str] = []

    def spy(name: str, real: Any) -> Any:
        def asking(*args: Any) -> Any:
            asked.append(name)
            return real(*args)
        return asking

    for detector in list(auditor._detectors.values()):
        for method in ("find", "find_gated", "find_in_scan_text"):
            if hasattr(detector, method):
                monkeypatch.setattr(detector, method, spy(method, getattr(detector, method)))
    decisions = [auditor.evaluate(r) for r in clean]
    assert all(d.action is Action.ALLOW and not d.findings for d in decisions)
    assert asked == []
    leaked = bench_engine.make_corpus(200, leak_rate=1.0)
    assert any(auditor.evaluate(e.request).findings for e in leaked) and asked


@pytest.mark.parametrize("padding", ["", " ", "\t"])
def test_a_base64_document_in_an_ascii_body_is_opened_at_a_glance(padding: str) -> None:
    """An ASCII body is searched for base64 documents by the joint gate's `SCAN_TEXT_EMBEDDED_GATE` entry, not by
    `scan_text`: one holding a token still sends the request to the full path, which opens and finds it."""
    import base64
    inner = base64.b64encode(json.dumps({"token": "ghp_Zx8Qw2Er4Ty6Ui8Op0As2Df4Gh6Jk8Lz0Xc2V"}).encode()).decode()
    body = json.dumps({"event": "e", "properties": {"state": padding + inner + padding, "n": 1}}).encode()
    request = Request.from_url("POST", "https://api.segment.io/v1/track", {"content-type": "application/json"}, body)
    decisions = [Auditor(load_policy(["default"]), bench_engine.ENVIRONMENT, fast_path=f).evaluate(request)
                 for f in (True, False)]
    assert (decisions[0].action, decisions[0].findings) == (decisions[1].action, decisions[1].findings)
    assert any(f.detector == "secrets.github-pat" for f in decisions[0].findings)


@pytest.mark.parametrize("body", [
    {"license": {"key": "xK9pAtQ7vL2rT5wY8zB3nD6fH1jM4sE0"}},  # `pAt` in the value: it read as an OTLP name
    {"a": {"key": "Kd3aAUTHzq8vL2pR5tW9yBx7"}},
    {"key": "Zq8vL2pR5tW9yBx7Kd3aKEY", "value": {"stringValue": "x"}},
])
def test_a_credential_under_a_key_named_key_is_found_at_a_glance(body: dict[str, Any]) -> None:
    """Found by review (and present before the joint gate): the scan text's OTLP-attribute reading took
    `"key": "<value>"` for an attribute named by its value and consumed it, so the pair `key: <value>` was never
    judged; a value holding a name hint (`pat`, `auth`, `key`) was passed at a glance and blocked in full."""
    request = Request.from_url("POST", "https://telemetry.example.com/v1/events",
                               {"content-type": "application/json"}, json.dumps(body).encode())
    decisions = [Auditor(load_policy(["default"]), bench_engine.ENVIRONMENT, fast_path=f).evaluate(request)
                 for f in (True, False)]
    assert (decisions[0].action, decisions[0].findings) == (decisions[1].action, decisions[1].findings)
    assert decisions[0].action is Action.BLOCK


def test_random_nested_bodies_decide_at_a_glance_as_in_full(tmp_path: Any) -> None:
    """A seeded differential check of key context: nested bodies of secret-sounding and OTLP-like keys with
    credential-like values (some holding name hints), under the bare default and with `secret_names`."""
    import random
    rng = random.Random(20261201)
    names = ["key", "value", "stringValue", "password", "api_key", "token", "auth", "name", "x", "pat", "dsn",
             "launch_code", "apiKey", "attributes", "cache_key", "db.password", "max_tokens", "pwd", "k"]

    def credential() -> str:
        alphabet = rng.choice(["abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", "abcdef0123456789"])
        text = "".join(rng.choice(alphabet) for _ in range(rng.choice([6, 8, 12, 20, 32])))
        if rng.random() < 0.4:
            at = rng.randint(0, len(text))
            text = text[:at] + rng.choice(["pat", "KEY", "auth", "Token", "dsn", "pwd", "secret"]) + text[at:]
        return text

    def value(depth: int) -> Any:
        roll = rng.random()
        if depth > 2 or roll < 0.5:
            return rng.choice([credential(), credential(), rng.choice(names), 1, None])
        if roll < 0.75:
            return {rng.choice(names): value(depth + 1) for _ in range(rng.randint(1, 3))}
        if roll < 0.9:
            return [value(depth + 1) for _ in range(rng.randint(0, 2))]
        return {"key": rng.choice([*names, credential()]), "value": {"stringValue": credential()}}

    path = tmp_path / "names.yaml"
    path.write_text("version: 1\nextends: [default]\nsettings:\n  detectors:\n    secrets:\n"
                    "      secret_names: [launch_code]\nrules: []\n")
    auditors = [(Auditor(policy, bench_engine.ENVIRONMENT), Auditor(policy, bench_engine.ENVIRONMENT, fast_path=False))
                for policy in (load_policy(["default"]), load_policy([str(path)]))]
    for _ in range(400):
        body = {rng.choice(names): value(0) for _ in range(rng.randint(1, 3))}
        separators = rng.choice([(",", ":"), (", ", ": ")])
        url = rng.choice(["https://telemetry.example.com/v1/events", "https://telemetry.example.com/v1/traces"])
        request = Request.from_url("POST", url, {"content-type": "application/json"},
                                   json.dumps(body, separators=separators).encode())
        for glance, full in auditors:
            fast, slow = glance.evaluate(request), full.evaluate(request)
            assert (fast.action, fast.findings, fast.redacted_body) == (slow.action, slow.findings,
                                                                         slow.redacted_body), request.body
