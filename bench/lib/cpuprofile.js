// Summarises a V8 .cpuprofile (from `node --cpu-prof`): self time per function and per file,
// so a benchmark can say where a stratum run spends its CPU.
//
//   node bench/lib/cpuprofile.js PROFILE.cpuprofile [TOP=15]
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** Returns { totalMs, idleMs, functions: [{ name, where, selfMs }], files: [{ file, selfMs }] }. */
export function summarizeProfile(path) {
  const profile = JSON.parse(readFileSync(path, 'utf8'));
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const selfUs = new Map();
  // timeDeltas[i] is the time before samples[i]; attribute it to that sample's node.
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i];
    selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
  }
  const functions = new Map();
  const files = new Map();
  let idle = 0;
  let total = 0;
  for (const [id, us] of selfUs) {
    const frame = byId.get(id).callFrame;
    total += us;
    if (frame.functionName === '(idle)') idle += us;
    const file = shortUrl(frame.url);
    const where = file === '' ? '' : `${file}:${frame.lineNumber + 1}`;
    const key = `${frame.functionName || '(anonymous)'} ${where}`;
    functions.set(key, (functions.get(key) ?? 0) + us);
    const fileKey = file === '' ? frame.functionName : file;
    files.set(fileKey, (files.get(fileKey) ?? 0) + us);
  }
  const sorted = (map) => [...map.entries()].sort((a, b) => b[1] - a[1]);
  return {
    totalMs: total / 1000,
    idleMs: idle / 1000,
    functions: sorted(functions).map(([key, us]) => ({ name: key, selfMs: us / 1000 })),
    files: sorted(files).map(([file, us]) => ({ file, selfMs: us / 1000 })),
  };
}

function shortUrl(url) {
  if (!url) return '';
  const dist = url.indexOf('/dist/');
  if (dist >= 0) return url.slice(dist + 1);
  const modules = url.indexOf('/node_modules/');
  if (modules >= 0) return url.slice(modules + 1);
  return url.replace(/^file:\/\//, '');
}

export function printSummary(summary, top = 15) {
  console.log(
    `profile: ${summary.totalMs.toFixed(0)} ms sampled, ${summary.idleMs.toFixed(0)} ms idle (waiting on I/O or children)`,
  );
  console.log('top functions by self time:');
  for (const entry of summary.functions.slice(0, top))
    console.log(`  ${entry.selfMs.toFixed(0).padStart(7)} ms  ${entry.name}`);
  console.log('top files by self time:');
  for (const entry of summary.files.slice(0, top))
    console.log(`  ${entry.selfMs.toFixed(0).padStart(7)} ms  ${entry.file}`);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  printSummary(summarizeProfile(process.argv[2]), Number(process.argv[3] ?? 15));
}
