import { createWriteStream } from 'node:fs';
import { chmod, lstat, mkdir, rename, rm, rmdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Writable } from 'node:stream';
import { StratumError, errnoCode } from '../errors.js';
import { fsPath, listDir } from '../util/file-names.js';
import { inUserNamespace } from '../util/user-namespace.js';
import type { ImageSource } from '../oci/image.js';
import { openLayerTar } from '../oci/layer.js';
import { writeOutput } from '../util/atomic-file.js';
import { planOutput } from '../util/output-path.js';
import { makeOwnedStagingDir, makeOwnedTempDir } from '../util/temp-dir.js';
import { diffSnapshots, emptySnapshot, extractLayer, layerTarStream, scanTree } from '../snapshot/index.js';

/**
 * The final filesystem of a build without an image around it, as BuildKit's `local` and `tar`
 * exporters give it: every layer applied in order (whiteouts remove, nothing of them remains).
 * Both stage the tree in a temporary directory first, so a failure leaves the destination as
 * it was; both staging directories are owned (oci/temp-dir.ts), so what a killed export left is
 * removed by the next build or `cache prune`.
 */

export interface FilesystemExportOptions {
  readonly signal?: AbortSignal;
  /** The temporary root: the tar export stages there; the local export records its staging there. */
  readonly tmpDir?: string;
  readonly onWarning?: (message: string) => void;
}

async function applyLayers(
  image: ImageSource,
  dir: string,
  options: FilesystemExportOptions,
  giveOwners: boolean,
): Promise<void> {
  const diffIds = image.config.value.rootfs.diff_ids;
  for (const [index, layer] of image.manifest.value.layers.entries()) {
    options.signal?.throwIfAborted();
    const diffId = diffIds[index];
    const tar = await openLayerTar(image, layer, {
      ...(diffId === undefined ? {} : { diffId }),
      ...(options.signal ? { signal: options.signal } : {}),
    });
    await extractLayer(tar, dir, {
      layerName: layer.digest,
      giveOwners,
      ...(options.signal ? { signal: options.signal } : {}),
      ...(options.onWarning ? { onWarning: options.onWarning } : {}),
    });
  }
}

/**
 * `type=local,dest=DIR`: DIR (created if missing) receives the filesystem; what DIR held
 * already stays unless the image has an entry of the same name, which replaces it (BuildKit's
 * local exporter also writes into an existing directory).
 */
export async function exportFilesystemToDirectory(
  image: ImageSource,
  dest: string,
  options: FilesystemExportOptions = {},
): Promise<void> {
  // A symlink or a file where the directory should be is refused (oci/output-path.ts).
  await planOutput(dest, 'directory', `type=local,dest=${dest}`);
  await mkdir(dirname(dest), { recursive: true });
  // Beside the destination, so that the entries are renamed into place on its filesystem.
  const staging = await makeOwnedStagingDir(dirname(dest), options.tmpDir);
  try {
    await chmod(staging.dir, 0o755);
    // Rootless, the files are the caller's (BuildKit's local exporter leaves them so): owners of
    // the namespace's range would be host ids the caller could not even remove.
    await applyLayers(image, staging.dir, options, process.getuid?.() === 0 && !inUserNamespace());
    await mkdir(dest, { recursive: true });
    await mergeInto(staging.dir, dest);
  } finally {
    await staging.remove();
  }
}

/** Moves every entry of `from` into `to`: directories merge, anything else replaces. */
async function mergeInto(from: string, to: string): Promise<void> {
  for (const name of await listDir(from)) {
    const source = join(from, name);
    const target = join(to, name);
    const [sourceStat, targetStat] = await Promise.all([
      lstat(fsPath(source)),
      lstat(fsPath(target)).catch((error: unknown) => {
        if (errnoCode(error) === 'ENOENT') return undefined;
        throw error;
      }),
    ]);
    if (sourceStat.isDirectory() && targetStat?.isDirectory() === true) {
      await mergeInto(source, target);
      await rmdir(fsPath(source));
      continue;
    }
    if (targetStat !== undefined) await rm(fsPath(target), { recursive: true, force: true });
    await rename(fsPath(source), fsPath(target));
  }
}

/**
 * `type=tar,dest=FILE` or `dest=-` (then `stdout`): the filesystem as one uncompressed tar,
 * entries sorted, owners numeric, as the image's layers recorded them.
 */
export async function exportFilesystemAsTar(
  image: ImageSource,
  file: string | undefined,
  stdout: Writable,
  options: FilesystemExportOptions = {},
): Promise<void> {
  if (file === undefined && options.tmpDir === undefined)
    throw new StratumError('USAGE', 'a tar export to standard output needs a tmpDir');
  const staging = await makeOwnedTempDir('stratum-export-', options.tmpDir);
  try {
    await chmod(staging, 0o755);
    // The tar records the owners (rootless too: the namespace's ids are the image's).
    await applyLayers(image, staging, options, true);
    const signalOption = options.signal ? { signal: options.signal } : {};
    const tree = await scanTree(staging, signalOption);
    const diff = await diffSnapshots(emptySnapshot(staging), tree, staging);
    if (file === undefined) {
      await pipeline(layerTarStream(diff, signalOption), stdout, { end: false });
    } else {
      await mkdir(dirname(file), { recursive: true });
      await writeOutput(
        file,
        (temporary) =>
          pipeline(layerTarStream(diff, signalOption), createWriteStream(temporary, { flags: 'wx' })),
        {
          label: `type=tar,dest=${file}`,
          ...(options.tmpDir === undefined ? {} : { tmpDir: options.tmpDir }),
        },
      );
    }
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}
