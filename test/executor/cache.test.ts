import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { chmodSync, readFileSync, renameSync, utimesSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyLayers } from '../../src/analyze/apply.js';
import { LayerCache } from '../../src/cache/store.js';
import type { BuildEvent } from '../../src/executor/progress.js';
import { buildSandbox, type BuildSandbox } from '../helpers/build.js';
import { isRoot } from '../helpers/system.js';

type CacheEvent = Extract<BuildEvent, { kind: 'cache' }>;

function cacheEvents(events: readonly BuildEvent[]): CacheEvent[] {
  return events.filter((event): event is CacheEvent => event.kind === 'cache');
}

/** HIT/MISS per filesystem step, in order, e.g. ['MISS', 'HIT']. */
function outcomes(events: readonly BuildEvent[]): string[] {
  return cacheEvents(events).map((event) => (event.hit ? 'HIT' : 'MISS'));
}

function reasons(events: readonly BuildEvent[]): string[] {
  return cacheEvents(events).flatMap((event) => event.reasons);
}

describe.skipIf(!isRoot)('layer cache: keys, hits, misses and --explain', () => {
  let box: BuildSandbox;
  beforeAll(() => {
    box = buildSandbox();
  });
  afterAll(() => {
    box.cleanup();
  });

  function project(name: string, extra: Record<string, string> = {}): string {
    return box.context(name, {
      Dockerfile: [
        `FROM ${box.baseRef}`,
        'ARG VERSION=1.0',
        'RUN echo "version $VERSION" > /version',
        'COPY src/ /app/',
        'RUN ls /app > /listing',
        '',
      ].join('\n'),
      'src/app.js': 'console.log("app")\n',
      'src/util.js': 'export const x = 1;\n',
      ...extra,
    });
  }

  it('an unchanged rebuild hits every step and extracts nothing', async () => {
    const ctx = project('rebuild');
    const first = await box.build(ctx);
    expect(outcomes(first.events)).toEqual(['MISS', 'MISS', 'MISS']);
    const second = await box.build(ctx);
    expect(outcomes(second.events)).toEqual(['HIT', 'HIT', 'HIT']);
    expect(second.events.filter((event) => event.kind === 'materialize')).toEqual([]);
    expect(second.events.filter((event) => event.kind === 'step-output')).toEqual([]);
    expect(second.digest).toBe(first.digest);
  });

  it('a changed file misses the COPY and names the file; earlier steps still hit', async () => {
    const ctx = project('changed-file');
    await box.build(ctx);
    writeFileSync(join(ctx, 'src/app.js'), 'console.log("changed")\n');
    const again = await box.build(ctx);
    expect(outcomes(again.events)).toEqual(['HIT', 'MISS', 'MISS']);
    expect(reasons(again.events)).toContain('COPY: context file src/app.js changed (content)');
    expect(reasons(again.events)).toContain('parent changed (step 3 missed)');
  });

  it("a changed COPY --chmod is the instruction's change, not each file's (issue 26)", async () => {
    const ctx = box.context('chmod', {
      Dockerfile: `FROM ${box.baseRef}\nCOPY --chmod=0755 dir/ /x/\n`,
      'dir/f1': 'one\n',
    });
    await box.build(ctx, { explain: true });
    writeFileSync(join(ctx, 'Dockerfile'), `FROM ${box.baseRef}\nCOPY --chmod=0700 dir/ /x/\n`);
    const again = await box.build(ctx, { explain: true });
    expect(reasons(again.events)).toEqual([
      'COPY: instruction changed COPY --chmod=0755 dir/ /x/ # buildkit → COPY --chmod=0700 dir/ /x/ # buildkit',
    ]);
    // A file that did change still says so, next to the instruction.
    writeFileSync(join(ctx, 'dir/f1'), 'two\n');
    writeFileSync(join(ctx, 'Dockerfile'), `FROM ${box.baseRef}\nCOPY --chmod=0755 dir/ /x/\n`);
    const third = await box.build(ctx, { explain: true });
    expect(reasons(third.events)).toContain('COPY: context file dir/f1 changed (content)');
  });

  it('a renamed file misses (names are part of the key, unlike kaniko)', async () => {
    const ctx = project('renamed');
    await box.build(ctx);
    renameSync(join(ctx, 'src/util.js'), join(ctx, 'src/util2.js'));
    const again = await box.build(ctx);
    expect(outcomes(again.events).slice(0, 2)).toEqual(['HIT', 'MISS']);
    expect(reasons(again.events)).toEqual(
      expect.arrayContaining([
        'COPY: context file src/util2.js added',
        'COPY: context file src/util.js removed',
      ]),
    );
  });

  it('a changed mode misses; a touched mtime still hits', async () => {
    const ctx = project('mode');
    await box.build(ctx);
    utimesSync(join(ctx, 'src/app.js'), new Date(2001, 1, 1), new Date(2001, 1, 1));
    expect(outcomes((await box.build(ctx)).events)).toEqual(['HIT', 'HIT', 'HIT']);
    chmodSync(join(ctx, 'src/app.js'), 0o755);
    const again = await box.build(ctx);
    expect(outcomes(again.events).slice(0, 2)).toEqual(['HIT', 'MISS']);
    expect(reasons(again.events)).toContain('COPY: context file src/app.js changed (mode 644 → 755)');
  });

  it('a changed owner (--chown) misses', async () => {
    const ctx = box.context('chown', {
      Dockerfile: `FROM ${box.baseRef}\nCOPY --chown=1000:1000 f /f\n`,
      f: 'x',
    });
    await box.build(ctx);
    writeFileSync(join(ctx, 'Dockerfile'), `FROM ${box.baseRef}\nCOPY --chown=1000:50 f /f\n`);
    const again = await box.build(ctx);
    expect(outcomes(again.events)).toEqual(['MISS']);
  });

  it('a used build arg misses with its old and new value; an unused one hits and warns', async () => {
    const ctx = project('args');
    await box.build(ctx, { buildArgs: { VERSION: '1.0' } });
    const changed = await box.build(ctx, { buildArgs: { VERSION: '1.1' } });
    expect(outcomes(changed.events)[0]).toBe('MISS');
    expect(reasons(changed.events)).toContain('RUN: build arg VERSION changed 1.0 → 1.1');
    const unused = await box.build(ctx, { buildArgs: { VERSION: '1.1', NOT_DECLARED: 'x' } });
    expect(outcomes(unused.events)).toEqual(['HIT', 'HIT', 'HIT']);
    expect(unused.warnings.join('\n')).toMatch(/NOT_DECLARED/);
  });

  it('an ENV change misses the RUN after it', async () => {
    const ctx = box.context('env', {
      Dockerfile: `FROM ${box.baseRef}\nENV MODE=a\nRUN echo $MODE > /mode\n`,
    });
    await box.build(ctx);
    writeFileSync(join(ctx, 'Dockerfile'), `FROM ${box.baseRef}\nENV MODE=b\nRUN echo $MODE > /mode\n`);
    const again = await box.build(ctx);
    expect(outcomes(again.events)).toEqual(['MISS']);
    expect(reasons(again.events).join('\n')).toMatch(/ENV MODE changed a → b/);
  });

  it('a changed ARG inside COPY or WORKDIR misses (the expanded instruction is keyed)', async () => {
    const ctx = box.context('arg-in-copy', {
      Dockerfile: `FROM ${box.baseRef}\nARG DIR=one\nWORKDIR /w/$DIR\nCOPY f /dest-$DIR\n`,
      f: 'x',
    });
    await box.build(ctx);
    const again = await box.build(ctx, { buildArgs: { DIR: 'two' } });
    expect(outcomes(again.events)).toEqual(['MISS', 'MISS']);
  });

  it('a changed base misses every step', async () => {
    const ctx = box.context('base', { Dockerfile: `FROM ${box.baseRef}\nRUN echo x > /x\n` });
    await box.build(ctx);
    // The same base re-tagged still hits: the key is the base's layers, not its name.
    await box.build(box.context('retag-src', { Dockerfile: `FROM ${box.baseRef}\nLABEL retag=1\n` }), {
      tags: ['retagged-base:1'],
    });
    writeFileSync(join(ctx, 'Dockerfile'), `FROM retagged-base:1\nRUN echo x > /x\n`);
    expect(outcomes((await box.build(ctx)).events)).toEqual(['HIT']);
    writeFileSync(
      join(ctx, 'Dockerfile'),
      `FROM ${box.baseRef}\nRUN echo other > /base-change\nFROM retagged-base:1\nRUN echo x > /x\n`,
    );
    const otherBase = box.context('other-base', {
      Dockerfile: `FROM ${box.baseRef}\nRUN echo different > /different\n`,
    });
    await box.build(otherBase, { tags: ['other-base:1'] });
    writeFileSync(join(ctx, 'Dockerfile'), `FROM other-base:1\nRUN echo x > /x\n`);
    const changed = await box.build(ctx);
    expect(outcomes(changed.events)).toEqual(['MISS']);
  });

  it('.dockerignore changes miss only when they change the selected files', async () => {
    const ctx = project('ignore', { '.dockerignore': 'unrelated.txt\n' });
    await box.build(ctx);
    writeFileSync(join(ctx, '.dockerignore'), 'unrelated.txt\nother.txt\n');
    expect(outcomes((await box.build(ctx)).events)).toEqual(['HIT', 'HIT', 'HIT']);
    writeFileSync(join(ctx, '.dockerignore'), 'src/util.js\n');
    const again = await box.build(ctx);
    expect(outcomes(again.events).slice(0, 2)).toEqual(['HIT', 'MISS']);
    expect(reasons(again.events)).toContain('COPY: context file src/util.js removed');
  });

  it('a reordered instruction misses from where the order changed', async () => {
    const ctx = box.context('order', {
      Dockerfile: `FROM ${box.baseRef}\nRUN echo a > /a\nRUN echo b > /b\n`,
    });
    await box.build(ctx);
    writeFileSync(join(ctx, 'Dockerfile'), `FROM ${box.baseRef}\nRUN echo b > /b\nRUN echo a > /a\n`);
    expect(outcomes((await box.build(ctx)).events)).toEqual(['MISS', 'MISS']);
  });

  it('a re-run parent that produced different bytes makes its old children miss', async () => {
    const ctx = box.context('rerun', {
      Dockerfile: `FROM ${box.baseRef}\nRUN head -c 16 /dev/urandom > /random\nRUN echo child > /child\n`,
    });
    const first = await box.build(ctx);
    const parentKey = cacheEvents(first.events)[0]!.key;
    await new LayerCache(box.cacheDir).remove(parentKey as `sha256:${string}`);
    const again = await box.build(ctx);
    expect(outcomes(again.events)).toEqual(['MISS', 'MISS']);
    expect(reasons(again.events)).toContain('parent changed (step 1 missed)');
  });

  it('--no-cache runs everything; --no-cache-filter only that stage', async () => {
    const ctx = box.context('nocache', {
      Dockerfile: `FROM ${box.baseRef} AS one\nRUN echo 1 > /1\nFROM ${box.baseRef} AS two\nCOPY --from=one /1 /1\nRUN echo 2 > /2\n`,
    });
    await box.build(ctx);
    expect(outcomes((await box.build(ctx, { noCache: true })).events)).toEqual(['MISS', 'MISS', 'MISS']);
    expect(outcomes((await box.build(ctx, { noCacheFilter: ['two'] })).events)).toEqual([
      'HIT',
      'MISS',
      'MISS',
    ]);
  });

  it('two builds on one cache directory at the same time both finish and agree', async () => {
    const ctx = project('concurrent');
    const [a, b] = await Promise.all([box.build(ctx), box.build(ctx)]);
    expect(a.digest).toBe(b.digest);
    expect(outcomes((await box.build(ctx)).events)).toEqual(['HIT', 'HIT', 'HIT']);
  });

  it('a build killed with SIGKILL leaves a cache the next build uses or repairs', async () => {
    const ctx = box.context('killed', {
      Dockerfile: `FROM ${box.baseRef}\nRUN dd if=/dev/zero of=/big bs=1M count=30 2>/dev/null\nRUN echo after > /after\nCOPY f /f\n`,
      f: 'content',
    });
    const bin = resolve(import.meta.dirname, '../../bin/stratum.js');
    const env = { ...process.env, STRATUM_DATA_DIR: box.dataDir, STRATUM_CACHE_DIR: box.cacheDir };
    for (const delayMs of [150, 400, 700, 1000, 1500]) {
      const child = spawn(
        process.execPath,
        [bin, 'build', ctx, '--network', 'none', '--progress', 'quiet', '--no-cache'],
        { env, stdio: 'ignore' },
      );
      const exited = new Promise((done) => child.once('exit', done));
      await new Promise((done) => setTimeout(done, delayMs));
      child.kill('SIGKILL');
      await exited;
    }
    const first = await box.build(ctx);
    const second = await box.build(ctx);
    expect(outcomes(second.events)).toEqual(['HIT', 'HIT', 'HIT']);
    expect(second.digest).toBe(first.digest);
  });

  it('a step appended to a built Dockerfile reuses the kept unpacked filesystem: nothing is extracted', async () => {
    const ctx = box.context('append', { Dockerfile: `FROM ${box.baseRef}\nRUN echo one > /one\n` });
    await box.build(ctx);
    writeFileSync(join(ctx, 'Dockerfile'), `FROM ${box.baseRef}\nRUN echo one > /one\nRUN cat /one > /two\n`);
    const appended = await box.build(ctx, { outputs: [`oci:${box.dir}/append:x`] });
    expect(outcomes(appended.events)).toEqual(['HIT', 'MISS']);
    expect(appended.events.filter((event) => event.kind === 'materialize')).toEqual([]);
    const image = await box.open(`oci:${box.dir}/append:x`);
    expect(image.manifest.value.layers).toHaveLength(3);
    await image.close();
  });

  it('a changed source file reuses the kept filesystem, undoing the added-only layers above the miss', async () => {
    const ctx = project('undo');
    await box.build(ctx);
    writeFileSync(join(ctx, 'src/app.js'), 'console.log("undo")\n');
    writeFileSync(join(ctx, 'src/extra.js'), 'export {};\n');
    const out = `oci:${box.dir}/undo:x`;
    const again = await box.build(ctx, { outputs: [out] });
    expect(outcomes(again.events)).toEqual(['HIT', 'MISS', 'MISS']);
    expect(again.events.filter((event) => event.kind === 'materialize')).toEqual([]);
    const image = await box.open(out);
    try {
      const fs = (await applyLayers(image)).fs.nodes;
      expect(fs.get('app/app.js')?.entry.size).toBe('console.log("undo")\n'.length);
      expect(fs.get('app/extra.js')?.entry.type).toBe('file');
      const listing = fs.get('listing')?.entry;
      expect(listing?.size).toBe('app.js\nextra.js\nutil.js\n'.length);
    } finally {
      await image.close();
    }
  });

  it('--explain lists the key components in plain words', async () => {
    const ctx = project('explain');
    const result = await box.build(ctx, { explain: true });
    const run = cacheEvents(result.events)[0]!;
    const names = run.components.map((component) => component.name);
    expect(names).toEqual(
      expect.arrayContaining([
        'previous step',
        'platform',
        'instruction',
        'arg VERSION',
        'user',
        'workdir',
        'network',
      ]),
    );
    expect(run.components.find((component) => component.name === 'arg VERSION')?.value).toBe('1.0');
    expect(readFileSync(join(ctx, 'Dockerfile'), 'utf8')).toContain('COPY src/');
  });

  describe('RUN --mount=type=bind is keyed on what it mounts', () => {
    async function fileSize(ref: string, path: string): Promise<number | undefined> {
      const image = await box.open(ref);
      try {
        return (await applyLayers(image)).fs.nodes.get(path)?.entry.size;
      } finally {
        await image.close();
      }
    }

    it('a changed context file under the mount misses the RUN, names the path, and changes the image', async () => {
      const ctx = box.context('bind-context', {
        Dockerfile: `FROM ${box.baseRef}\nRUN --mount=type=bind,source=data.txt,target=/tmp/data.txt cp /tmp/data.txt /out.txt\n`,
        'data.txt': 'one\n',
      });
      const out = `oci:${box.dir}/bind-context:x`;
      const first = await box.build(ctx, { outputs: [out] });
      expect(await fileSize(out, 'out.txt')).toBe(4);
      expect(outcomes((await box.build(ctx)).events)).toEqual(['HIT']);
      writeFileSync(join(ctx, 'data.txt'), 'changed\n');
      const again = await box.build(ctx, { outputs: [out], explain: true });
      expect(outcomes(again.events)).toEqual(['MISS']);
      expect(reasons(again.events)).toContain(
        'RUN: bind mount /tmp/data.txt: context file data.txt changed (content)',
      );
      expect(again.digest).not.toBe(first.digest);
      expect(await fileSize(out, 'out.txt')).toBe(8);
    });

    it('a whole-context mount misses when any file changes, and names it', async () => {
      const ctx = box.context('bind-whole', {
        Dockerfile: `FROM ${box.baseRef}\nRUN --mount=target=/src cat /src/a/b.txt > /out.txt\n`,
        'a/b.txt': 'b\n',
      });
      await box.build(ctx);
      writeFileSync(join(ctx, 'a/c.txt'), 'new\n');
      const again = await box.build(ctx);
      expect(outcomes(again.events)).toEqual(['MISS']);
      expect(reasons(again.events)).toContain('RUN: bind mount /src: context file a/c.txt added');
    });

    it('a changed from=STAGE source misses the RUN that mounts it', async () => {
      const ctx = box.context('bind-stage', {
        Dockerfile: [
          `FROM ${box.baseRef} AS build`,
          'COPY data.txt /built/data.txt',
          `FROM ${box.baseRef}`,
          'RUN --mount=type=bind,from=build,source=/built,target=/mnt cp /mnt/data.txt /out.txt',
          '',
        ].join('\n'),
        'data.txt': 'one\n',
      });
      const out = `oci:${box.dir}/bind-stage:x`;
      await box.build(ctx, { outputs: [out] });
      expect(outcomes((await box.build(ctx)).events)).toEqual(['HIT', 'HIT']);
      writeFileSync(join(ctx, 'data.txt'), 'three\n');
      const again = await box.build(ctx, { outputs: [out] });
      expect(outcomes(again.events)).toEqual(['MISS', 'MISS']);
      expect(
        reasons(again.events).some((reason) =>
          reason.startsWith('RUN: bind mount /mnt (source /built): stage build'),
        ),
      ).toBe(true);
      expect(await fileSize(out, 'out.txt')).toBe(6);
    });

    it('a changed from=IMAGE (same reference, new content) misses the RUN that mounts it', async () => {
      const imageCtx = box.context('bind-image-src', {
        Dockerfile: `FROM ${box.baseRef}\nCOPY data.txt /data.txt\n`,
        'data.txt': 'one\n',
      });
      const imageRef = `oci:${box.dir}/bind-image-src:v`;
      await box.build(imageCtx, { outputs: [imageRef] });
      const ctx = box.context('bind-image', {
        Dockerfile: `FROM ${box.baseRef}\nRUN --mount=type=bind,from=${imageRef},source=/data.txt,target=/d cp /d /out.txt\n`,
      });
      const out = `oci:${box.dir}/bind-image:x`;
      await box.build(ctx, { outputs: [out] });
      expect(outcomes((await box.build(ctx)).events)).toEqual(['HIT']);
      writeFileSync(join(imageCtx, 'data.txt'), 'image two\n');
      await box.build(imageCtx, { outputs: [imageRef] });
      const again = await box.build(ctx, { outputs: [out] });
      expect(outcomes(again.events)).toEqual(['MISS']);
      expect(await fileSize(out, 'out.txt')).toBe(10);
    });

    it('cache mounts and secrets stay out of the key: changed content still hits', async () => {
      const ctx = box.context('cache-secret', {
        Dockerfile: `FROM ${box.baseRef}\nRUN --mount=type=cache,target=/c --mount=type=secret,id=s true\n`,
        s: 'one',
      });
      await box.build(ctx, { secrets: { s: join(ctx, 's') } });
      writeFileSync(join(ctx, 's'), 'two');
      expect(outcomes((await box.build(ctx, { secrets: { s: join(ctx, 's') } })).events)).toEqual(['HIT']);
    });
  });

  it('ADD <url> is keyed on the downloaded content: same URL, new content misses', async () => {
    let body = 'first\n';
    const server = createServer((_request, response) => response.end(body));
    await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
    try {
      const port = (server.address() as AddressInfo).port;
      const ctx = box.context('add-url', {
        Dockerfile: `FROM ${box.baseRef}\nADD http://127.0.0.1:${port}/f.txt /f.txt\n`,
      });
      await box.build(ctx, { network: 'host' });
      expect(outcomes((await box.build(ctx, { network: 'host' })).events)).toEqual(['HIT']);
      body = 'second, longer\n';
      const again = await box.build(ctx, { network: 'host' });
      expect(outcomes(again.events)).toEqual(['MISS']);
      expect(reasons(again.events).join('\n')).toMatch(/f\.txt changed \(content\)/);
    } finally {
      await new Promise((done) => server.close(done));
    }
  });
});
