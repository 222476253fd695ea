// Metadata-only steps at scale: a Dockerfile of N ENV lines (and one of N LABEL lines) built
// through the CLI with a fresh cache, for growing N. Linear time shows as a flat time per step.
// Never asserts timings.
//
//   npm run build && node bench/metadata.js            # N = 8000,16000,32000,100000
//   BENCH_SIZES=1000,2000 node bench/metadata.js
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeBusyboxRootfs, writeBaseImage } from '../examples/busybox-base.js';
import { stratumBin } from './lib/harness.js';

const sizes = (process.env.BENCH_SIZES ?? '8000,16000,32000,100000').split(',').map(Number);
const dir = mkdtempSync(join(tmpdir(), 'stratum-bench-metadata-'));
try {
  const rootfs = join(dir, 'rootfs');
  makeBusyboxRootfs(rootfs);
  const base = writeBaseImage(rootfs, join(dir, 'base'), 'stratum-bench/busybox:1');
  const kinds = {
    ENV: (i) => `ENV V${i}=value${i}`,
    LABEL: (i) => `LABEL l${i}=value${i}`,
  };
  console.log('instruction      lines    seconds   µs per line');
  for (const [kind, line] of Object.entries(kinds)) {
    for (const n of sizes) {
      const context = join(dir, `${kind}-${n}`);
      rmSync(context, { recursive: true, force: true });
      spawnSync('mkdir', ['-p', context]);
      const lines = [`FROM oci:${base.layout}:1`];
      for (let i = 1; i <= n; i++) lines.push(line(i));
      writeFileSync(join(context, 'Dockerfile'), `${lines.join('\n')}\n`);
      const start = performance.now();
      const run = spawnSync(
        process.execPath,
        [stratumBin, 'build', '--progress', 'quiet', '--cache-dir', join(dir, `cache-${kind}-${n}`), context],
        { encoding: 'utf8' },
      );
      const seconds = (performance.now() - start) / 1000;
      if (run.status !== 0) throw new Error(`${kind} ${n}: ${run.stderr}`);
      console.log(
        `${kind.padEnd(12)} ${String(n).padStart(9)} ${seconds.toFixed(2).padStart(10)} ${((seconds * 1e6) / n).toFixed(0).padStart(13)}`,
      );
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
