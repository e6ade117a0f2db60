"""The status page's inline stylesheet and its optional script.

No file, font or library is fetched: the page must render on a host with no
network. The script only adds niceties (times in the reader's zone, a reload every
minute); the page says the same without it. The colours follow the reader's light
or dark preference.
"""

from __future__ import annotations

STYLE = """
:root{--ok:#1f9d55;--warn:#d97706;--crit:#dc2626;--ink:#1f2937;--muted:#6b7280;
--line:#e5e7eb;--bg:#f6f7f9;--card:#fff;--journal:#2563eb;--frozen:#0d9488;--unq:#9ca3af;
--code:#eef0f3;--bar:#93c5fd;--bar-full:#2563eb}
@media (prefers-color-scheme:dark){:root{--ink:#e5e7eb;--muted:#9ca3af;--line:#2b3445;
--bg:#0b1220;--card:#111827;--code:#1f2937;--bar:#1e40af;--bar-full:#60a5fa}}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
color:var(--ink);background:var(--bg)}
header{display:flex;flex-wrap:wrap;align-items:center;justify-content:space-between;
padding:14px 24px;background:#111827;color:#f9fafb;border-bottom:4px solid var(--ok)}
body.state-warn header{border-bottom-color:var(--warn)}
body.state-critical header{border-bottom-color:var(--crit)}
h1{font-size:20px;margin:0;font-weight:600;letter-spacing:.2px}
h2{font-size:16px;margin:0 0 8px;display:flex;align-items:center;gap:8px}
.overall{display:flex;align-items:center;gap:12px}
.summary,.asof{color:#d1d5db}
section{background:var(--card);margin:16px 24px;padding:14px 18px;border-radius:8px;
box-shadow:0 1px 2px rgba(0,0,0,.06);border:1px solid var(--line);overflow-x:auto}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;
color:#fff;background:var(--ok);text-transform:uppercase;letter-spacing:.4px}
.badge.warn{background:var(--warn)}.badge.critical{background:var(--crit)}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid var(--line);vertical-align:top}
th{font-size:12px;color:var(--muted);font-weight:600;text-transform:uppercase}
td.name a{font-weight:600;color:var(--ink);text-decoration:none;overflow-wrap:anywhere}
td.name{min-width:9em}
td.reasons ul{margin:0;padding:0;list-style:none}
td.reasons li{margin:0 0 3px}
.facts{color:var(--muted);margin:0 0 8px}
figure{margin:10px 0 14px;min-width:0}
.small{display:grid;grid-template-columns:repeat(auto-fit,minmax(320px,1fr));gap:8px 20px}
figcaption{font-weight:600;font-size:13px;margin-bottom:2px}
svg.chart{width:100%;height:auto;display:block}
svg .axis{stroke:#9ca3af;stroke-width:1}
svg .grid{stroke:var(--line);stroke-width:1}
svg .lane-line{stroke:var(--line);stroke-width:1;stroke-dasharray:2 3}
svg text{font:11px system-ui,sans-serif;fill:var(--muted)}
svg text.lane{fill:var(--ink)}
svg.half text{font-size:15px}
svg .trend{fill:none;stroke:#6366f1;stroke-width:1.5}
svg .pt{fill:#6366f1;stroke:var(--card);stroke-width:1}
svg .pt.fail{fill:var(--crit)}
svg .bar{fill:var(--bar)}svg .bar.full{fill:var(--bar-full)}svg .notch{fill:var(--card)}
svg .area{fill:rgba(99,102,241,.18);stroke:#6366f1;stroke-width:1.5}
svg .sym{fill:var(--unq)}
svg .sym.quiesced{fill:var(--ok)}svg .sym.frozen{fill:var(--frozen)}
svg .sym.journal{fill:var(--journal)}
svg .sym.fail{fill:none;stroke:var(--crit);stroke-width:2.2}
svg .sym.miss{fill:var(--warn)}
.legend{color:var(--muted);font-size:12px;margin:4px 0 0}
.key,.swatch{display:inline-block;width:10px;height:10px;margin:0 3px 0 10px;vertical-align:-1px}
.key.full{width:4px;height:12px;background:var(--ink)}
.key.incr{border-radius:50%;background:var(--ink)}
.key.fail{width:auto;height:auto;color:var(--crit);font-weight:700;font-size:15px;line-height:10px}
.key.miss{width:0;height:0;border-left:5px solid transparent;border-right:5px solid transparent;
border-bottom:10px solid var(--warn)}
.swatch{border-radius:2px}
.swatch.quiesced{background:var(--ok)}.swatch.frozen{background:var(--frozen)}
.swatch.journal{background:var(--journal)}.swatch.unquiesced{background:var(--unq)}
.none{color:var(--muted);font-style:italic;margin:2px 0}
details summary{cursor:pointer;font-weight:600;font-size:13px;margin:6px 0}
table.recent td{font-size:12.5px;padding:4px 8px}
table.recent tr.fail td{color:var(--crit)}
td.error{word-break:break-word}
footer{margin:8px 24px 24px;color:var(--muted);font-size:12px}
code{font:12px ui-monospace,monospace;background:var(--code);padding:1px 4px;border-radius:3px}
a{color:#6366f1}
"""

SCRIPT = """
(function () {
  document.querySelectorAll("time[datetime]").forEach(function (el) {
    var t = new Date(el.getAttribute("datetime"));
    if (!isNaN(t)) { el.title = el.textContent; el.textContent = t.toLocaleString(); }
  });
  setTimeout(function () { location.reload(); }, 60000);
})();
"""
