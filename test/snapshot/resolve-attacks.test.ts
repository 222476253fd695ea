import { lstat, mkdir, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { applyLayers, snapshotState } from '../../src/analyze/index.js';
import { StratumError } from '../../src/errors.js';
import { resolveInRoot as resolveCopyPath } from '../../src/executor/context/paths.js';
import { MountPointLedger } from '../../src/executor/sandbox/mount-points.js';
import { extractLayer } from '../../src/snapshot/extract.js';
import { buildImage } from '../analyze/images.js';
import {
  buildTar,
  dir,
  file,
  hardlinkEntry,
  removeAll,
  streamOf,
  symlinkEntry,
  tempDir,
  type RawEntry,
} from './helpers.js';

/**
 * The same hostile inputs through every caller of the one rootfs resolver (src/snapshot/resolve.ts):
 * disk extraction, analyze's model, the COPY destination and the sandbox's mount target. Layer
 * application refuses a link that climbs above the root (UNSAFE_PATH); the rootfs a step runs in
 * clamps it at the root as the kernel does. Nothing ever lands outside the root.
 *
 * Layout: <base>/x/root is the root; `../../etc` from <base>/x/root/up would be <base>/etc, a
 * sentinel directory that must stay untouched.
 */

const dirs: string[] = [];
afterEach(async () => {
  await removeAll(...dirs.splice(0));
});

interface Setup {
  readonly root: string;
  readonly sentinel: string;
}

async function setup(): Promise<Setup> {
  const base = await tempDir('stratum-resolve-');
  dirs.push(base);
  const root = join(base, 'x', 'root');
  const sentinel = join(base, 'etc');
  await mkdir(root, { recursive: true });
  await mkdir(sentinel);
  await writeFile(join(sentinel, 'shadow'), 'host secret');
  return { root, sentinel };
}

async function expectSentinelUntouched(sentinel: string): Promise<void> {
  expect((await readdir(sentinel)).sort()).toEqual(['shadow']);
  expect(await readFile(join(sentinel, 'shadow'), 'utf8')).toBe('host secret');
}

/** Outcome of one caller: where the path landed inside the root, or the error code. */
type Outcome = { readonly landed: string } | { readonly refused: string };

async function outcome(run: () => Promise<string>): Promise<Outcome> {
  try {
    return { landed: await run() };
  } catch (error) {
    if (error instanceof StratumError) return { refused: error.code };
    throw error;
  }
}

async function viaExtraction(entries: readonly RawEntry[], probe: string): Promise<Outcome> {
  const { root, sentinel } = await setup();
  const result = await outcome(async () => {
    await extractLayer(streamOf(buildTar(entries)), root, { layerName: 'sha256:evil' });
    await stat(join(root, probe));
    return probe;
  });
  await expectSentinelUntouched(sentinel);
  return result;
}

async function viaModel(entries: readonly RawEntry[], probe: string): Promise<Outcome> {
  const { source } = await buildImage([{ createdBy: 'evil', rawTar: buildTar(entries) }]);
  return outcome(async () => {
    const { fs } = await applyLayers(source);
    expect(snapshotState(fs).entries.has(probe)).toBe(true);
    return probe;
  });
}

/** The rootfs holds the links of the layer (extracted alone); then `path` is resolved in it. */
async function rootfsWith(links: readonly RawEntry[]): Promise<Setup> {
  const made = await setup();
  await extractLayer(streamOf(buildTar(links)), made.root);
  return made;
}

async function viaCopyDestination(links: readonly RawEntry[], path: string): Promise<Outcome> {
  const { root, sentinel } = await rootfsWith(links);
  const result = await outcome(async () => {
    const resolved = await resolveCopyPath(root, path, { followFinal: true });
    expect(resolved.hostPath.startsWith(`${root}/`)).toBe(true);
    return resolved.inRoot.slice(1);
  });
  await expectSentinelUntouched(sentinel);
  return result;
}

async function viaMountTarget(links: readonly RawEntry[], path: string): Promise<Outcome> {
  const { root, sentinel } = await rootfsWith(links);
  const result = await outcome(async () => {
    const host = await new MountPointLedger(root).ensure(`/${path}`, 'directory');
    expect(host.startsWith(`${root}/`)).toBe(true);
    expect((await lstat(host)).isDirectory()).toBe(true);
    return host.slice(root.length + 1);
  });
  await expectSentinelUntouched(sentinel);
  return result;
}

describe('one resolver, one answer: hostile symlinks through every caller', () => {
  it('a symlink "../../etc" in a layer then a file through it: refused in layers, clamped in the rootfs', async () => {
    const link = symlinkEntry('up', '../../etc');
    expect(await viaExtraction([link, file('up/passwd', 'pwned')], 'etc/passwd')).toEqual({
      refused: 'UNSAFE_PATH',
    });
    expect(await viaModel([link, file('up/passwd', 'pwned')], 'etc/passwd')).toEqual({
      refused: 'UNSAFE_PATH',
    });
    expect(await viaCopyDestination([link], 'up/passwd')).toEqual({ landed: 'etc/passwd' });
    expect(await viaMountTarget([link], 'up/passwd')).toEqual({ landed: 'etc/passwd' });
  });

  it("an absolute symlink to /etc resolves to the root's own /etc everywhere", async () => {
    const link = symlinkEntry('conf', '/etc');
    const layer = [dir('etc/'), link, file('conf/stratum-attack', 'inside')];
    const expected = { landed: 'etc/stratum-attack' };
    expect(await viaExtraction(layer, 'etc/stratum-attack')).toEqual(expected);
    expect(await viaModel(layer, 'etc/stratum-attack')).toEqual(expected);
    expect(await viaCopyDestination([dir('etc/'), link], 'conf/stratum-attack')).toEqual(expected);
    expect(await viaMountTarget([dir('etc/'), link], 'conf/stratum-attack')).toEqual(expected);
    await expect(stat('/etc/stratum-attack')).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('a symlink loop is ELOOP (UNSAFE_PATH) everywhere', async () => {
    const links = [symlinkEntry('a', 'b'), symlinkEntry('b', 'a')];
    const expected = { refused: 'UNSAFE_PATH' };
    expect(await viaExtraction([...links, file('a/x', 'x')], 'a/x')).toEqual(expected);
    expect(await viaModel([...links, file('a/x', 'x')], 'a/x')).toEqual(expected);
    expect(await viaCopyDestination(links, 'a/x')).toEqual(expected);
    expect(await viaMountTarget(links, 'a/x')).toEqual(expected);
  });

  it('a hard link through a symlinked parent "../../etc" is refused in layers, clamped in the rootfs', async () => {
    const link = symlinkEntry('up', '../../etc');
    const layer = [link, hardlinkEntry('grab', 'up/shadow')];
    expect(await viaExtraction(layer, 'grab')).toEqual({ refused: 'UNSAFE_PATH' });
    expect(await viaModel(layer, 'grab')).toEqual({ refused: 'UNSAFE_PATH' });
    // A hard link's source is resolved like COPY's: the parent followed, the name itself not.
    const { root, sentinel } = await rootfsWith([link]);
    const source = await resolveCopyPath(root, 'up/shadow', { followFinal: false });
    expect(source.inRoot).toBe('/etc/shadow');
    expect(source.climbedOut).toBe(true);
    await expectSentinelUntouched(sentinel);
    expect(await viaMountTarget([link], 'up/shadow')).toEqual({ landed: 'etc/shadow' });
  });

  it('a hard link through an absolute symlinked parent "/etc" links the root\'s own file everywhere', async () => {
    const layer = [
      dir('etc/'),
      file('etc/shadow', 'image secret'),
      symlinkEntry('conf', '/etc'),
      hardlinkEntry('grab', 'conf/shadow'),
    ];
    const { root, sentinel } = await setup();
    await extractLayer(streamOf(buildTar(layer)), root);
    expect((await stat(join(root, 'grab'))).ino).toBe((await stat(join(root, 'etc/shadow'))).ino);
    await expectSentinelUntouched(sentinel);
    const { source } = await buildImage([{ createdBy: 'evil', rawTar: buildTar(layer) }]);
    const { fs } = await applyLayers(source);
    expect(snapshotState(fs).hardLinks.get('etc/shadow')).toEqual(['etc/shadow', 'grab']);
    const copy = await resolveCopyPath(root, 'conf/shadow', { followFinal: false });
    expect(copy.inRoot).toBe('/etc/shadow');
  });
});
