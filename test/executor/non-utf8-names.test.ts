import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyLayers } from '../../src/analyze/apply.js';
import type { FsState } from '../../src/analyze/fs-model.js';
import { makeBusyboxRootfs, writeBaseImage } from '../helpers/base-image.js';
import { buildSandbox, type BuildSandbox } from '../helpers/build.js';
import { latin1Path, writeNonUtf8Context } from '../helpers/non-utf8.js';
import { isRoot } from '../helpers/system.js';

/**
 * Issue 26: file names that are not UTF-8 (`caf\xe9`, Latin-1) in builds. Before, COPY of such a
 * context file failed with ENOENT and a file RUN made was silently missing from its layer (and,
 * on overlay, from the next step). Each image is read back through analyze's model, which keeps
 * the bytes as escapes (U+DC80..U+DCFF, see src/oci/file-names.ts).
 */

const bin = resolve(import.meta.dirname, '..', '..', 'bin', 'stratum.js');
const run = promisify(execFile);

function sha256(text: string): string {
  return `sha256:${createHash('sha256').update(text).digest('hex')}`;
}

async function finalTree(sandbox: BuildSandbox, ref: string): Promise<FsState> {
  const image = await sandbox.open(ref);
  try {
    return (await applyLayers(image)).fs;
  } finally {
    await image.close();
  }
}

describe.skipIf(!isRoot)('names that are not UTF-8 in builds (RUN needs root)', () => {
  let sandbox: BuildSandbox;
  beforeAll(() => {
    sandbox = buildSandbox();
  });
  afterAll(() => {
    sandbox.cleanup();
  });

  for (const snapshotter of ['overlay', 'scan'] as const) {
    // Each instruction alone, so each fails on its own; paths in the image → expected content.
    const copyCases: readonly [string, string, Readonly<Record<string, string>>][] = [
      ['COPY . (a directory)', 'COPY . /d/', { 'd/caf\udce9.txt': 'latin-1\n', 'd/plain.txt': 'plain\n' }],
      ['COPY caf* (a wildcard)', 'COPY caf* /g/', { 'g/caf\udce9.txt': 'latin-1\n' }],
      [
        'ADD of a tar (GNU tar: names in the ustar field)',
        'ADD names.tar /a/',
        { 'a/x\udce9': 'in a tar\n', 'a/dir\udcff/y': 'below\n' },
      ],
    ];
    for (const [index, [what, instruction, expected]] of copyCases.entries()) {
      it(`${snapshotter}: ${what} keeps the bytes`, async () => {
        const context = join(sandbox.dir, `ctx-${snapshotter}-${index}`);
        writeNonUtf8Context(context, sandbox.baseRef);
        const out = join(sandbox.dir, `copy-${snapshotter}-${index}`);
        await sandbox.build(context, {
          snapshotter,
          dockerfile: Buffer.from(`FROM ${sandbox.baseRef}\n${instruction}\n`),
          cacheDir: join(sandbox.dir, `cache-${snapshotter}`),
          outputs: [`oci:${out}:latest`],
        });
        const fs = await finalTree(sandbox, `oci:${out}:latest`);
        for (const [path, content] of Object.entries(expected)) {
          expect(fs.nodes.get(path)?.entry.sha256, path).toBe(sha256(content));
        }
      });
    }

    it(`${snapshotter}: RUN makes such names (in the layer, seen by the next step) and deletes them (a whiteout)`, async () => {
      // \351 is 0xE9 and \377 0xFF: printf makes the bytes, the shell passes them on as they are.
      const context = sandbox.context(`run-${snapshotter}`, {
        Dockerfile: [
          `FROM ${sandbox.baseRef}`,
          `RUN printf hi > "/$(printf 'caf\\351')" && mkdir /dir && printf y > "/dir/$(printf 'x\\377y')" && ln -s "$(printf 'tgt\\351')" /lnk && printf old > "/$(printf 'gone\\351')"`,
          `RUN cat "/$(printf 'caf\\351')" > /seen && rm "/$(printf 'gone\\351')"`,
          '',
        ].join('\n'),
      });
      const out = join(sandbox.dir, `out-${snapshotter}`);
      await sandbox.build(context, {
        snapshotter,
        cacheDir: join(sandbox.dir, `cache-${snapshotter}`),
        outputs: [`oci:${out}:latest`],
      });
      const image = await sandbox.open(`oci:${out}:latest`);
      const applied = await applyLayers(image).finally(() => image.close());
      const entry = (path: string) => applied.fs.nodes.get(path)?.entry;
      // The first RUN's layer holds all three; the next step read the file and deleted another.
      const runLayer = applied.layers.at(-2)!;
      expect(runLayer.added).toEqual(
        expect.arrayContaining(['caf\udce9', 'dir/x\udcffy', 'lnk', 'gone\udce9']),
      );
      expect(entry('caf\udce9')?.sha256).toBe(sha256('hi'));
      expect(entry('dir/x\udcffy')?.sha256).toBe(sha256('y'));
      expect(entry('lnk')?.linkTarget).toBe('tgt\udce9');
      expect(entry('seen')?.sha256).toBe(sha256('hi'));
      expect(entry('gone\udce9')).toBeUndefined();
      expect(applied.layers.at(-1)!.deleted).toEqual(['gone\udce9']);
    });
  }

  it('through the layer cache: a rebuild hits every step; renaming the file to another non-UTF-8 name misses', async () => {
    const context = join(sandbox.dir, 'ctx-cache');
    mkdirSync(context);
    writeFileSync(latin1Path(context, 'caf\xe9'), 'same content\n');
    writeFileSync(join(context, 'Dockerfile'), `FROM ${sandbox.baseRef}\nCOPY . /d/\nRUN ls /d > /listing\n`);
    const cacheDir = join(sandbox.dir, 'cache-rebuild');
    const first = await sandbox.build(context, {
      cacheDir,
      outputs: [`oci:${join(sandbox.dir, 'r1')}:latest`],
    });
    const second = await sandbox.build(context, {
      cacheDir,
      outputs: [`oci:${join(sandbox.dir, 'r2')}:latest`],
    });
    expect(second.digest).toBe(first.digest);
    const hits = (events: typeof second.events) =>
      events.filter((event) => event.kind === 'cache' && event.hit).length;
    expect(hits(second.events)).toBe(2);
    // As UTF-8 both names would be "caf\ufffd": the cache key must see the bytes.
    renameSync(latin1Path(context, 'caf\xe9'), latin1Path(context, 'caf\xe8'));
    const third = await sandbox.build(context, {
      cacheDir,
      outputs: [`oci:${join(sandbox.dir, 'r3')}:latest`],
    });
    expect(hits(third.events)).toBe(0);
    const fs = await finalTree(sandbox, `oci:${join(sandbox.dir, 'r3')}:latest`);
    expect(fs.nodes.has('d/caf\udce8')).toBe(true);
    expect(fs.nodes.has('d/caf\udce9')).toBe(false);
  });

  it('a base layer that carries such names (GNU tar wrote it) is extracted with its bytes on both snapshotters', async () => {
    const rootfs = join(sandbox.dir, 'named-base-rootfs');
    mkdirSync(rootfs);
    makeBusyboxRootfs(rootfs);
    mkdirSync(latin1Path(rootfs, 'opt\xff'));
    writeFileSync(latin1Path(rootfs, 'opt\xff/caf\xe9'), 'from the base\n');
    const base = writeBaseImage(rootfs, join(sandbox.dir, 'named-base'), 'stratum-test/named:1');
    const context = join(sandbox.dir, 'ctx-base');
    mkdirSync(context);
    writeFileSync(
      join(context, 'Dockerfile'),
      `FROM oci:${base.layout}:1\nRUN cat "/$(printf 'opt\\377/caf\\351')" > /copy && rm "/$(printf 'opt\\377/caf\\351')"\n`,
    );
    for (const snapshotter of ['overlay', 'scan'] as const) {
      const out = join(sandbox.dir, `named-base-${snapshotter}`);
      await sandbox.build(context, {
        snapshotter,
        cacheDir: join(sandbox.dir, `cache-base-${snapshotter}`),
        outputs: [`oci:${out}:latest`],
      });
      const fs = await finalTree(sandbox, `oci:${out}:latest`);
      expect(fs.nodes.get('copy')?.entry.sha256, snapshotter).toBe(sha256('from the base\n'));
      expect(fs.nodes.has('opt\udcff/caf\udce9'), snapshotter).toBe(false); // whited out by name
      expect(fs.nodes.has('opt\udcff'), snapshotter).toBe(true);
    }
  });

  it('a build error naming such a path shows it escaped, in one line, exit 1', async () => {
    const context = sandbox.context('fifo', { Dockerfile: `FROM ${sandbox.baseRef}\nCOPY caf* /x/\n` });
    // A FIFO is not copied: the wildcard's match is named in the error.
    await run('sh', ['-c', `mkfifo "$(printf 'caf\\351.fifo')"`], { cwd: context });
    const env = { ...process.env, STRATUM_DATA_DIR: sandbox.dataDir };
    const args = [
      bin,
      'build',
      context,
      '--cache-dir',
      join(sandbox.dir, 'cache-fifo'),
      '--progress',
      'plain',
    ];
    const failed = await run(process.execPath, args, { env }).then(
      () => ({ code: 0, stderr: '' }),
      (error: unknown) => error as { code: number; stderr: string },
    );
    expect(failed.code).toBe(1);
    expect(failed.stderr).toMatch(/^stratum: .*caf\\xE9\.fifo is not a file, directory or symlink$/m);
    expect(failed.stderr).not.toContain('\ufffd');
    expect(failed.stderr).not.toContain('    at ');
  });

  it('stratum diff and analyze show such names escaped (\\xE9), and do not crash', async () => {
    // Two images whose one RUN writes other bytes to the same non-UTF-8 name: the difference is
    // in content, so it does not hang on the two builds falling into different seconds.
    const refs = ['a', 'b'].map((text) => {
      const context = sandbox.context(`diff-${text}`, {
        Dockerfile: `FROM ${sandbox.baseRef}\nRUN printf ${text} > "/$(printf 'caf\\351')"\n`,
      });
      return { context, ref: `oci:${join(sandbox.dir, `diff-${text}`)}:latest` };
    });
    for (const { context, ref } of refs) {
      await sandbox.build(context, { cacheDir: join(sandbox.dir, 'cache-diff'), outputs: [ref] });
    }
    const [a, b] = refs.map(({ ref }) => ref) as [string, string];
    const env = { ...process.env, STRATUM_DATA_DIR: sandbox.dataDir };
    const analyzed = await run(process.execPath, [bin, 'analyze', a], { env });
    expect(analyzed.stdout).toContain('Image:');
    // Exit status 1 when the images differ: its output is what is checked.
    const diffed = await run(process.execPath, [bin, 'diff', a, b], { env }).catch(
      (error: unknown) => error as { stdout: string },
    );
    expect(diffed.stdout).toContain('caf\\xE9');
    expect(diffed.stdout).not.toContain('\ufffd');
  });
});
