import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { FlushJournal, readBootId } from '../../src/snapshot/flush-journal.js';
import { UnpackedRootfsCache } from '../../src/snapshot/kept-rootfs.js';
import { OverlayMounts } from '../../src/snapshot/overlay.js';
import { runOverlayHelper } from '../../src/snapshot/overlay-helper.js';
import { UnpackedLayers, mountsBelow } from '../../src/snapshot/unpacked-layers.js';
import { inCI, isRoot } from '../helpers/system.js';
import { removeAll, tempDir } from './helpers.js';

/**
 * The flush journal: unpacked layers and kept root filesystems are placed without waiting for
 * the disk, written down per boot, and what a crashed boot placed unflushed is removed by the
 * next build instead of being mounted torn.
 */

const made: string[] = [];
afterEach(async () => {
  await removeAll(...made.splice(0));
});

async function dir(): Promise<string> {
  const path = await tempDir('stratum-flush-');
  made.push(path);
  return path;
}

const EARLIER_BOOT = '00000000-1111-2222-3333-444444444444';
const hex = (char: string): string => char.repeat(64);
const uptimeNow = (): number => Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]);

describe('FlushJournal', () => {
  it('writes each placement down under this boot, and never reports this boot as earlier', async () => {
    const journalDir = await dir();
    const journal = (await FlushJournal.open(journalDir))!;
    expect(journal.bootId).toBe(await readBootId());
    await journal.record(hex('a'));
    await journal.record(hex('b'));
    const lines = readFileSync(join(journalDir, journal.bootId), 'utf8').trim().split('\n');
    expect(lines.map((line) => line.split(' ')[1])).toEqual([hex('a'), hex('b')]);
    for (const line of lines) expect(Number(line.split(' ')[0])).toBeGreaterThan(0);
    expect(await journal.unflushedFromEarlierBoots()).toEqual([]);
  });

  it("reports an earlier boot's names that its last flush did not cover, torn lines too", async () => {
    const journalDir = await dir();
    writeFileSync(
      join(journalDir, EARLIER_BOOT),
      `100.00 ${hex('1')}\n200.50 ${hex('2')}\n300.00 ${hex('3')}\ngarbage\n-- ${hex('4')}\n`,
    );
    writeFileSync(join(journalDir, `${EARLIER_BOOT}.flushed`), '200.50\n');
    writeFileSync(join(journalDir, `${EARLIER_BOOT}.flushed.tmp.4242`), '3'); // a flush killed half way
    const journal = (await FlushJournal.open(journalDir))!;
    const [earlier, ...more] = await journal.unflushedFromEarlierBoots();
    expect(more).toEqual([]);
    expect(earlier!.bootId).toBe(EARLIER_BOOT);
    // 100 was on disk before the flush that started at 200.50; a line at 200.50 may not be.
    expect(earlier!.names.sort()).toEqual([hex('2'), hex('3'), hex('4')]);
    await journal.forget(EARLIER_BOOT);
    expect(readdirSync(journalDir)).toEqual([]);
  });

  it('without a flush mark, every name of the earlier boot goes', async () => {
    const journalDir = await dir();
    writeFileSync(join(journalDir, EARLIER_BOOT), `1.00 ${hex('1')}\n`);
    const journal = (await FlushJournal.open(journalDir))!;
    expect((await journal.unflushedFromEarlierBoots())[0]!.names).toEqual([hex('1')]);
  });

  it('wants a flush of lines no flush covers, at most once per interval; the helper flushes and marks when it started', async () => {
    const journalDir = await dir();
    const journal = (await FlushJournal.open(journalDir))!;
    expect(await journal.wantsFlush(0)).toBe(false); // nothing written yet
    await journal.record(hex('c'));
    const recordedAt = Number(readFileSync(join(journalDir, journal.bootId), 'utf8').split(' ')[0]);
    expect(await journal.wantsFlush(60_000)).toBe(true); // never flushed
    const before = uptimeNow();
    await runOverlayHelper([{ op: 'flushmark', path: journalDir, mark: journal.flushedMark }]);
    const deadline = Date.now() + 20_000;
    while (!existsSync(journal.flushedMark) && Date.now() < deadline)
      await new Promise((done) => setTimeout(done, 20));
    const flushedAt = Number(readFileSync(journal.flushedMark, 'utf8'));
    expect(flushedAt).toBeGreaterThanOrEqual(Math.floor(before * 100) / 100 - 0.01);
    expect(flushedAt).toBeGreaterThanOrEqual(recordedAt);
    // Covered now: no flush wanted until something new is written, and then once the interval is over.
    expect(await journal.wantsFlush(0)).toBe(false);
    await new Promise((done) => setTimeout(done, 20));
    await journal.record(hex('d'));
    expect(await journal.wantsFlush(60_000)).toBe(false);
    expect(await journal.wantsFlush(0)).toBe(true);
  });
});

describe('UnpackedLayers after a crash', () => {
  it('removes what an earlier boot placed unflushed, keeps the rest, and re-extracts on demand', async () => {
    const root = await dir();
    mkdirSync(join(root, 'layers', hex('d')), { recursive: true });
    writeFileSync(join(root, 'layers', hex('d'), 'torn'), ''); // zero bytes under a good name
    mkdirSync(join(root, 'layers', hex('e')), { recursive: true });
    writeFileSync(join(root, 'layers', hex('e'), 'kept'), 'flushed before the crash\n');
    mkdirSync(join(root, 'unflushed'));
    writeFileSync(join(root, 'unflushed', EARLIER_BOOT), `5.00 ${hex('d')}\n`);
    const layers = await UnpackedLayers.open(root, 'user.overlay.opaque');
    try {
      expect(readdirSync(join(root, 'layers'))).toEqual([hex('e')]);
      expect(readdirSync(join(root, 'unflushed'))).toEqual([]);
      expect(layers.placesUnflushed).toBe(true);
      // The layer is extracted again from its tar when a build needs it, and written down first.
      const tar = execFileSync('tar', ['-C', await makeTree({ torn: 'whole again\n' }), '-cf', '-', '.']);
      const path = await layers.ensure(`sha256:${hex('d')}`, () => Readable.from([tar]));
      expect(readFileSync(join(path, 'torn'), 'utf8')).toBe('whole again\n');
      const journal = readFileSync(join(root, 'unflushed', (await readBootId())!), 'utf8');
      expect(journal).toContain(` ${hex('d')}\n`);
    } finally {
      await layers.close();
    }
  });

  it('a build ending with placements no flush covers starts one in the background', async () => {
    const root = await dir();
    const layers = await UnpackedLayers.open(root, 'user.overlay.opaque');
    const tar = execFileSync('tar', ['-C', await makeTree({ g: 'placed\n' }), '-cf', '-', '.']);
    await layers.ensure(`sha256:${hex('a')}`, () => Readable.from([tar]));
    const bootId = (await readBootId())!;
    await layers.close();
    const mark = join(root, 'unflushed', `${bootId}.flushed`);
    const deadline = Date.now() + 20_000;
    while (!existsSync(mark) && Date.now() < deadline) await new Promise((done) => setTimeout(done, 20));
    const placedAt = Number(readFileSync(join(root, 'unflushed', bootId), 'utf8').split(' ')[0]);
    expect(Number(readFileSync(mark, 'utf8'))).toBeGreaterThanOrEqual(placedAt);
  });

  it('keeps a layer that a live build of this boot leases', async () => {
    const root = await dir();
    const first = await UnpackedLayers.open(root, 'user.overlay.opaque');
    try {
      const tar = execFileSync('tar', ['-C', await makeTree({ f: 'new\n' }), '-cf', '-', '.']);
      await first.ensure(`sha256:${hex('f')}`, () => Readable.from([tar]));
      // An earlier boot's journal names the same DiffID: this build extracted it after the crash.
      writeFileSync(join(root, 'unflushed', EARLIER_BOOT), `5.00 ${hex('f')}\n`);
      const second = await UnpackedLayers.open(root, 'user.overlay.opaque');
      await second.close();
      expect(readFileSync(join(root, 'layers', hex('f'), 'f'), 'utf8')).toBe('new\n');
    } finally {
      await first.close();
    }
  });

  it.runIf(isRoot || inCI)('mounts the writable overlay volatile: a commit waits for no flush', async () => {
    const root = await dir();
    const layers = await UnpackedLayers.open(root, 'trusted.overlay.opaque');
    const mounts = new OverlayMounts(layers);
    try {
      const active = await mounts.prepare([]);
      const line = readFileSync('/proc/self/mountinfo', 'utf8')
        .split('\n')
        .find((entry) => entry.split(' ')[4] === active.merged);
      expect(line).toMatch(/[ ,](fsync=)?volatile(,|$)/);
      await mounts.remove(active);
      expect(await mountsBelow(root)).toEqual([]);
    } finally {
      await layers.close();
    }
  });
});

describe('kept root filesystems after a crash', () => {
  const layer = { layer: { diffId: `sha256:${hex('9')}`, digest: `sha256:${hex('8')}`, size: 1 } };

  it('claims one kept in this boot', async () => {
    const keptDir = await dir();
    const kept = new UnpackedRootfsCache(join(keptDir, 'rootfs'));
    await kept.keep(await makeTree({ 'etc/os': 'kept\n' }), [layer] as never);
    const target = join(await dir(), 'claimed');
    expect(await kept.claim([layer.layer] as never, target)).toHaveLength(1);
    expect(readFileSync(join(target, 'etc/os'), 'utf8')).toBe('kept\n');
  });

  it('removes, never claims, one kept in an earlier boot (or with no boot recorded)', async () => {
    const keptDir = join(await dir(), 'rootfs');
    const kept = new UnpackedRootfsCache(keptDir);
    await kept.keep(await makeTree({ 'etc/os': 'torn?\n' }), [layer] as never);
    const [name] = readdirSync(keptDir).filter((entry) => !entry.endsWith('.json'));
    const sidecar = join(keptDir, `${name}.json`);
    writeFileSync(sidecar, JSON.stringify({ bootId: EARLIER_BOOT, held: [layer] }));
    expect(await kept.claim([layer.layer] as never, join(await dir(), 'claimed'))).toEqual([]);
    expect(readdirSync(keptDir)).toEqual([]);
    // An earlier version's sidecar (the layers alone) is not trusted either.
    await kept.keep(await makeTree({ 'etc/os': 'old\n' }), [layer] as never);
    writeFileSync(sidecar, JSON.stringify([layer]));
    expect(await kept.claim([layer.layer] as never, join(await dir(), 'claimed'))).toEqual([]);
    expect(readdirSync(keptDir)).toEqual([]);
  });
});

async function makeTree(files: Record<string, string>): Promise<string> {
  const root = await dir();
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(join(root, path, '..'), { recursive: true });
    writeFileSync(join(root, path), content);
  }
  return root;
}
