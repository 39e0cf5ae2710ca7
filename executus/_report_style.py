"""The report's one stylesheet: inline, and allowed by its sha256 in the page's CSP."""

from typing import Final

__all__ = ["STYLE"]

STYLE: Final = """
:root{--ink:#1d232b;--quiet:#67707c;--line:#d9dee5;--bg:#f7f8fa;--model:#3b6fd4;--tool:#1f9e89;
--error:#d1373f;--warn:#c77c02;--steer:#7a4fd0;--ok:#1c8a45}
*{box-sizing:border-box}
body{margin:0 auto;max-width:1180px;padding:24px 28px 48px;font:14px/1.45 system-ui,-apple-system,"Segoe UI",
Roboto,"DejaVu Sans",sans-serif;color:var(--ink);background:#fff}
h1{font-size:24px;margin:2px 0 4px}h2{font-size:17px;margin:28px 0 10px;border-bottom:1px solid var(--line);
padding-bottom:4px}h3{font-size:14px;margin:14px 0 4px;color:var(--quiet)}
code,pre{font:12.5px/1.4 ui-monospace,"DejaVu Sans Mono",Menlo,monospace}
pre{white-space:pre-wrap;overflow-wrap:anywhere;background:var(--bg);border:1px solid var(--line);
border-radius:6px;padding:8px 10px;margin:6px 0}
a{color:var(--model)}
.kicker{margin:0;color:var(--quiet);text-transform:uppercase;letter-spacing:.08em;font-size:11px}
.run-id{margin:0;color:var(--quiet)}
.status{display:inline-block;font-size:13px;padding:2px 10px;border-radius:12px;vertical-align:middle;
color:#fff;background:var(--quiet)}
.status.ok{background:var(--ok)}.status.error,.status.killed{background:var(--error)}
.status.timeout,.status.cancelled{background:var(--warn)}
#why{background:#fbfbfd;border:1px solid var(--line);border-radius:8px;padding:4px 18px 10px;margin-top:18px}
#why h2{border:0}.headline{font-size:16px;font-weight:600;margin:0 0 6px}
#why ul{margin:2px 0 6px;padding-left:20px}.cites{color:var(--quiet);font-size:12px}
.integrity{border-left:4px solid var(--quiet);padding:2px 14px;margin-top:14px}
.integrity h2{border:0;margin:8px 0 2px;font-size:15px}.integrity.ok{border-color:var(--ok)}
.integrity.failed{border-color:var(--error);background:#fff4f4}.integrity.unknown{color:var(--quiet)}
svg.timeline{display:block;margin:8px 0;font-size:11px}
.lane{fill:var(--bg)}.lane-label{fill:var(--quiet)}
.bar rect{fill:var(--tool)}.bar.model rect{fill:var(--model)}.bar.error rect{fill:var(--error)}
.bar.cut rect{fill:#e9a23b}.bar-label{fill:#fff;font-weight:600}
.bar-label.outside{fill:var(--ink);font-weight:400}
.idle rect{fill:url(#idle-hatch);stroke:#c9ceda;stroke-dasharray:2 3}
.hatch{stroke:#cfd4de;stroke-width:2}.idle text{fill:var(--quiet);font-style:italic}
.marker path{fill:var(--warn)}.marker.steer path{fill:var(--steer)}.marker text{fill:var(--ink)}
.deadline line{stroke:var(--error);stroke-width:1.5;stroke-dasharray:6 4}.deadline text{fill:var(--error)}
.deadline.moved line{stroke:#e7a2a6}.deadline.moved text{fill:#c98b8f}
.stop line{stroke:var(--error);stroke-width:3}.stop text{fill:var(--error);font-weight:700}
line.tick{stroke:var(--quiet)}text.tick{fill:var(--quiet)}
table{border-collapse:collapse;width:100%}th,td{text-align:left;vertical-align:top;padding:4px 8px;
border-bottom:1px solid var(--line)}table.facts th{width:130px;color:var(--quiet);font-weight:500}
tr.changed{background:#fff4f4}table.side-by-side td{width:44%}
figure{margin:10px 0}img.inline{max-width:100%;max-height:420px;border:1px solid var(--line);
image-rendering:pixelated;min-width:64px}figcaption{color:var(--quiet);font-size:12px}
.artifact{border:1px solid var(--line);border-radius:6px;padding:4px 12px;margin:8px 0}
.artifact-name{color:var(--ink);margin:6px 0 0}.quiet,.missing{color:var(--quiet);margin:2px 0}
details.event{border:1px solid var(--line);border-radius:6px;margin:4px 0;background:#fff}
details.event>summary{cursor:pointer;padding:5px 10px;list-style-position:inside;display:flex;gap:10px}
details.event>summary>span{flex:none}details.event>summary>.summary{flex:1;overflow:hidden;
text-overflow:ellipsis;white-space:nowrap}details.event[open]>summary>.summary{white-space:normal}
details.event>*:not(summary){margin:4px 10px 8px}.seq{color:var(--quiet);min-width:2.2em;text-align:right}
.offset{color:var(--quiet);min-width:5em}.kind{font-weight:600;min-width:10em}
details.bad{border-left:4px solid var(--error)}details.warn{border-left:4px solid var(--warn)}
details.good{border-left:4px solid var(--ok)}details:has(:target){outline:2px solid var(--model)}
footer{margin-top:32px;color:var(--quiet);font-size:12px}
"""
