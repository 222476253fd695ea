import { execFileSync } from 'node:child_process';
import { lutimesSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  applyCopy,
  digestSources,
  HeldContents,
  planCopy,
  type ApplyOptions,
} from '../../src/executor/context/index.js';
import { BlobStore } from '../../src/oci/blob-store.js';
import { writeLayer } from '../../src/snapshot/index.js';
import { OverlayMounts } from '../../src/snapshot/overlay.js';
import { runOverlayHelper } from '../../src/snapshot/overlay-helper.js';
import { UnpackedLayers } from '../../src/snapshot/unpacked-layers.js';
import { UNPACKED_STORES } from '../../src/util/cache-dir.js';
import { isRoot } from '../helpers/system.js';

/**
 * context/apply.ts `OfflineUpper`: a COPY on the overlay snapshotter writes its new small files
 * straight into the upperdir once the mount is gone. Each case runs the same copy twice on the
 * same lower layers, through the mount and offline, and the two layers read from the upperdirs
 * must be the same tar (times newer than an epoch clamped: a directory a file lands in gets the
 * time of the write). The lower layers are in overlay's form, with a whiteout and an opaque
 * directory as an earlier step leaves them.
 */
const OLD = 1700000000;
/** Later than every fixture time, earlier than the test run: only "now" times are clamped. */
const EPOCH = 1790000000;

let dir: string;
let layers: UnpackedLayers;
let snapshotter: OverlayMounts;
let store: BlobStore;
let bottom: string;
let top: string;
let context: string;

/** Files of a tree, then every entry's times set to OLD (whiteouts and links included). */
function tree(root: string, files: Record<string, string | { target: string } | null>): void {
  for (const [path, content] of Object.entries(files)) {
    const full = join(root, path);
    if (content === null) mkdirSync(full, { recursive: true });
    else {
      mkdirSync(join(full, '..'), { recursive: true });
      if (typeof content === 'string') writeFileSync(full, content);
      else symlinkSync(content.target, full);
    }
  }
}

function ageTree(root: string): void {
  const paths = execFileSync('find', [root, '-depth'], { encoding: 'utf8' }).split('\n').filter(Boolean);
  for (const path of paths) lutimesSync(path, OLD, OLD);
}

beforeAll(async () => {
  if (!isRoot) return;
  dir = mkdtempSync(join(tmpdir(), 'stratum-copy-offline-'));
  layers = await UnpackedLayers.open(join(dir, 'store'), UNPACKED_STORES.root.opaqueXattr);
  snapshotter = new OverlayMounts(layers);
  store = new BlobStore(join(dir, 'blobs'));
  bottom = join(dir, 'bottom');
  top = join(dir, 'top');
  tree(bottom, {
    'opt/app/keep.txt': 'kept\n',
    app: { target: '/opt/app' },
    'gone/old.txt': 'deleted by the step above\n',
    'data/a.txt': 'hidden by the opaque directory above\n',
    'etc/conf': 'old conf\n',
    'etc/other': 'untouched\n',
  });
  tree(top, { 'data/c.txt': 'from the step above\n' });
  // The step above deleted /gone and replaced /data (as overlay leaves an upperdir).
  await runOverlayHelper([
    { op: 'wh', path: join(top, 'gone') },
    { op: 'opq', path: join(top, 'data'), name: UNPACKED_STORES.root.opaqueXattr },
  ]);
  ageTree(bottom);
  ageTree(top);
  context = join(dir, 'ctx');
  tree(context, {
    'src/one.txt': '1\n',
    'src/sub/two.txt': '2\n',
    'etc/conf': 'new conf\n',
    'etc/new': 'new file\n',
  });
  ageTree(context);
  utimesSync(context, OLD, OLD);
});

afterAll(async () => {
  if (!isRoot) return;
  await layers.close();
  rmSync(dir, { recursive: true, force: true });
});

/** What a copy is given besides the plan: --chown, --chmod, and whether the key's bytes are held. */
interface CopyFlags {
  readonly chown?: ApplyOptions['chown'];
  readonly chmod?: string;
  /** Digest the plan first, keeping the bytes read (HeldContents), as a COPY step does. */
  readonly held?: boolean;
}

/** The layer a copy makes, through the mount or offline; and whether the mount was let go of. */
async function copyLayer(
  sources: readonly string[],
  dest: string,
  offline: boolean,
  flags: CopyFlags = {},
): Promise<{ listing: string; diffId: string; detached: boolean; heldLeft: number | undefined }> {
  const active = await snapshotter.prepare([bottom, top]);
  let detached = false;
  try {
    const plan = await planCopy({ sources, dest, root: { kind: 'context', dir: context } });
    const contents = flags.held === true ? new HeldContents() : undefined;
    if (contents !== undefined) await digestSources(plan, { keepContents: contents });
    await applyCopy(plan, active.merged, {
      ...(flags.chown === undefined ? {} : { chown: flags.chown }),
      ...(flags.chmod === undefined ? {} : { chmod: flags.chmod }),
      ...(contents === undefined ? {} : { contents }),
      ...(offline
        ? {
            offline: {
              upper: active.upper,
              detach: async () => {
                detached = true;
                await snapshotter.detach(active);
              },
            },
          }
        : {}),
    });
    const diff = await snapshotter.commit(active);
    const written = await writeLayer(diff, store, { sourceDateEpoch: EPOCH });
    const listing = execFileSync('tar', ['-tvzf', store.path(written.descriptor.digest)], {
      encoding: 'utf8',
    });
    return { listing, diffId: written.diffId, detached, heldLeft: contents?.size };
  } finally {
    await snapshotter.remove(active);
  }
}

/** The copy through the mount, reading every source, against the copy offline with `flags`. */
async function sameBothWays(
  sources: readonly string[],
  dest: string,
  flags: CopyFlags = {},
): Promise<string> {
  const { held: _held, ...perm } = flags;
  const online = await copyLayer(sources, dest, false, perm);
  const offline = await copyLayer(sources, dest, true, flags);
  expect(offline.detached).toBe(true);
  // Every byte held for the copy was written by it (none left over, none read twice).
  if (flags.held === true) expect(offline.heldLeft).toBe(0);
  expect(offline.listing).toBe(online.listing);
  expect(offline.diffId).toBe(online.diffId);
  return offline.listing;
}

describe.skipIf(!isRoot)('COPY onto overlay: new small files written offline into the upperdir', () => {
  it('a destination through a symlink of a lower layer lands where the link points', async () => {
    const listing = await sameBothWays(['src'], '/app/src');
    expect(listing).toMatch(/ opt\/app\/src\/sub\/two\.txt\n/);
    expect(listing).not.toMatch(/ app\/src/);
  });

  it('a destination an earlier step deleted (a whiteout below) is made anew, without the old files', async () => {
    const listing = await sameBothWays(['src'], '/gone');
    expect(listing).toMatch(/ gone\/one\.txt\n/);
    expect(listing).not.toMatch(/old\.txt/);
  });

  it('into an opaque directory of a lower layer: the hidden files stay hidden', async () => {
    const listing = await sameBothWays(['src'], '/data');
    expect(listing).toMatch(/ data\/sub\/two\.txt\n/);
    expect(listing).not.toMatch(/a\.txt/);
  });

  it('an existing file is replaced through the mount, new files beside it go offline', async () => {
    const listing = await sameBothWays(['etc'], '/etc');
    expect(listing).toMatch(/ etc\/conf\n/);
    expect(listing).toMatch(/ etc\/new\n/);
    expect(listing).not.toMatch(/other/);
  });

  it('with the bytes read for the key held (a COPY step): through a lower symlink, the same layer', async () => {
    const listing = await sameBothWays(['src'], '/app/src', { held: true });
    expect(listing).toMatch(/ opt\/app\/src\/one\.txt\n/);
  });

  it('with held bytes, over a lower file and beside it (the same diff id: the same contents)', async () => {
    const listing = await sameBothWays(['etc'], '/etc', { held: true });
    expect(listing).toMatch(/ etc\/conf\n/);
    expect(listing).toMatch(/ etc\/new\n/);
  });

  it('with held bytes, --chown and --chmod, into an existing lower directory', async () => {
    const flags = { chown: { uid: 1000, gid: 1001 }, chmod: '0640', held: true } as const;
    const listing = await sameBothWays(['src'], '/opt/app/', flags);
    expect(listing).toMatch(/-rw-r----- 1000\/1001 +2 [^\n]* opt\/app\/sub\/two\.txt\n/);
    expect(listing).toMatch(/ opt\/app\/one\.txt\n/);
    expect(listing).not.toMatch(/keep\.txt/);
  });
});
