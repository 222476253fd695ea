import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openImage, writeImage } from '../../src/transport/images.js';
import { isRoot, requireTool } from '../helpers/system.js';
import { makeImage, readAllBlobs } from '../oci/image-fixture.js';

/** Other tools must accept what stratum writes, and stratum must read what they write. */

const dir = mkdtempSync(join(tmpdir(), 'stratum-external-'));
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

const run = (command: string, args: string[]): string =>
  execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

async function sample(name: string): Promise<Awaited<ReturnType<typeof makeImage>>> {
  return makeImage(
    [
      { files: { 'etc/': '', 'etc/hello': `hello from ${name}\n` }, createdBy: 'COPY hello /etc/hello' },
      { files: { 'data.txt': 'plain layer\n' }, compression: 'none', createdBy: 'RUN echo' },
    ],
    { name },
  );
}

describe.skipIf(!requireTool('skopeo', 'skopeo'))('skopeo', () => {
  it('skopeo inspect reads oci:, oci-archive: and docker-archive: written by stratum', async () => {
    const image = await sample('skopeo-inspect');
    const refs = [
      `oci:${join(dir, 'sk-layout')}:v1`,
      `oci-archive:${join(dir, 'sk.tar')}:v1`,
      `docker-archive:${join(dir, 'sk-docker.tar')}:sk/app:v1`,
    ];
    for (const ref of refs) {
      const written = await writeImage(image.source, ref);
      const info = JSON.parse(run('skopeo', ['inspect', ref])) as {
        Digest: string;
        Layers: string[];
        Env: string[];
      };
      expect(info.Env, ref).toEqual(['PATH=/usr/bin:/bin']);
      expect(info.Layers, ref).toHaveLength(2);
      if (!ref.startsWith('docker-archive')) expect(info.Digest, ref).toBe(written.digest);
    }
  });

  it('skopeo copy takes stratum output to each transport, and stratum reads the copies with every blob verified', async () => {
    const image = await sample('skopeo-copy');
    await writeImage(image.source, `oci:${join(dir, 'skc')}:src`);
    const targets = [
      `oci:${join(dir, 'skc-out')}:copied`,
      `oci-archive:${join(dir, 'skc-out.tar')}:copied`,
      `docker-archive:${join(dir, 'skc-out-docker.tar')}:skc/app:copied`,
    ];
    for (const target of targets) {
      run('skopeo', ['copy', '--quiet', `oci:${join(dir, 'skc')}:src`, target]);
      const back = await openImage(target);
      expect((await readAllBlobs(back)).size).toBe(3);
      expect(back.config.value.rootfs.diff_ids).toEqual(image.source.config.value.rootfs.diff_ids);
      await back.close();
    }
  });
});

describe.skipIf(!requireTool('umoci', 'umoci'))('umoci', () => {
  it('umoci unpack turns a stratum layout into a bundle holding the layers’ files', async () => {
    const image = await sample('umoci');
    await writeImage(image.source, `oci:${join(dir, 'umoci')}:latest`);
    const bundle = join(dir, 'bundle');
    run('umoci', [
      'unpack',
      ...(isRoot ? [] : ['--rootless']),
      '--image',
      `${join(dir, 'umoci')}:latest`,
      bundle,
    ]);
    expect(readFileSync(join(bundle, 'rootfs', 'etc', 'hello'), 'utf8')).toBe('hello from umoci\n');
    expect(readFileSync(join(bundle, 'rootfs', 'data.txt'), 'utf8')).toBe('plain layer\n');
    expect(existsSync(join(bundle, 'config.json'))).toBe(true);
  });
});

describe.skipIf(!requireTool('oci-image-tool', 'oci-image-tool'))('oci-image-tool', () => {
  it('oci-image-tool validate accepts a stratum layout and an oci-archive', async () => {
    const image = await sample('oci-image-tool');
    await writeImage(image.source, `oci:${join(dir, 'oit')}:v1`);
    await writeImage(image.source, `oci-archive:${join(dir, 'oit.tar')}:v1`);
    const layout = run('oci-image-tool', [
      'validate',
      '--type',
      'image',
      '--ref',
      'name=v1',
      join(dir, 'oit'),
    ]);
    expect(layout).toMatch(/Validation succeeded/);
    // oci-image-tool's own tar walker fails on every oci-archive (skopeo's too: "unable to walk:
    // end of walk"), so the archive is unpacked with GNU tar and its content validated.
    const unpacked = join(dir, 'oit-unpacked');
    execFileSync('mkdir', ['-p', unpacked]);
    run('tar', ['-xf', join(dir, 'oit.tar'), '-C', unpacked]);
    const archive = run('oci-image-tool', ['validate', '--type', 'image', '--ref', 'name=v1', unpacked]);
    expect(archive).toMatch(/Validation succeeded/);
  });
});

function dockerWorks(): boolean {
  if (!requireTool('docker', 'docker.io')) return false;
  try {
    run('docker', ['info', '--format', '{{.ServerVersion}}']);
    return true;
  } catch (error) {
    if (process.env.CI) throw new Error(`CI is set and docker info fails: ${String(error)}`);
    console.warn('skipping: docker info fails (no daemon)');
    return false;
  }
}

describe.skipIf(!dockerWorks())('docker', () => {
  const tag = `stratum-test/oci-core:${process.pid}`;
  afterAll(() => {
    try {
      run('docker', ['rmi', '--force', tag]);
    } catch {
      // already gone
    }
  });

  it('docker load accepts the docker-archive, docker save output reads back in stratum', async () => {
    const image = await sample('docker');
    await writeImage(image.source, `docker-archive:${join(dir, 'load.tar')}:${tag}`);
    expect(run('docker', ['load', '-i', join(dir, 'load.tar')])).toContain(`Loaded image: ${tag}`);
    const id = run('docker', ['image', 'inspect', '--format', '{{.Id}}', tag]).trim();
    expect(id).toBe(image.source.config.digest);
    const history = run('docker', ['history', '--no-trunc', '--format', '{{.CreatedBy}}', tag]);
    expect(history).toContain('COPY hello /etc/hello');

    run('docker', ['save', '-o', join(dir, 'saved.tar'), tag]);
    const saved = await openImage(`docker-archive:${join(dir, 'saved.tar')}`);
    expect(saved.config.digest).toBe(image.source.config.digest);
    expect((await readAllBlobs(saved)).size).toBe(3);
    await saved.close();

    const daemon = await openImage(`docker-daemon:${tag}`);
    expect(daemon.config.digest).toBe(image.source.config.digest);
    await writeImage(daemon, `oci:${join(dir, 'from-daemon')}:x`);
    await daemon.close();
    expect(
      (await openImage(`oci:${join(dir, 'from-daemon')}:x`)).config.raw.equals(image.source.config.raw),
    ).toBe(true);
  });
});
