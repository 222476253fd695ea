import { execFile } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { StratumError } from '../../errors.js';
import type { ImageSource, ReadImageOptions } from '../../oci/image.js';
import { makeOwnedTempDir } from '../../util/temp-dir.js';
import { openDockerArchive } from '../docker-archive/reader.js';

function run(command: string, args: readonly string[], signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(
      command,
      args,
      { ...(signal ? { signal } : {}), maxBuffer: 4 * 1024 * 1024 },
      (error, _stdout, stderr) => {
        if (error === null) resolve();
        else reject(Object.assign(new Error(error.message), { code: error.code, stderr }));
      },
    );
  });
}

/** `docker-daemon:NAME`: `docker save NAME` into a temporary docker-archive, removed on close(). */
export async function openFromDaemon(name: string, options: ReadImageOptions): Promise<ImageSource> {
  const dir = await makeOwnedTempDir('stratum-daemon-', options.tmpDir);
  const cleanup = (): Promise<void> => rm(dir, { recursive: true, force: true });
  try {
    const archive = join(dir, 'image.tar');
    try {
      await run('docker', ['save', '-o', archive, name], options.signal);
    } catch (error) {
      const code = error instanceof Error && 'code' in error ? error.code : undefined;
      if (code === 'ENOENT') {
        throw new StratumError(
          'UNSUPPORTED',
          `docker-daemon:${name}: no docker command on PATH to read the image with`,
        );
      }
      const stderr =
        error instanceof Error && 'stderr' in error ? String(error.stderr).trim().split('\n').pop() : '';
      throw new StratumError(
        'NOT_FOUND',
        `docker-daemon:${name}: docker save failed: ${stderr ?? 'unknown error'}`,
      );
    }
    const source = await openDockerArchive(archive, undefined, options);
    const close = async (): Promise<void> => {
      await source.close();
      await cleanup();
    };
    return {
      ...source,
      name: `docker-daemon:${name}`,
      close,
      openBlob: (descriptor, signal) => source.openBlob(descriptor, signal),
    };
  } catch (error) {
    await cleanup();
    throw error;
  }
}
