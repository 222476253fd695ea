import { createServer, type Server } from 'node:http';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyLayers } from '../../src/analyze/apply.js';
import type { FsEntry } from '../../src/analyze/fs-model.js';
import type { BuildEvent } from '../../src/executor/progress.js';
import { buildSandbox, type BuildSandbox } from '../helpers/build.js';
import { isRoot } from '../helpers/system.js';

/** The final filesystem of an image written to `oci:DIR:x`, as path → entry. */
async function finalFs(box: BuildSandbox, ref: string): Promise<ReadonlyMap<string, FsEntry>> {
  const image = await box.open(ref);
  try {
    const applied = await applyLayers(image);
    return new Map([...applied.fs.nodes].map(([path, node]) => [path, node.entry]));
  } finally {
    await image.close();
  }
}

function output(events: readonly BuildEvent[]): string {
  return events
    .filter((event): event is Extract<BuildEvent, { kind: 'step-output' }> => event.kind === 'step-output')
    .map((event) => event.text)
    .join('');
}

describe.skipIf(!isRoot)('stratum build: RUN mounts, heredocs, ONBUILD, ADD, stdin, safety', () => {
  let box: BuildSandbox;
  let server: Server;
  let port = 0;
  beforeAll(async () => {
    box = buildSandbox();
    server = createServer((request, response) => {
      response.setHeader('Last-Modified', 'Wed, 21 Oct 2015 07:28:00 GMT');
      response.end(`downloaded ${request.url ?? ''}\n`);
    });
    await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
    const address = server.address();
    port = typeof address === 'object' && address !== null ? address.port : 0;
  });
  afterAll(async () => {
    await new Promise((done) => server.close(done));
    box.cleanup();
  });

  it('RUN --mount: cache persists between builds, secrets never reach a layer, binds and tmpfs leave only their mount points', async () => {
    const secret = join(box.dir, 'token.txt');
    writeFileSync(secret, 's3cr3t-value\n');
    const ctx = box.context('mounts', {
      Dockerfile: [
        `FROM ${box.baseRef}`,
        'RUN --mount=type=cache,target=/var/cache/demo echo run >> /var/cache/demo/log && wc -l < /var/cache/demo/log > /runs',
        'RUN --mount=type=secret,id=token cat /run/secrets/token | wc -c > /secret-length',
        'RUN --mount=type=secret,id=token,env=TOKEN test "${#TOKEN}" = 12 && echo ok > /env-secret',
        'RUN --mount=type=bind,source=data,target=/mnt/data cat /mnt/data/file > /from-bind',
        'RUN --mount=type=tmpfs,target=/scratch echo gone > /scratch/file && ls /scratch > /tmpfs-listing',
        '',
      ].join('\n'),
      'data/file': 'bound\n',
    });
    const out = `oci:${box.dir}/mounts:x`;
    const first = await box.build(ctx, { outputs: [out], secrets: { token: secret }, noCache: true });
    const fs = await finalFs(box, out);
    expect(
      [...fs.keys()].filter(
        (path) =>
          path.startsWith('var/cache/demo') ||
          path.startsWith('run/secrets') ||
          path.startsWith('mnt') ||
          path.startsWith('scratch'),
      ),
    ).toEqual(
      // The mount points stay as empty directories (BuildKit's layers hold them), nothing below.
      expect.arrayContaining(['var/cache/demo', 'run/secrets', 'mnt', 'mnt/data', 'scratch']),
    );
    for (const path of ['var/cache/demo/log', 'run/secrets/token', 'mnt/data/file', 'scratch/file'])
      expect(fs.has(path), path).toBe(false);
    expect(fs.get('secret-length')?.type).toBe('file');
    expect(fs.get('env-secret')?.type).toBe('file');
    const image = await box.open(out);
    expect(image.config.raw.toString()).not.toContain('s3cr3t');
    expect(JSON.stringify(first.events)).not.toContain('s3cr3t');
    await image.close();
    // The cache mount kept its content: a second uncached build sees two runs.
    await box.build(ctx, {
      outputs: [`oci:${box.dir}/mounts2:x`],
      secrets: { token: secret },
      noCache: true,
    });
    const again = await box.open(`oci:${box.dir}/mounts2:x`);
    await again.close();
    const dump = await box.build(
      box.context('read-cache', {
        Dockerfile: `FROM ${box.baseRef}\nRUN --mount=type=cache,target=/var/cache/demo wc -l < /var/cache/demo/log\n`,
      }),
      { noCache: true },
    );
    expect(output(dump.events).trim()).toBe('2');
  });

  it('a required secret that was not given fails with a clear message', async () => {
    const ctx = box.context('secret-missing', {
      Dockerfile: `FROM ${box.baseRef}\nRUN --mount=type=secret,id=nope,required=true cat /run/secrets/nope\n`,
    });
    await expect(box.build(ctx)).rejects.toThrow(/secret "nope" is required/);
  });

  it('a read-write bind mount and a VOLUME copy a FIFO as a FIFO (issue 26: an internal error naming the scratch directory)', async () => {
    const ctx = box.context('rw-fifo', {
      Dockerfile: [
        `FROM ${box.baseRef} AS st`,
        'RUN mkdir -p /d && echo x > /d/f && mkfifo /d/fifo',
        `FROM ${box.baseRef}`,
        'RUN --mount=type=bind,from=st,source=/d,target=/m,rw test -p /m/fifo && echo changed > /m/f && echo bind-ok',
        'RUN mkdir /v && mkfifo /v/fifo',
        'VOLUME /v',
        'RUN test -p /v/fifo && echo volume-ok',
        '',
      ].join('\n'),
    });
    const built = await box.build(ctx);
    expect(output(built.events)).toContain('bind-ok');
    expect(output(built.events)).toContain('volume-ok');
  });

  it('RUN heredocs run as Docker runs them (script, shebang, several)', async () => {
    const ctx = box.context('heredoc', {
      Dockerfile: [
        `FROM ${box.baseRef}`,
        'RUN <<EOF',
        'echo one > /one',
        'echo two > /two',
        'EOF',
        'RUN <<EOF',
        '#!/bin/sh -e',
        'echo shebang > /shebang',
        'EOF',
        'RUN cat <<A > /a && cat <<B > /b',
        'first',
        'A',
        'second',
        'B',
        'COPY <<EOF /inline.txt',
        'inline ${HOME:-x}',
        'EOF',
        '',
      ].join('\n'),
    });
    const out = `oci:${box.dir}/heredoc:x`;
    await box.build(ctx, { outputs: [out] });
    const fs = await finalFs(box, out);
    for (const path of ['one', 'two', 'shebang', 'a', 'b', 'inline.txt'])
      expect(fs.get(path)?.type, path).toBe('file');
    expect([...fs.keys()].some((path) => path.includes('stratum-heredoc'))).toBe(false);
  });

  it('ONBUILD triggers run when the image is used as a base, then are cleared', async () => {
    const parent = box.context('onbuild-parent', {
      Dockerfile: `FROM ${box.baseRef}\nONBUILD RUN echo triggered > /triggered\n`,
    });
    await box.build(parent, { tags: ['onbuild-parent:1'] });
    const child = box.context('onbuild-child', {
      Dockerfile: 'FROM onbuild-parent:1\nRUN test -f /triggered\n',
    });
    const out = `oci:${box.dir}/onbuild:x`;
    await box.build(child, { outputs: [out] });
    const image = await box.open(out);
    expect(image.config.value.config?.OnBuild ?? null).toBeNull();
    await image.close();
    expect((await finalFs(box, out)).get('triggered')?.type).toBe('file');
  });

  it('ADD extracts a local tar by content and downloads a URL with mode 0600 and its Last-Modified time', async () => {
    const ctx = box.context('add', {
      Dockerfile: `FROM ${box.baseRef}\nADD archive.bin /extracted/\nADD http://127.0.0.1:${port}/file.txt /downloaded/\n`,
    });
    const { execFileSync } = await import('node:child_process');
    mkdirSync(join(ctx, 'src'));
    writeFileSync(join(ctx, 'src/inside.txt'), 'inside\n');
    execFileSync('tar', ['-C', join(ctx, 'src'), '-czf', join(ctx, 'archive.bin'), 'inside.txt']);
    const out = `oci:${box.dir}/add:x`;
    await box.build(ctx, { outputs: [out] });
    const fs = await finalFs(box, out);
    expect(fs.get('extracted/inside.txt')?.type).toBe('file');
    const downloaded = fs.get('downloaded/file.txt');
    expect(downloaded?.mode).toBe(0o600);
    expect(downloaded?.mtime).toBe(Date.parse('Wed, 21 Oct 2015 07:28:00 GMT') / 1000);
  });

  it('the Dockerfile can come from standard input (no path) and FROM a docker-archive', async () => {
    const ctx = box.context('stdin', { 'file.txt': 'x' });
    const out = `oci:${box.dir}/stdin:x`;
    const result = await box.build(ctx, {
      dockerfile: `FROM docker-archive:${box.base.dockerArchive}\nCOPY file.txt /file.txt\n`,
      dockerfilePath: undefined as unknown as string,
      outputs: [out],
    });
    expect(result.digest).toMatch(/^sha256:/);
    expect((await finalFs(box, out)).get('file.txt')?.type).toBe('file');
  });

  it('COPY through a rootfs symlink to /etc or ../../.. stays inside the rootfs', async () => {
    const marker = `stratum-escape-${process.pid}`;
    const ctx = box.context('escape', {
      Dockerfile: `FROM ${box.baseRef}\nRUN ln -s /etc /app && ln -s ../../../../../../tmp /up\nCOPY f /app/${marker}\nCOPY f /up/${marker}\n`,
      f: 'payload',
    });
    const out = `oci:${box.dir}/escape:x`;
    await box.build(ctx, { outputs: [out] });
    expect(existsSync(`/etc/${marker}`)).toBe(false);
    expect(existsSync(`/tmp/${marker}`)).toBe(false);
    const fs = await finalFs(box, out);
    expect(fs.get(`etc/${marker}`)?.type).toBe('file');
    expect(fs.get(`tmp/${marker}`)?.type).toBe('file');
  });

  it('a context source outside the context is refused', async () => {
    const ctx = box.context('outside', { Dockerfile: `FROM ${box.baseRef}\nCOPY ../outside.txt /x\n` });
    writeFileSync(join(ctx, '..', 'outside.txt'), 'no');
    await expect(box.build(ctx)).rejects.toThrow(/outside/);
    expect(readFileSync(join(ctx, 'Dockerfile'), 'utf8')).toContain('COPY');
  });
});
