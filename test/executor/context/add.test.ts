import { execFileSync } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { lstat, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyCopy, isTarArchive, planAdd, type SourceRoot } from '../../../src/executor/context/index.js';
import { sha256Digest } from '../../../src/oci/digest.js';
import { requireTool } from '../../helpers/system.js';
import { build, makeTar, tempDir } from './helpers.js';

async function env() {
  const ctx = await tempDir();
  const rootfs = await tempDir('stratum-rootfs-');
  const root: SourceRoot = { kind: 'context', dir: ctx };
  return { ctx, rootfs, root };
}

const sampleTar = () =>
  makeTar([
    { name: 'pkg/', type: 'directory', mode: 0o750, uid: 12, gid: 34 },
    {
      name: 'pkg/bin/tool',
      content: 'tool',
      mode: 0o4755,
      uid: 1000,
      gid: 1000,
      mtime: new Date(1_500_000_000_000),
    },
    { name: 'pkg/link', type: 'symlink', linkname: 'bin/tool' },
    { name: 'pkg/hard', type: 'link', linkname: 'pkg/bin/tool' },
  ]);

async function expectExtracted(rootfs: string, base = 'opt') {
  const tool = await stat(join(rootfs, base, 'pkg/bin/tool'));
  expect(await readFile(join(rootfs, base, 'pkg/bin/tool'), 'utf8')).toBe('tool');
  expect(tool.mode & 0o7777).toBe(0o4755);
  expect([tool.uid, tool.gid]).toEqual([1000, 1000]);
  expect(tool.mtimeMs).toBe(1_500_000_000_000);
  expect(tool.nlink).toBe(2);
  const dir = await stat(join(rootfs, base, 'pkg'));
  expect([dir.mode & 0o7777, dir.uid, dir.gid]).toEqual([0o750, 12, 34]);
  expect((await lstat(join(rootfs, base, 'pkg/link'))).isSymbolicLink()).toBe(true);
}

describe('ADD: local tar archives are extracted, detected by content', () => {
  it('plain tar, with a name that says nothing ("blob")', async () => {
    const e = await env();
    await writeFile(join(e.ctx, 'blob'), await sampleTar());
    expect(await isTarArchive(join(e.ctx, 'blob'))).toBe(true);
    await applyCopy(
      await planAdd({ sources: ['blob'], dest: '/opt', root: e.root, tmpDir: e.ctx }),
      e.rootfs,
    );
    await expectExtracted(e.rootfs);
  });

  it('gzip, keeping owners, modes, mtimes, symlinks and hard links from the archive', async () => {
    const e = await env();
    await writeFile(join(e.ctx, 'a.tgz'), gzipSync(await sampleTar()));
    await applyCopy(
      await planAdd({ sources: ['a.tgz'], dest: '/opt/', root: e.root, tmpDir: e.ctx }),
      e.rootfs,
    );
    await expectExtracted(e.rootfs);
  });

  it.skipIf(!requireTool('bzip2', 'bzip2'))('bzip2', async () => {
    const e = await env();
    await writeFile(join(e.ctx, 'a.tar'), await sampleTar());
    execFileSync('bzip2', [join(e.ctx, 'a.tar')]);
    await applyCopy(
      await planAdd({ sources: ['a.tar.bz2'], dest: '/opt/', root: e.root, tmpDir: e.ctx }),
      e.rootfs,
    );
    await expectExtracted(e.rootfs);
  });

  it.skipIf(!requireTool('xz', 'xz-utils'))('xz, named .zip (the name does not matter)', async () => {
    const e = await env();
    await writeFile(join(e.ctx, 'a.tar'), await sampleTar());
    execFileSync('xz', [join(e.ctx, 'a.tar')]);
    execFileSync('mv', [join(e.ctx, 'a.tar.xz'), join(e.ctx, 'misleading.zip')]);
    await applyCopy(
      await planAdd({ sources: ['misleading.zip'], dest: '/opt/', root: e.root, tmpDir: e.ctx }),
      e.rootfs,
    );
    await expectExtracted(e.rootfs);
  });

  it('an archive made by the system tar (GNU format) extracts too', async () => {
    const e = await env();
    const src = await tempDir('stratum-src-');
    await build(src, { ['d/long-name-'.padEnd(150, 'x')]: 'long', 'd/f': 'f' });
    execFileSync('tar', ['-czf', join(e.ctx, 'sys.tar.gz'), '-C', src, 'd']);
    await applyCopy(
      await planAdd({ sources: ['sys.tar.gz'], dest: '/x/', root: e.root, tmpDir: e.ctx }),
      e.rootfs,
    );
    expect((await readdir(join(e.rootfs, 'x/d'))).sort()).toEqual(
      ['d/long-name-'.padEnd(150, 'x').slice(2), 'f'].sort(),
    );
  });

  it('a gzip file that holds no tar is copied as a file; so is any other file', async () => {
    const e = await env();
    await writeFile(join(e.ctx, 'notes.txt.gz'), gzipSync('just text'));
    await writeFile(join(e.ctx, 'data.tar'), 'not really a tar');
    await applyCopy(
      await planAdd({ sources: ['notes.txt.gz', 'data.tar'], dest: '/f/', root: e.root, tmpDir: e.ctx }),
      e.rootfs,
    );
    expect((await stat(join(e.rootfs, 'f/notes.txt.gz'))).isFile()).toBe(true);
    expect(await readFile(join(e.rootfs, 'f/data.tar'), 'utf8')).toBe('not really a tar');
  });

  it('archives inside a copied directory are not extracted', async () => {
    const e = await env();
    await build(e.ctx, { 'dir/keep': 'k' });
    await writeFile(join(e.ctx, 'dir/inner.tar'), await sampleTar());
    await applyCopy(await planAdd({ sources: ['dir'], dest: '/d/', root: e.root, tmpDir: e.ctx }), e.rootfs);
    expect((await readdir(join(e.rootfs, 'd'))).sort()).toEqual(['inner.tar', 'keep']);
  });

  it('--unpack=false copies a local archive as the file it is (BuildKit)', async () => {
    const e = await env();
    await writeFile(join(e.ctx, 'blob.tar'), await sampleTar());
    await applyCopy(
      await planAdd({ sources: ['blob.tar'], dest: '/opt/', root: e.root, tmpDir: e.ctx, unpack: false }),
      e.rootfs,
    );
    expect((await stat(join(e.rootfs, 'opt/blob.tar'))).isFile()).toBe(true);
  });

  it('git sources never reach planAdd: the engine fetches them', async () => {
    const e = await env();
    await expect(
      planAdd({
        sources: ['https://github.com/moby/buildkit.git#v0.1'],
        dest: '/src',
        root: e.root,
        tmpDir: e.ctx,
      }),
    ).rejects.toMatchObject({ code: 'BUILD_FAILED' });
  });
});

describe('ADD: http(s) URLs are downloaded, extracted only with --unpack=true', () => {
  let server: Server;
  let base = '';
  const body = 'downloaded content\n';
  const lastModified = 'Wed, 21 Oct 2015 07:28:00 GMT';

  beforeAll(async () => {
    const tarBytes = await sampleTar();
    server = createServer((req, res) => {
      if (
        req.url === '/private' &&
        req.headers.authorization === `Basic ${Buffer.from('user:s3cret').toString('base64')}`
      ) {
        res.writeHead(200);
        res.end('private');
      } else if (req.url === '/files/app.txt') {
        res.writeHead(200, { 'Last-Modified': lastModified, 'Content-Type': 'text/plain' });
        res.end(body);
      } else if (req.url === '/plain') {
        res.writeHead(200);
        res.end('no date');
      } else if (req.url === '/a.tar') {
        res.writeHead(200);
        res.end(tarBytes);
      } else if (req.url === '/moved') {
        res.writeHead(302, { Location: '/files/app.txt' });
        res.end();
      } else {
        res.writeHead(404);
        res.end();
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
  });

  it('to a directory: named from the URL path, mode 0600, mtime from Last-Modified', async () => {
    const e = await env();
    await applyCopy(
      await planAdd({ sources: [`${base}/files/app.txt`], dest: '/dl/', root: e.root, tmpDir: e.ctx }),
      e.rootfs,
    );
    const st = await stat(join(e.rootfs, 'dl/app.txt'));
    expect(await readFile(join(e.rootfs, 'dl/app.txt'), 'utf8')).toBe(body);
    expect(st.mode & 0o7777).toBe(0o600);
    expect([st.uid, st.gid]).toEqual([0, 0]);
    expect(st.mtimeMs).toBe(Date.parse(lastModified));
  });

  it('to a file path; without Last-Modified the mtime is the epoch; redirects are followed', async () => {
    const e = await env();
    await applyCopy(
      await planAdd({
        sources: [`${base}/plain`, `${base}/moved`],
        dest: '/dl/',
        root: e.root,
        tmpDir: e.ctx,
      }),
      e.rootfs,
    );
    expect((await stat(join(e.rootfs, 'dl/plain'))).mtimeMs).toBe(0);
    expect(await readFile(join(e.rootfs, 'dl/moved'), 'utf8')).toBe(body);
    const single = await env();
    await applyCopy(
      await planAdd({ sources: [`${base}/plain`], dest: '/etc/conf', root: single.root, tmpDir: single.ctx }),
      single.rootfs,
    );
    expect(await readFile(join(single.rootfs, 'etc/conf'), 'utf8')).toBe('no date');
  });

  it('--chown and --chmod apply to the downloaded file', async () => {
    const e = await env();
    await applyCopy(
      await planAdd({ sources: [`${base}/files/app.txt`], dest: '/a', root: e.root, tmpDir: e.ctx }),
      e.rootfs,
      {
        chown: { uid: 7, gid: 8 },
        chmod: '644',
      },
    );
    const st = await stat(join(e.rootfs, 'a'));
    expect([st.mode & 0o7777, st.uid, st.gid]).toEqual([0o644, 7, 8]);
  });

  it('a tar served over HTTP is not extracted', async () => {
    const e = await env();
    await applyCopy(
      await planAdd({ sources: [`${base}/a.tar`], dest: '/t/', root: e.root, tmpDir: e.ctx }),
      e.rootfs,
    );
    expect((await stat(join(e.rootfs, 't/a.tar'))).isFile()).toBe(true);
  });

  it('--unpack=true extracts a tar served over HTTP (BuildKit)', async () => {
    const e = await env();
    await applyCopy(
      await planAdd({ sources: [`${base}/a.tar`], dest: '/opt', root: e.root, tmpDir: e.ctx, unpack: true }),
      e.rootfs,
    );
    await expectExtracted(e.rootfs);
  });

  it('--checksum verifies the bytes; a mismatch is an error naming the URL', async () => {
    const e = await env();
    const good = sha256Digest(body);
    await applyCopy(
      await planAdd({
        sources: [`${base}/files/app.txt`],
        dest: '/c/',
        checksum: good,
        root: e.root,
        tmpDir: e.ctx,
      }),
      e.rootfs,
    );
    expect(await readFile(join(e.rootfs, 'c/app.txt'), 'utf8')).toBe(body);
    const bad = sha256Digest('something else');
    await expect(
      planAdd({
        sources: [`${base}/files/app.txt`],
        dest: '/c/',
        checksum: bad,
        root: e.root,
        tmpDir: e.ctx,
      }),
    ).rejects.toMatchObject({
      code: 'DIGEST_MISMATCH',
      message: expect.stringContaining(`ADD ${base}/files/app.txt`),
    });
  });

  it('a credential in the URL never appears in a message or a name', async () => {
    const e = await env();
    const withCreds = base.replace('http://', 'http://user:s3cret@');
    const plan = await planAdd({
      sources: [`${withCreds}/files/app.txt`],
      dest: '/d/',
      root: e.root,
      tmpDir: e.ctx,
    });
    expect(JSON.stringify(plan)).not.toContain('s3cret');
    const auth = await planAdd({
      sources: [`${withCreds}/private`],
      dest: '/d/',
      root: e.root,
      tmpDir: e.ctx,
    });
    expect(auth.entries[0]?.sourceName).toBe(`${base}/private`);
    const failure = await planAdd({
      sources: [`${withCreds}/missing`],
      dest: '/d/',
      root: e.root,
      tmpDir: e.ctx,
    }).catch((error: unknown) => error);
    expect(String(failure)).toContain('HTTP 404');
    expect(String(failure)).not.toContain('s3cret');
  });

  it('an HTTP error is a failure naming the URL and the status', async () => {
    const e = await env();
    await expect(
      planAdd({ sources: [`${base}/missing`], dest: '/m/', root: e.root, tmpDir: e.ctx }),
    ).rejects.toThrow(`ADD ${base}/missing: download failed: HTTP 404`);
  });
});
