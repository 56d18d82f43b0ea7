"""Reports made from results JSON (one run, or `kpc merge` of many):
Markdown (a CI job summary, a PR comment), TAP 13, a self-contained HTML
matrix, and `kpc diff` between two results files.

Everything here reads the results document only, so it works the same on
a file from another machine, a merged matrix, or the run that just ended.
"""

import datetime
import gzip
import html
import json
import os

from . import safefile

BAD = ("fail", "hang", "error")
VERDICTS = ("pass", "fail", "xfail", "skip", "hang", "error")


class RenderError(Exception):
    pass


def load(path):
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rt", encoding="utf-8") as f:
                doc = json.load(f)
        else:
            with open(path, encoding="utf-8") as f:
                doc = json.load(f)
    except gzip.BadGzipFile as e:
        raise RenderError(f"{path} is not gzip-compressed: {e}") from None
    except OSError as e:
        raise RenderError(f"cannot read {path}: {e.strerror or e}") from None
    except (json.JSONDecodeError, EOFError, UnicodeDecodeError) as e:
        raise RenderError(f"{path} is not JSON: {e}") from None
    if not isinstance(doc, dict) or "results" not in doc or not isinstance(doc["results"], list):
        raise RenderError(f"{path} is not a kpc results file (no 'results' list)")
    return doc


def column(r):
    """Where a run happened: the runtime under test, else the kernel (the
    target label: host or a --kernels label, or a merged machine name)."""
    if r.get("runtime", "none") != "none":
        return r["runtime"]
    return r.get("column") or r.get("target") or "host"


def row_label(r):
    v = f":{r['variant']}" if r.get("variant") else ""
    return f"{r['case']}{v}@{r['flavor']}"


def run_id(r):
    return f"{row_label(r)}#{column(r)}"


def matrices(doc):
    """{'kernels': (cols, {row: {col: result}}), 'runtimes': (...)}: one
    matrix for runs without a runtime (columns: kernels/machines), one for
    runs under runtimes (columns: runtimes)."""
    out = {}
    for name, pick in (("kernels", lambda r: r.get("runtime", "none") == "none"),
                       ("runtimes", lambda r: r.get("runtime", "none") != "none")):
        cols, rows = [], {}
        for r in doc["results"]:
            if not pick(r):
                continue
            c = column(r)
            if c not in cols:
                cols.append(c)
            rows.setdefault(row_label(r), {})[c] = r
        if rows:
            out[name] = (cols, rows)
    return out


def totals(results):
    t = {v: 0 for v in VERDICTS}
    for r in results:
        t[r["verdict"]] = t.get(r["verdict"], 0) + 1
    return t


# ------------------------------------------------------------ Markdown

def markdown(doc, max_details=40):
    res = doc["results"]
    t = totals(res)
    lines = ["## kpc results", "",
             " · ".join(f"**{t[v]}** {v}" for v in VERDICTS if t.get(v)) + f" — {len(res)} runs", ""]
    env = doc.get("environment", {})
    kernels = doc.get("kernels", {})
    guests = ", ".join(f"{k} ({v.get('kernel')})" for k, v in kernels.items())
    lines.append(f"Host: {env.get('distro', '?')}, kernel {env.get('kernel', '?')}"
                 + (f"; guests: {guests}" if kernels else ""))
    lines.append("")
    for name, (cols, rows) in matrices(doc).items():
        # only rows that are not all-pass: a summary, not the whole suite
        shown = {k: v for k, v in rows.items() if any(r["verdict"] != "pass" for r in v.values())}
        lines.append(f"### {'Case × kernel' if name == 'kernels' else 'Case × runtime'}"
                     f" ({len(rows) - len(shown)} rows all pass, not shown)")
        if shown:
            lines.append("")
            lines.append("| case | " + " | ".join(cols) + " |")
            lines.append("|---|" + "---|" * len(cols))
            for label, by_col in shown.items():
                cells = [by_col[c]["verdict"] if c in by_col else "–" for c in cols]
                cells = [f"**{x}**" if x in BAD else x for x in cells]
                lines.append(f"| `{label}` | " + " | ".join(cells) + " |")
        lines.append("")
    bad = [r for r in res if r["verdict"] in BAD]
    if bad:
        lines.append("### Failures")
        lines.append("")
        for r in bad[:max_details]:
            lines.append(f"- **{r['verdict']}** `{run_id(r)}`: {_md(r.get('reason', ''))}")
        if len(bad) > max_details:
            lines.append(f"- … and {len(bad) - max_details} more (see the results JSON)")
        lines.append("")
    return "\n".join(lines)


def _md(text):
    return text.replace("|", "\\|").replace("\n", " ")[:400]


# ------------------------------------------------------------ TAP 13

def tap(doc):
    res = doc["results"]
    lines = ["TAP version 13", f"1..{len(res)}"]
    for i, r in enumerate(res, 1):
        v = r["verdict"]
        ok = "not ok" if v in BAD else "ok"
        directive = ""
        if v == "skip":
            directive = f" # SKIP {_tap(r.get('reason', ''))}"
        elif v == "xfail":
            directive = f" # TODO expected divergence: {_tap(r.get('reason', ''))}"
        lines.append(f"{ok} {i} - {run_id(r)}{directive}")
        if v in BAD:
            lines += ["  ---", f"  verdict: {v}", f"  message: {json.dumps(r.get('reason', ''))}",
                      f"  kernel: {json.dumps(r.get('kernel', ''))}", "  ..."]
    return "\n".join(lines) + "\n"


def _tap(text):
    return text.replace("#", "\\#").replace("\n", " ")[:200]


# ------------------------------------------------------------ merge / diff

def merge(docs):
    """One matrix from many results files: each file's host runs get the
    machine's kernel release as their column, guests keep their kernel
    label. Two files whose runs would land in the same cell (two machines
    on the same kernel) get the file's number appended to the column."""
    out = {"schema": 1, "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "merged_from": [], "results": [], "kernels": {}}
    taken = {}   # run id -> file index
    for i, (path, doc) in enumerate(docs):
        env = doc.get("environment", {})
        out["merged_from"].append({"file": path, "environment": env, "created": doc.get("created")})
        host_col = env.get("kernel", "host")
        moved = [dict(r, column=host_col if r.get("target", "host") == "host" else (r.get("column") or r["target"]),
                      source=path) for r in doc["results"]]
        clash = {r["column"] for r in moved if taken.get(run_id(r), i) != i}
        for r in moved:
            if r["column"] in clash:
                r["column"] = f"{r['column']} [{i + 1}]"
            taken[run_id(r)] = i
        out["results"] += moved
        for label, k in doc.get("kernels", {}).items():
            out["kernels"][f"{label} [{i + 1}]" if label in clash else label] = k
    out["totals"] = totals(out["results"])
    return out


def diff(old, new):
    """[(run id, old verdict or None, new verdict or None, new reason)] for
    runs whose verdict changed, appeared or disappeared."""
    a = {run_id(r): r for r in old["results"]}
    b = {run_id(r): r for r in new["results"]}
    out = []
    for k in list(a) + [k for k in b if k not in a]:
        va = a[k]["verdict"] if k in a else None
        vb = b[k]["verdict"] if k in b else None
        if va != vb:
            out.append((k, va, vb, (b.get(k) or a.get(k)).get("reason", "")))
    return out


def is_regression(old_v, new_v):
    return new_v in BAD and old_v not in BAD


# ------------------------------------------------------------ HTML

COLORS = {"pass": "#2e7d32", "fail": "#c62828", "xfail": "#f9a825", "skip": "#0277bd", "hang": "#6a1b9a",
          "error": "#212121"}


def html_report(doc, notes=None, title="kpc matrix"):
    """One self-contained page (inline CSS and JS, no network): the case ×
    kernel and case × runtime matrices, a filter by area and verdict, and a
    panel with expected vs observed, the stuck tasks' stacks, provenance
    and the lab note for the clicked cell. `notes`: case id -> lab note."""
    notes = notes or {}
    data = {"results": doc["results"], "notes": {k: v for k, v in notes.items()
                                                 if any(r["case"] == k for r in doc["results"])},
            "environment": doc.get("environment", {}), "kernels": doc.get("kernels", {}),
            "totals": totals(doc["results"])}
    mats = matrices(doc)
    areas = sorted({r.get("area", "?") for r in doc["results"]})
    parts = []
    for name, (cols, rows) in mats.items():
        head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
        body = []
        for label, by_col in rows.items():
            any_r = next(iter(by_col.values()))
            cells = []
            for c in cols:
                r = by_col.get(c)
                if r is None:
                    cells.append("<td class='none'>–</td>")
                    continue
                idx = doc["results"].index(r)
                cells.append(f"<td class='cell v-{r['verdict']}' data-i='{idx}' title='{html.escape(r['verdict'])}: "
                             f"{html.escape(r.get('reason', '')[:200], quote=True)}'>{r['verdict']}</td>")
            verdicts = " ".join(sorted({r["verdict"] for r in by_col.values()}))
            body.append(f"<tr data-area='{html.escape(any_r.get('area', '?'))}' data-verdicts='{verdicts}'>"
                        f"<th class='rowh'>{html.escape(label)}</th>{''.join(cells)}</tr>")
        heading = "Case × kernel" if name == "kernels" else "Case × runtime"
        parts.append(f"<h2>{heading}</h2><table class='matrix' id='m-{name}'><thead><tr><th>case @ flavor</th>"
                     f"{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")
    t = data["totals"]
    summary = " ".join(f"<span class='badge v-{v}'>{t[v]} {v}</span>" for v in VERDICTS)
    area_opts = "".join(f"<option>{html.escape(a)}</option>" for a in areas)
    verdict_opts = "".join(f"<option>{v}</option>" for v in VERDICTS)
    env = data["environment"]
    if doc.get("merged_from"):
        where = html.escape(f"merged from {len(doc['merged_from'])} files: " + ", ".join(
            f"{os.path.basename(m['file'])} ({m['environment'].get('distro', '?')}, "
            f"kernel {m['environment'].get('kernel', '?')})" for m in doc["merged_from"]))
    else:
        where = html.escape(f"host {env.get('distro', '?')}, kernel {env.get('kernel', '?')}")
    style = "".join(f".v-{v}{{background:{c};color:#fff}}" for v, c in COLORS.items())
    payload = json.dumps(data).replace("</", "<\\/")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body{{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}}
h1{{font-size:20px;margin:0 0 .3em}} h2{{font-size:16px;margin:1.2em 0 .4em}}
.badge{{display:inline-block;padding:2px 8px;border-radius:10px;margin-right:4px;font-weight:600}}
table.matrix{{border-collapse:collapse}} .matrix th,.matrix td{{border:1px solid #ccc;padding:2px 8px}}
.matrix thead th{{background:#eee;position:sticky;top:0}} .rowh{{text-align:left;font:12px monospace;font-weight:normal}}
td.cell{{cursor:pointer;text-align:center;font-weight:600}} td.none{{color:#999;text-align:center}}
td.cell.sel{{outline:3px solid #000}}
{style}
#panel{{position:fixed;right:0;top:0;bottom:0;width:42%;overflow:auto;background:#fafafa;border-left:2px solid #999;
padding:1em;display:none;font-size:13px}} #panel pre{{white-space:pre-wrap;background:#fff;border:1px solid #ddd;padding:6px}}
#panel table td{{border-bottom:1px solid #ddd;padding:2px 6px;vertical-align:top;font-family:monospace}}
.diff{{background:#ffebee}} .filters{{margin:.6em 0}}
</style></head><body>
<h1>{html.escape(title)}</h1>
<div>{summary} — {len(doc['results'])} runs; {where}; {html.escape(doc.get('created', ''))}</div>
<div class="filters">area <select id="f-area"><option value="">all</option>{area_opts}</select>
verdict <select id="f-verdict"><option value="">all</option>{verdict_opts}</select>
<label><input type="checkbox" id="f-nonpass"> only rows that are not all pass</label></div>
{''.join(parts)}
<div id="panel"><button id="close">close</button><div id="panel-body"></div></div>
<script id="kpc-data" type="application/json">{payload}</script>
<script>
const D = JSON.parse(document.getElementById('kpc-data').textContent);
const esc = s => String(s ?? '').replace(/[&<>"]/g, c => ({{'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}}[c]));
function filter() {{
  const a = document.getElementById('f-area').value, v = document.getElementById('f-verdict').value,
        np = document.getElementById('f-nonpass').checked;
  document.querySelectorAll('table.matrix tbody tr').forEach(tr => {{
    const vs = tr.dataset.verdicts.split(' ');
    const show = (!a || tr.dataset.area === a) && (!v || vs.includes(v)) && (!np || vs.some(x => x !== 'pass'));
    tr.style.display = show ? '' : 'none';
  }});
}}
['f-area', 'f-verdict', 'f-nonpass'].forEach(id => document.getElementById(id).addEventListener('change', filter));
function show(i, td) {{
  document.querySelectorAll('td.sel').forEach(x => x.classList.remove('sel'));
  td.classList.add('sel');
  const r = D.results[i];
  let h = `<h2>${{esc(r.case)}}${{r.variant ? ':' + esc(r.variant) : ''}} @ ${{esc(r.flavor)}} — ${{esc(r.column || r.target)}}</h2>`;
  h += `<p><span class="badge v-${{esc(r.verdict)}}">${{esc(r.verdict)}}</span> kernel ${{esc(r.kernel)}}`;
  h += r.runtime && r.runtime !== 'none' ? `, runtime ${{esc(r.runtime)}} (profile ${{esc(r.profile)}})` : '';
  h += `</p><p>${{esc(r.reason)}}</p>`;
  (r.details || []).forEach(d => h += `<div>${{esc(d)}}</div>`);
  h += '<h3>expected vs observed</h3><table><tr><td><b>key</b></td><td><b>expected</b></td><td><b>observed</b></td><td><b>row</b></td></tr>';
  const keys = new Set([...Object.keys(r.observations || {{}}), ...Object.keys(r.expected || {{}})]);
  keys.forEach(k => {{
    const e = (r.expected || {{}})[k] || {{}}, o = (r.observations || {{}})[k];
    const cls = e.value !== undefined && o !== undefined && String(e.value) !== String(o) ? ' class="diff"' : '';
    h += `<tr${{cls}}><td>${{esc(k)}}</td><td>${{esc(e.value)}}${{e.xfail ? ' (xfail)' : ''}}</td><td>${{esc(o)}}</td><td>${{esc(e.where)}}</td></tr>`;
  }});
  h += '</table>';
  if (r.hang) {{
    h += '<h3>stuck tasks</h3>';
    (r.hang.tasks || []).forEach(t => h += `<div>${{t.stuck ? '<b>STUCK</b> ' : ''}}task ${{esc(t.tid)}} (${{esc(t.comm)}}) ${{esc(t.state)}} wchan ${{esc(t.wchan)}}</div><pre>${{esc((t.stack || []).join('\\n'))}}</pre>`);
    if (r.hang.guest_console_tail) h += `<h3>last console lines</h3><pre>${{esc(r.hang.guest_console_tail.join('\\n'))}}</pre>`;
  }}
  if (r.provenance) h += '<h3>provenance</h3>' + r.provenance.map(p => {{
    const m = String(p).match(/https?:\\/\\/\\S+/);
    return `<div>${{m ? esc(p).replace(esc(m[0]), `<a href="${{esc(m[0])}}">${{esc(m[0])}}</a>`) : esc(p)}}</div>`;
  }}).join('');
  if (D.notes[r.case]) h += `<h3>lab note</h3><pre>${{esc(D.notes[r.case])}}</pre>`;
  document.getElementById('panel-body').innerHTML = h;
  document.getElementById('panel').style.display = 'block';
}}
document.querySelectorAll('td.cell').forEach(td => td.addEventListener('click', () => show(+td.dataset.i, td)));
document.getElementById('close').addEventListener('click', () => document.getElementById('panel').style.display = 'none');
</script></body></html>
"""


def lab_notes(cases):
    """case id -> lab note text, for the HTML panel."""
    out = {}
    for c in cases.values():
        try:
            with open(c.note_path, encoding="utf-8") as f:
                out[c.id] = f.read()
        except OSError:
            pass
    return out


def write(path, text):
    """A report or merged results file: safefile.write ('-' is standard
    output, no symbolic link followed, an atomic replace)."""
    safefile.write(path, text)
