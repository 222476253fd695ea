import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BuildEvent } from '../../src/executor/progress.js';
import { buildSandbox, type BuildSandbox } from '../helpers/build.js';
import { isRoot, requireTool } from '../helpers/system.js';
import { startRegistry, type RunningRegistry } from '../registry/harness.js';
import { makeBusyboxRootfs, writeBaseImage } from '../helpers/base-image.js';

type CacheEvent = Extract<BuildEvent, { kind: 'cache' }>;

function cacheEvents(events: readonly BuildEvent[]): CacheEvent[] {
  return events.filter((event): event is CacheEvent => event.kind === 'cache');
}

function sha256(text: string): string {
  return `sha256:${createHash('sha256').update(text).digest('hex')}`;
}

interface StoredRecord {
  readonly dockerfile: string;
  readonly target: string;
  readonly step: string;
  readonly components: { name: string; value: string }[];
  readonly files?: Record<string, unknown>;
}

describe.skipIf(!isRoot)('--explain on a fresh cache directory, against imported caches', () => {
  let box: BuildSandbox;
  let context: string;
  const dockerfile = (base: string): string =>
    [
      `FROM ${base}`,
      'ARG FLAVOUR=plain',
      'COPY deps.txt /app/deps.txt',
      'RUN echo "$FLAVOUR" > /app/flavour',
      'COPY src/ /app/src/',
      'RUN ls /app/src > /app/listing',
      '',
    ].join('\n');

  beforeAll(() => {
    box = buildSandbox();
    context = box.context('app', {
      Dockerfile: dockerfile(box.baseRef),
      'deps.txt': 'left-pad\n',
      'src/app.js': "console.log('one');\n",
      'src/util.js': 'export {};\n',
    });
  });
  afterAll(() => {
    box.cleanup();
  });

  it('names the changed source file, with both digests, and what it was compared with', async () => {
    const dest = join(box.dir, 'exported');
    await box.build(context, { cacheDir: join(box.dir, 'machine-a'), cacheTo: [`type=local,dest=${dest}`] });

    // The entries carry their key components: the Dockerfile by its name in the context (no
    // path of this machine), the step, and the files the COPY read (relative names).
    const config = readExportedConfig(dest);
    const records = config.entries.flatMap((entry) => (entry.record === undefined ? [] : [entry.record]));
    expect(records).toHaveLength(config.entries.length);
    expect(new Set(records.map((record) => record.dockerfile))).toEqual(new Set(['Dockerfile']));
    expect(records.map((record) => record.step).sort()).toEqual(['0/2', '0/3', '0/4', '0/5']);
    const copySrc = records.find((record) => record.step === '0/4')!;
    expect(Object.keys(copySrc.files ?? {}).sort()).toEqual(['src/app.js', 'src/util.js']);
    expect(JSON.stringify(config)).not.toContain(box.dir);

    writeFileSync(join(context, 'src/app.js'), "console.log('two');\n");
    const fresh = await box.build(context, {
      cacheDir: join(box.dir, 'machine-b'),
      cacheFrom: [`type=local,src=${dest}`],
      explain: true,
    });
    const events = cacheEvents(fresh.events);
    expect(events.map((event) => (event.hit ? 'HIT' : 'MISS'))).toEqual(['HIT', 'HIT', 'MISS', 'MISS']);
    const [copy, run] = [events[2]!, events[3]!];
    expect(copy.comparedWith).toMatch(new RegExp(`^local:${dest} \\(its closest entry, exported `));
    expect(copy.reasons).toEqual([
      `COPY: context file src/app.js changed (content ${sha256("console.log('one');\n").slice(0, 19)} → ${sha256("console.log('two');\n").slice(0, 19)})`,
    ]);
    expect(run.reasons).toEqual(['parent changed (step 4 missed)']);
  });

  it('names a changed build arg by name', async () => {
    const dest = join(box.dir, 'exported');
    const fresh = await box.build(context, {
      cacheDir: join(box.dir, 'machine-c'),
      cacheFrom: [`type=local,src=${dest}`],
      buildArgs: { FLAVOUR: 'spicy' },
      explain: true,
    });
    const events = cacheEvents(fresh.events);
    expect(events[0]!.hit).toBe(true);
    expect(events[1]!.reasons).toEqual(['RUN: build arg FLAVOUR changed plain → spicy']);
  });

  it('without any imported entry for the step, says there is nothing to compare with', async () => {
    // Another Dockerfile on the same base: its first step shares a parent with the imported
    // COPY deps.txt, but a step of another Dockerfile explains nothing.
    const other = box.context('other', { 'other.Dockerfile': `FROM ${box.baseRef}\nRUN echo other > /o\n` });
    const fresh = await box.build(other, {
      dockerfilePath: join(other, 'other.Dockerfile'),
      cacheDir: join(box.dir, 'machine-d'),
      cacheFrom: [`type=local,src=${join(box.dir, 'exported')}`],
      explain: true,
    });
    const [event] = cacheEvents(fresh.events);
    expect(event!.comparedWith).toBeUndefined();
    expect(event!.reasons[0]).toMatch(/^first build of this step/);
  });

  it('names a changed base by reference and digest', async () => {
    // The same reference, another image: a base with one more file.
    const rootfs = join(box.dir, 'base-2-rootfs');
    mkdirSync(rootfs);
    makeBusyboxRootfs(rootfs);
    writeFileSync(join(rootfs, 'extra'), 'new\n');
    const out = join(box.dir, 'base-moving');
    const layout = writeBaseImage(join(box.dir, 'base-rootfs'), out, 'stratum-test/busybox:1').layout;
    const firstDigest = manifestDigest(layout);
    const ctx = box.context('moving-base', {
      Dockerfile: `FROM oci:${layout}:1\nRUN echo x > /x\n`,
    });
    const dest = join(box.dir, 'exported-base');
    await box.build(ctx, { cacheDir: join(box.dir, 'machine-e'), cacheTo: [`type=local,dest=${dest}`] });
    writeBaseImage(rootfs, out, 'stratum-test/busybox:1');
    const secondDigest = manifestDigest(layout);
    expect(secondDigest).not.toBe(firstDigest);
    const fresh = await box.build(ctx, {
      cacheDir: join(box.dir, 'machine-f'),
      cacheFrom: [`type=local,src=${dest}`],
      explain: true,
    });
    const [event] = cacheEvents(fresh.events);
    expect(event!.reasons).toEqual([
      // The reference without this machine's directories.
      `base oci:…/layout:1 changed: ${firstDigest} → ${secondDigest}`,
    ]);
  });

  describe.skipIf(!requireTool('docker-registry', 'docker-registry'))('through a registry', () => {
    let registry: RunningRegistry;
    beforeAll(async () => {
      registry = await startRegistry();
    });
    afterAll(async () => {
      await registry.stop();
    });

    it('a miss on a fresh machine is explained against the registry cache', async () => {
      const ctx = box.context('via-registry', {
        Dockerfile: dockerfile(box.baseRef),
        'deps.txt': 'left-pad\n',
        'src/app.js': 'one\n',
      });
      const ref = `registry:${registry.host}/app/cache:main`;
      await box.build(ctx, { cacheDir: join(box.dir, 'reg-a'), cacheTo: [ref] });
      writeFileSync(join(ctx, 'deps.txt'), 'right-pad\n');
      const fresh = await box.build(ctx, {
        cacheDir: join(box.dir, 'reg-b'),
        cacheFrom: [ref],
        explain: true,
      });
      const [first] = cacheEvents(fresh.events);
      expect(first!.hit).toBe(false);
      expect(first!.comparedWith).toMatch(/^registry:127\.0\.0\.1:\d+\/app\/cache:main /);
      expect(first!.reasons).toEqual([
        `COPY: context file deps.txt changed (content ${sha256('left-pad\n').slice(0, 19)} → ${sha256('right-pad\n').slice(0, 19)})`,
      ]);
    });
  });
});

function manifestDigest(layout: string): string {
  const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8')) as {
    manifests: { digest: string }[];
  };
  expect(index.manifests).toHaveLength(1);
  return index.manifests[0]!.digest;
}

function readExportedConfig(dir: string): { entries: { record?: StoredRecord }[] } {
  const index = JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8')) as {
    manifests: { digest: string }[];
  };
  const blob = (digest: string): string => readFileSync(join(dir, 'blobs/sha256', digest.slice(7)), 'utf8');
  const manifest = JSON.parse(blob(index.manifests[0]!.digest)) as { config: { digest: string } };
  return JSON.parse(blob(manifest.config.digest)) as { entries: { record?: StoredRecord }[] };
}
