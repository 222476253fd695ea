import { resolve } from 'node:path';
import { StratumError, errnoCode, isStratumError } from '../errors.js';
import { writeOutputFile } from '../util/atomic-file.js';
import { displayName } from '../util/file-names.js';
import type { ImageAnalysis } from './types.js';
import { copyUpCauseText, humanSize, oneLine } from './format.js';

/**
 * One self-contained HTML page for an analysis: inline CSS, an inline SVG chart of the layers
 * (content that reaches the final filesystem, wasted content, tar overhead), and a little inline
 * JavaScript that builds the tables from the analysis embedded as JSON. No network, no fonts.
 */

function escapeHtml(text: string): string {
  return text
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

/** JSON that is safe inside a <script> element. */
function scriptJson(value: unknown): string {
  return JSON.stringify(value)
    .replace(/</g, '\\u003c')
    .replace(/>/g, '\\u003e')
    .replace(/&/g, '\\u0026')
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029');
}

function chart(analysis: ImageAnalysis): string {
  const width = 760;
  const rowHeight = 26;
  const labelWidth = 60;
  const barWidth = width - labelWidth - 120;
  const max = Math.max(1, ...analysis.layers.map((layer) => layer.uncompressedSize));
  const rows = analysis.layers.map((layer, row) => {
    const y = row * rowHeight + 4;
    const kept = Math.max(0, layer.contentBytes - layer.wastedBytes);
    const overhead = Math.max(0, layer.uncompressedSize - layer.contentBytes);
    const scale = (bytes: number): number => (bytes / max) * barWidth;
    const keptWidth = scale(kept);
    const wastedWidth = scale(layer.wastedBytes);
    const overheadWidth = scale(overhead);
    const title = `layer ${layer.layer + 1}: ${oneLine(layer.createdBy, 200)}\n${humanSize(layer.uncompressedSize)} uncompressed, ${humanSize(layer.compressedSize)} compressed; ${humanSize(kept)} kept, ${humanSize(layer.wastedBytes)} wasted`;
    return [
      `<g class="layer" data-layer="${layer.layer + 1}" data-wasted="${layer.wastedBytes}" data-size="${layer.uncompressedSize}">`,
      `<title>${escapeHtml(title)}</title>`,
      `<text x="0" y="${y + 15}" class="label">#${layer.layer + 1}</text>`,
      `<rect class="kept" x="${labelWidth}" y="${y}" width="${keptWidth.toFixed(1)}" height="18"/>`,
      `<rect class="wasted" x="${(labelWidth + keptWidth).toFixed(1)}" y="${y}" width="${wastedWidth.toFixed(1)}" height="18"/>`,
      `<rect class="overhead" x="${(labelWidth + keptWidth + wastedWidth).toFixed(1)}" y="${y}" width="${overheadWidth.toFixed(1)}" height="18"/>`,
      `<text x="${(labelWidth + keptWidth + wastedWidth + overheadWidth + 6).toFixed(1)}" y="${y + 15}" class="size">${escapeHtml(humanSize(layer.uncompressedSize))}</text>`,
      '</g>',
    ].join('');
  });
  const height = analysis.layers.length * rowHeight + 8;
  return `<svg id="layer-chart" xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="layer sizes">${rows.join('')}</svg>`;
}

const STYLE = `
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1000px;color:#222;padding:0 1em}
h1{font-size:1.3em;word-break:break-all}h2{font-size:1.1em;margin-top:1.6em}
table{border-collapse:collapse;width:100%;margin:.5em 0}td,th{border-bottom:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}code{font-size:.92em;word-break:break-all}
.kept{fill:#3b82f6}.wasted{fill:#ef4444}.overhead{fill:#cbd5e1}.label,.size{font-size:12px;fill:#444}
.legend span{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;vertical-align:middle}
.figure{font-size:1.6em;font-weight:600}.secret{background:#fee2e2;font-weight:600}
.hint{background:#fef9c3;padding:6px 10px;margin:6px 0;border-left:4px solid #eab308}
`;

const SCRIPT = `
(function () {
  var data = JSON.parse(document.getElementById('analysis-data').textContent);
  function size(bytes) {
    if (bytes < 1000) return bytes + ' B';
    var units = ['kB', 'MB', 'GB', 'TB'], value = bytes, unit = -1;
    while (value >= 1000 && unit < units.length - 1) { value /= 1000; unit++; }
    return value.toFixed(value >= 100 ? 0 : 1) + ' ' + units[unit];
  }
  function cell(row, text, cls) {
    var td = document.createElement('td');
    td.textContent = text;
    if (cls) td.className = cls;
    row.appendChild(td);
  }
  function fill(id, items, columns) {
    var body = document.getElementById(id);
    items.forEach(function (item) {
      var row = document.createElement('tr');
      columns.forEach(function (column) { cell(row, column[0](item), column[1]); });
      if (item.secret) row.className = 'secret';
      body.appendChild(row);
    });
  }
  function at(ref) { return '#' + (ref.layer + 1) + ' ' + ref.createdBy; }
  fill('layers-body', data.layers, [
    [function (l) { return String(l.layer + 1); }, 'num'],
    [function (l) { return size(l.compressedSize); }, 'num'],
    [function (l) { return size(l.uncompressedSize); }, 'num'],
    [function (l) { return String(l.added); }, 'num'],
    [function (l) { return String(l.changed); }, 'num'],
    [function (l) { return String(l.deleted); }, 'num'],
    [function (l) { return size(l.wastedBytes); }, 'num'],
    [function (l) { return l.createdBy; }]
  ]);
  fill('wasted-body', data.wasted.slice(0, 500), [
    [function (w) { return size(w.size); }, 'num'],
    [function (w) { return w.path; }],
    [function (w) { return (w.copiedUp ? 'copied up (' + w.copiedUp + ') by ' : '') + at(w.addedBy); }],
    [function (w) { return w.how + ' by ' + at(w.hiddenBy); }]
  ]);
  fill('recoverable-body', data.recoverable.slice(0, 500), [
    [function (r) { return r.secret ? 'SECRET? ' + r.secret : ''; }],
    [function (r) { return r.path; }],
    [function (r) { return size(r.size); }, 'num'],
    [function (r) { return at(r.addedBy); }]
  ]);
  fill('copyup-body', data.copyUps.slice(0, 500), [
    [function (c) { return size(c.size); }, 'num'],
    [function (c) { return c.path; }],
    [function (c) { return at(c.at); }],
    [function (c) { return c.text; }]
  ]);
  document.body.setAttribute('data-rendered', 'yes');
})();
`;

export function renderAnalysisHtml(analysis: ImageAnalysis): string {
  // Names that are not UTF-8 shown as \xNN (they would be written as U+FFFD).
  return displayName(renderPage(analysis));
}

function renderPage(analysis: ImageAnalysis): string {
  const { totals } = analysis;
  const secrets = analysis.recoverable.filter((item) => item.secret !== undefined).length;
  const hints = analysis.hints
    .map(
      (hint) =>
        `<div class="hint"><code>${escapeHtml(`${hint.file}:${hint.line}`)}</code> ${escapeHtml(hint.message)}</div>`,
    )
    .join('');
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<title>stratum analyze: ${escapeHtml(analysis.name)}</title>
<style>${STYLE}</style></head>
<body>
<h1>${escapeHtml(analysis.name)}</h1>
<p><code>${escapeHtml(analysis.digest)}</code></p>
<p><span class="figure" id="efficiency">${(totals.efficiency * 100).toFixed(1)}%</span> efficiency:
${escapeHtml(humanSize(totals.contentFinal))} of file content reaches the final filesystem; ${escapeHtml(humanSize(totals.contentShipped))} ships (uncompressed).
Wasted ${escapeHtml(humanSize(totals.wastedBytes))}, copy-up ${escapeHtml(humanSize(totals.copyUpBytes))},
${analysis.layers.length} layers, ${escapeHtml(humanSize(totals.compressedSize))} compressed.</p>
${secrets > 0 ? `<p class="secret">${secrets} recoverable file(s) look like secrets: anyone with the image can extract them.</p>` : ''}
<h2>Layers</h2>
<div class="legend"><span style="background:#3b82f6"></span>content kept<span style="background:#ef4444"></span>wasted<span style="background:#cbd5e1"></span>tar overhead</div>
${chart(analysis)}
<table id="layers"><thead><tr><th class="num">#</th><th class="num">compressed</th><th class="num">uncompressed</th><th class="num">added</th><th class="num">changed</th><th class="num">deleted</th><th class="num">wasted</th><th>instruction</th></tr></thead><tbody id="layers-body"></tbody></table>
${hints === '' ? '' : `<h2>Hints</h2>${hints}`}
<h2>Wasted content</h2>
<table><thead><tr><th class="num">size</th><th>path</th><th>added by</th><th>hidden by</th></tr></thead><tbody id="wasted-body"></tbody></table>
<h2>Recoverable files</h2>
<table><thead><tr><th></th><th>path</th><th class="num">size</th><th>in</th></tr></thead><tbody id="recoverable-body"></tbody></table>
<h2>Copy-up</h2>
<table><thead><tr><th class="num">size</th><th>path</th><th>in</th><th>changed</th></tr></thead><tbody id="copyup-body"></tbody></table>
<script type="application/json" id="analysis-data">${scriptJson(withCopyUpText(analysis))}</script>
<script>${SCRIPT}</script>
</body></html>
`;
}

/** Each copy-up's cause as the text report words it (one wording, made here, not in the page's script). */
function withCopyUpText(analysis: ImageAnalysis): ImageAnalysis & { copyUps: readonly { text: string }[] } {
  return {
    ...analysis,
    copyUps: analysis.copyUps.map((copyUp) => ({
      ...copyUp,
      text: copyUpCauseText(copyUp.cause, copyUp.changes, copyUp),
    })),
  };
}

/**
 * Writes the page to `path` as every output file is written (oci/atomic-file.ts: replaced whole,
 * or written through a FIFO or device); an unwritable path is a one-line error naming it.
 */
export async function writeAnalysisHtml(analysis: ImageAnalysis, path: string): Promise<void> {
  try {
    await writeOutputFile(resolve(path), renderAnalysisHtml(analysis), { label: `--html ${path}` });
  } catch (error) {
    if (isStratumError(error)) throw error;
    throw new StratumError(
      'IO',
      `${path}: cannot write the HTML report (${errnoCode(error) ?? String(error)})`,
    );
  }
}
