import { mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tar from 'tar-stream';
import { afterAll, describe, expect, it } from 'vitest';
import { StratumError } from '../../src/errors.js';
import { tarAccess } from '../../src/transport/files.js';
import { indexTar, resolveMember } from '../../src/transport/tar-index.js';

const dir = mkdtempSync(join(tmpdir(), 'stratum-tar-index-'));
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

async function writeTar(name: string, add: (pack: tar.Pack) => void): Promise<string> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const chunk of pack) chunks.push(chunk as Buffer);
  })();
  add(pack);
  pack.finalize();
  await done;
  const path = join(dir, name);
  writeFileSync(path, Buffer.concat(chunks));
  return path;
}

describe('tar archives read in place', () => {
  it('finds members by name, PAX long names, ./ prefixes and links included, and reads their bytes', async () => {
    const long = `${'d'.repeat(120)}/${'f'.repeat(120)}`;
    const path = await writeTar('a.tar', (pack) => {
      pack.entry({ name: './index.json' }, '{"a":1}');
      pack.entry({ name: long }, 'long');
      pack.entry({ name: 'dir/', type: 'directory' });
      pack.entry({ name: 'dir/link', type: 'symlink', linkname: '../index.json' });
      pack.entry({ name: 'hard', type: 'link', linkname: 'index.json' });
      pack.entry({ name: 'escape', type: 'symlink', linkname: '../../etc/passwd' });
      pack.entry({ name: 'empty' }, '');
    });
    const index = await indexTar(path, 'test');
    const access = tarAccess(index, path);
    expect((await access.readFile('index.json'))?.toString()).toBe('{"a":1}');
    expect((await access.readFile(long))?.toString()).toBe('long');
    expect((await access.readFile('dir/link'))?.toString()).toBe('{"a":1}');
    expect((await access.readFile('hard'))?.toString()).toBe('{"a":1}');
    expect((await access.readFile('empty'))?.length).toBe(0);
    expect(resolveMember(index, 'escape')).toBeUndefined();
    expect(await access.readFile('../index.json')).toBeUndefined();
  });

  it('a truncated archive is an INVALID_IMAGE error naming the archive and the member', async () => {
    const path = await writeTar('t.tar', (pack) => {
      pack.entry({ name: 'blob' }, Buffer.alloc(5000, 1));
    });
    truncateSync(path, 2048);
    const error = await indexTar(path, 'oci-archive:t.tar').catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(StratumError);
    expect((error as StratumError).message).toBe(
      'oci-archive:t.tar: truncated archive: member "blob" needs 5000 bytes at offset 512, the file has 2048',
    );
  });

  it('a file that is not a tar fails on its header checksum', async () => {
    const path = join(dir, 'not.tar');
    writeFileSync(path, Buffer.alloc(1024, 0x41));
    await expect(indexTar(path, 'x')).rejects.toThrow(/corrupt tar header at offset 0/);
  });
});
