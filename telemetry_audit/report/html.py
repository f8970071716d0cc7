"""The HTML report: one self-contained file to open in any browser or attach to a CI run.

No network, no external assets: CSS and a few lines of script are inline, and every
collapsible part is a native `<details>` element, so the report reads the same with
scripts disabled. Everything taken from traffic or policy files goes through
`html.escape` (text and attributes alike) and never into the `<style>` or `<script>`
blocks. Values come from the JSON report, which holds only masked previews of flagged
values; the payload tree is the report's optional `payload` entry (`report.payload`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

from telemetry_audit.report.conformance import Conformance, ToolConformance, conformance
from telemetry_audit.report.json_report import (
    action_of,
    active_findings,
    as_report,
    is_telemetry,
    request_target,
    severity_of,
)

_CSS = """
:root{--fg:#1b1f24;--muted:#57606a;--line:#d0d7de;--bg:#fff;--soft:#f6f8fa;--block:#cf222e;--redact:#9a6700;
--log:#0969da;--allow:#1a7f37;--mark:#fff1a8}
*{box-sizing:border-box}
body{font:14px/1.45 -apple-system,"Segoe UI",Helvetica,Arial,sans-serif;color:var(--fg);background:var(--bg);
margin:0 auto;padding:16px 24px;max-width:1200px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:24px 0 8px;border-bottom:1px solid var(--line)}
h3{font-size:15px;margin:12px 0 4px}
code,.mono,.tree{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px}
.muted{color:var(--muted)}
.cards{display:flex;flex-wrap:wrap;gap:8px;margin:12px 0}
.card{border:1px solid var(--line);border-radius:6px;padding:6px 12px;min-width:92px;background:var(--soft)}
.card b{display:block;font-size:20px}
.badge{display:inline-block;border-radius:10px;padding:0 8px;font-size:12px;font-weight:600;color:#fff;
background:var(--muted);white-space:nowrap}
.d-block,.v-violates,.v-failed{background:var(--block)}.d-redact,.v-incomplete{background:var(--redact)}
.d-log,.v-drift{background:var(--log)}.d-allow,.v-conforms,.v-honoured{background:var(--allow)}
.v-ignored{background:var(--redact)}.v-inconclusive,.v-setup-failed{background:var(--muted)}
table{border-collapse:collapse;width:100%;margin:6px 0}
th,td{border:1px solid var(--line);padding:3px 6px;text-align:left;vertical-align:top;overflow-wrap:anywhere}
th{background:var(--soft);white-space:nowrap}
td.nw{white-space:nowrap}
details.req{border:1px solid var(--line);border-radius:6px;margin:6px 0;background:var(--bg)}
details.req>summary{padding:6px 10px;cursor:pointer;background:var(--soft);border-radius:6px;overflow-wrap:anywhere}
details.req[open]>summary{border-bottom:1px solid var(--line);border-radius:6px 6px 0 0}
.req-body{padding:6px 12px}
.tree details{margin-left:14px}.tree summary{cursor:pointer}
.tree .leaf{margin-left:28px;overflow-wrap:anywhere}
.tree .key{color:#8250df}.tree .str{color:#0a3069}.tree .num{color:#0550ae}.tree .lit{color:#cf222e}
.finding{background:var(--mark);outline:2px solid var(--redact);border-radius:3px;padding:0 3px}
.finding .tag{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;font-size:11px;font-weight:600;
color:var(--block);margin-left:6px}
.toolbar{margin:8px 0}.toolbar button{margin-right:6px}
footer{margin-top:24px;color:var(--muted);font-size:12px}
.toc{margin:6px 0 0}.toc a{color:var(--log)}
"""

_SCRIPT = """
document.querySelectorAll('[data-toggle]').forEach(function (button) {
  button.addEventListener('click', function () {
    var open = button.getAttribute('data-toggle') === 'open';
    document.querySelectorAll('details').forEach(function (d) { d.open = open; });
  });
});
document.querySelectorAll('a[data-goto]').forEach(function (link) {
  link.addEventListener('click', function () {
    var target = document.getElementById(link.getAttribute('data-goto'));
    for (var n = target; n; n = n.parentElement) { if (n.tagName === 'DETAILS') { n.open = true; } }
  });
});
document.body.setAttribute('data-ready', 'yes');
"""

_POINTER_STEP = re.compile(r"/([^/]*)")


def _e(value: object) -> str:
    """Escaped text for element content and attribute values alike."""
    return escape(str(value), quote=True)


def write_html(report: Mapping[str, Any]) -> str:
    """The report as one self-contained HTML page."""
    data = as_report(report)
    parts: list[str] = []
    tool = data.get("tool", {})
    title = "telemetry-audit report"
    parts.append(f"<h1>{_e(title)}</h1>")
    parts.append(f'<p class="muted">{_e(tool.get("name", "telemetry-audit"))} {_e(tool.get("version", ""))}'
                 f"{_policy_files(data)}</p>")
    requests = list(data.get("requests", []))
    telemetry = [r for r in requests if is_telemetry(r)]
    other = [r for r in requests if not is_telemetry(r)]
    links = [("summary", "Summary")] if requests or "telemetry" in data.get("summary", {}) else []
    if telemetry and conformance(report).tools:
        links.append(("conformance", "Docs conformance"))
    if requests:
        links.append(("requests", f"Telemetry requests ({len(telemetry)})"))
    if other:
        links.append(("other", f"Other traffic ({len(other)})"))
    if isinstance(report.get("optout"), Mapping) or "switches" in report:
        links.append(("optout", "Opt-out switches"))
    if links:
        parts.append('<nav class="toc">' + " · ".join(f'<a href="#{a}">{_e(t)}</a>' for a, t in links) + "</nav>")
    if "summary" in data and "telemetry" in data.get("summary", {}):
        parts.append(_summary(data.get("summary", {})))
    if requests:
        parts.append(_conformance(conformance(report), telemetry))
        parts.append('<div class="toolbar"><button type="button" data-toggle="open">Expand all</button>'
                     '<button type="button" data-toggle="close">Collapse all</button></div>')
        parts.append(f'<h2 id="requests">Telemetry requests ({len(telemetry)})</h2>')
        parts.extend(_request(r, i) for i, r in enumerate(telemetry))
        if not telemetry:
            parts.append('<p class="muted">No telemetry request was audited.</p>')
    if other:
        parts.append(f'<h2 id="other">Other traffic ({len(other)})</h2>')
        parts.append('<p class="muted">Requests no policy rule treated as telemetry.</p>')
        parts.extend(_request(r, len(telemetry) + i) for i, r in enumerate(other))
    optout = report.get("optout") if isinstance(report.get("optout"), Mapping) else None
    if optout is None and "switches" in report:
        optout = report
    if optout is not None:
        parts.append(_optout(optout))
    body = "\n".join(parts)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; "
        "script-src 'unsafe-inline'; img-src data:\">"
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>\n<body>\n{body}\n"
        f'<footer>Previews of flagged values are masked; nothing in this file was fetched from the network.'
        f"</footer>\n<script>{_SCRIPT}</script>\n</body></html>\n"
    )


def _policy_files(report: Mapping[str, Any]) -> str:
    files = report.get("policy", {}).get("files", [])
    return f" · policy: {_e(', '.join(str(f) for f in files))}" if files else ""


def _summary(summary: Mapping[str, Any]) -> str:
    cards = [("requests", "requests"), ("telemetry", "telemetry"), ("blocked", "blocked"),
             ("redacted", "redacted"), ("logged", "logged"), ("findings", "findings"), ("suppressed", "suppressed")]
    if summary.get("audited_only"):  # `--audit-all`: audited, not telemetry
        cards.insert(2, ("audited_only", "other audited"))
    items = "".join(f'<div class="card" data-count="{_e(key)}"><b>{_e(summary.get(key, 0))}</b>{_e(label)}</div>'
                    for key, label in cards)
    return f'<h2 id="summary">Summary</h2><div class="cards">{items}</div>'


def _badge(text: str, cls: str) -> str:
    return f'<span class="badge {_e(cls)}">{_e(text)}</span>'


# --- docs conformance ------------------------------------------------------------------------------------------


def _conformance(summary: Conformance, requests: Sequence[Mapping[str, Any]]) -> str:
    if not summary.tools:
        return ""
    out = ['<h2 id="conformance">Docs conformance</h2>']
    for tool in summary.tools:
        out.append(_tool_section(tool, [r for r in requests if r.get("tool") == tool.tool]))
    if summary.other_requests:
        out.append(f'<p class="muted">{summary.other_requests} telemetry request(s) matched no tool pack.</p>')
    return "\n".join(out)


def _tool_section(tool: ToolConformance, requests: list[Mapping[str, Any]]) -> str:
    head = (f'<h3 data-tool="{_e(tool.tool)}">{_e(tool.tool)} {_badge(tool.verdict.value, "v-" + tool.verdict.value)}'
            f' <span class="muted">{tool.requests} request(s), {len(tool.undocumented)} undocumented field(s), '
            f"{len(tool.violations)} promise violation(s)"
            + (f", {tool.uninspected} not fully inspected" if tool.uninspected else "")
            + (f", {tool.accepted} accepted finding(s)" if tool.accepted else "")
            + "</span></h3>")
    rows: list[str] = []
    for v in tool.violations:
        rows.append(f"<tr><td>{_badge('violation', 'd-' + action_of(v.action).value)}</td><td><code>{_e(v.path)}"
                    f"</code></td><td>{_e(v.detector or v.rule_id)}: {_e(v.action)} ({_e(v.severity)})</td>"
                    f"<td>{v.requests}/{tool.requests}</td></tr>")
    undocumented = {d.path for d in tool.undocumented}
    for d in tool.undocumented:
        rows.append(f"<tr><td>{_badge('undocumented', 'd-log')}</td><td><code>{_e(d.path)}</code></td>"
                    f"<td>{d.occurrences} value(s)</td><td>{d.requests}/{tool.requests}</td></tr>")
    documented = sorted(_sent_paths(requests) - undocumented - {v.path for v in tool.violations})
    out = head
    if rows:
        out += ("<table><thead><tr><th>status</th><th>field</th><th>what</th><th>requests</th></tr></thead>"
                f"<tbody>{''.join(rows)}</tbody></table>")
    if documented:
        listed = ", ".join(f'<code class="documented">{_e(path)}</code>' for path in documented)
        # Only a pack that checks fields (it flagged some as undocumented) says the rest are documented.
        label = (f"{len(documented)} documented field(s) sent {_badge('documented', 'd-allow')}" if tool.undocumented
                 else f"{len(documented)} field(s) sent without a field finding")
        out += f'<details class="documented-fields"><summary>{label}</summary><p>{listed}</p></details>'

    return out


def _sent_paths(requests: Iterable[Mapping[str, Any]]) -> set[str]:
    """Generic paths of the body fields the requests carried (from their payload trees, when present)."""
    paths: set[str] = set()
    for request in requests:
        payload = request.get("payload")
        if isinstance(payload, Mapping) and "body" in payload:
            _collect(payload["body"], "", paths)
    return paths


def _collect(node: Any, path: str, out: set[str]) -> None:
    if isinstance(node, Mapping):
        for key, value in node.items():
            _collect(value, f"{path}.{key}" if path else str(key), out)
    elif isinstance(node, list):
        for value in node:
            _collect(value, f"{path}[]", out)
    else:
        out.add(path or "body")


# --- requests ----------------------------------------------------------------------------------------------------


def _request(request: Mapping[str, Any], index: int) -> str:
    decision = request.get("decision", "")
    findings = list(request.get("findings", []))
    active = active_findings(request)
    meta = [f"<code>{_e(request.get('method', '').upper())}</code>",
            f"<code>{_e(request_target(request))}</code>"]
    if request.get("tool"):
        meta.append(f"tool <b>{_e(request['tool'])}</b>")
    meta.append(_badge(decision, "d-" + action_of(decision).value))
    meta.append(f"{len(active)} finding(s)" + (f" (+{len(findings) - len(active)} suppressed)"
                                                if len(findings) > len(active) else ""))
    if request.get("source"):
        meta.append(f'<span class="muted">from {_e(request["source"])}</span>')
    if request.get("client"):
        meta.append(f'<span class="muted">client {_e(request["client"])}</span>')
    opened = " open" if active else ""
    body = [f"<div>URL: <code>{_e(request.get('url', ''))}</code></div>"]
    if request.get("rule_ids"):
        body.append(f"<div>Rules: {', '.join(f'<code>{_e(r)}</code>' for r in request['rule_ids'])}</div>")
    if findings:
        body.append(_findings_table(findings, index))
    payload = request.get("payload")
    if isinstance(payload, Mapping):
        body.append(_payload(payload, findings, index))
    return (f'<details class="req" id="req-{index}" data-decision="{_e(decision)}"{opened}>'
            f"<summary>{' '.join(meta)}</summary><div class=\"req-body\">{''.join(body)}</div></details>")


def _findings_table(findings: list[Mapping[str, Any]], index: int) -> str:
    ranked = sorted(range(len(findings)), key=lambda i: (-action_of(findings[i].get("action", "")).rank,
                                                          -severity_of(findings[i].get("severity", "")).rank))
    rows = []
    for i in ranked:
        f = findings[i]
        what = f.get("detector") or ""
        if f.get("message"):
            what = f"{what}: {f['message']}" if what else str(f["message"])
        status = " (suppressed)" if f.get("suppressed") else ""
        rows.append(
            f'<tr class="finding-row" data-rule="{_e(f.get("rule_id", ""))}" data-field="{_e(f.get("field", ""))}">'
            f'<td><a href="#f-{index}-{i}" data-goto="f-{index}-{i}">{_e(f.get("rule_id", ""))}</a></td>'
            f"<td class=\"nw\">{_e(f.get('kind', ''))}</td><td><code>{_e(f.get('field', ''))}</code></td>"
            f"<td class=\"nw\">{_e(f.get('severity', ''))}</td><td class=\"nw\">{_e(f.get('action', ''))}"
            f"{_e(status)}</td>"
            f"<td><code>{_e(f.get('preview', ''))}</code></td><td>{_e(what)}</td></tr>")
    return ("<table><thead><tr><th>rule</th><th>kind</th><th>field</th><th>severity</th><th>action</th>"
            f"<th>preview (masked)</th><th>detail</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")


def _payload(payload: Mapping[str, Any], findings: list[Mapping[str, Any]], index: int) -> str:
    marks: dict[str, list[int]] = {}
    raw_marks = payload.get("marks")
    if isinstance(raw_marks, Mapping):
        marks = {str(k): [int(i) for i in v if isinstance(i, int)] for k, v in raw_marks.items()
                 if isinstance(v, list)}
    opened = {p[: m.start()] for p in marks for m in _POINTER_STEP.finditer(p)}
    render = _TreeRenderer(marks, opened, findings, index)
    parts = [f'<h3>Decoded payload <span class="muted">({_e(payload.get("format", ""))})</span></h3>',
             '<div class="tree">']
    for section in ("headers", "query", "body"):
        if section in payload:
            parts.append(render.node(section, payload[section], "/" + section, top=True))
    if payload.get("truncated"):
        parts.append('<div class="muted">… truncated: the payload was too large to show in full.</div>')
    parts.append("</div>")
    return "".join(parts)


class _TreeRenderer:
    def __init__(self, marks: dict[str, list[int]], opened: set[str], findings: list[Mapping[str, Any]],
                 index: int) -> None:
        self.marks = marks
        self.opened = opened
        self.findings = findings
        self.index = index

    def node(self, key: str, value: Any, where: str, *, top: bool = False) -> str:
        label = f'<span class="key">{_e(key)}</span>'
        if isinstance(value, Mapping) or isinstance(value, list):
            items = list(value.items()) if isinstance(value, Mapping) else list(enumerate(value))
            kind = f"{{{len(items)}}}" if isinstance(value, Mapping) else f"[{len(items)}]"
            opened = " open" if where in self.opened or (top and key != "headers") else ""
            children = "".join(self.node(str(k), v, f"{where}/{_escape_step(str(k))}") for k, v in items)
            mark = self._mark(where)
            return (f"<details{opened}><summary>{label} <span class=\"muted\">{_e(kind)}</span>{mark}</summary>"
                    f"{children}</details>")
        return f'<div class="leaf">{label}: {self._value(value, where)}</div>'

    def _value(self, value: Any, where: str) -> str:
        if isinstance(value, str):
            shown = f'<span class="str">"{_e(value)}"</span>'
        elif isinstance(value, bool) or value is None:
            shown = f'<span class="lit">{_e("null" if value is None else str(value).lower())}</span>'
        else:
            shown = f'<span class="num">{_e(value)}</span>'
        indexes = self.marks.get(where)
        if not indexes:
            return shown
        first = indexes[0]
        return (f'<span class="finding" id="f-{self.index}-{first}" data-pointer="{_e(where)}">{shown}'
                f"{self._mark(where)}</span>")

    def _mark(self, where: str) -> str:
        tags = []
        for i in self.marks.get(where, []):
            if 0 <= i < len(self.findings):
                f = self.findings[i]
                tags.append(f'<span class="tag" title="{_e(f.get("message", "") or f.get("kind", ""))}">'
                            f"{_e(f.get('rule_id', ''))} · {_e(f.get('action', ''))}</span>")
        return "".join(tags)


def _escape_step(step: str) -> str:
    return step.replace("~", "~0").replace("/", "~1")


# --- opt-out ----------------------------------------------------------------------------------------------------


def _optout(report: Mapping[str, Any]) -> str:
    out = [f'<h2 id="optout">Opt-out switches of {_e(report.get("pack", ""))}</h2>']
    summary = report.get("summary", {})
    if summary:
        out.append('<p class="muted">' + _e(", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in summary.items()))
                   + "</p>")
    rows = []
    baseline = report.get("baseline", {})
    if isinstance(baseline, Mapping):
        rows.append(f"<tr><td><b>(baseline: telemetry on)</b></td><td></td><td>sends</td>"
                    f"<td>{_e(baseline.get('telemetry_requests', ''))}</td><td></td></tr>")
    for entry in report.get("switches", []):
        if not isinstance(entry, Mapping):
            continue
        switch = entry.get("switch", {}) if isinstance(entry.get("switch"), Mapping) else {}
        run = entry.get("run", {}) if isinstance(entry.get("run"), Mapping) else {}
        verdict = str(entry.get("verdict", ""))
        cls = "v-failed" if entry.get("failed") else "v-" + verdict
        note = f'<div class="muted">{_e(entry["note"])}</div>' if entry.get("note") else ""
        rows.append(f"<tr data-switch=\"{_e(entry.get('label', ''))}\"><td><code>{_e(entry.get('label', ''))}</code>"
                    f"</td><td>{_e(switch.get('source', ''))}</td><td>{_e(switch.get('expected') or '-')}</td>"
                    f"<td>{_e(run.get('telemetry_requests', ''))}</td><td>{_badge(verdict, cls)}{note}</td></tr>")
    out.append("<table><thead><tr><th>switch</th><th>documented source</th><th>expected</th>"
               f"<th>telemetry requests seen</th><th>verdict</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")
    return "\n".join(out)
