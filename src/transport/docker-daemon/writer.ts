import { createReadStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { request, type IncomingMessage } from 'node:http';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { StratumError, errnoCode } from '../../errors.js';
import type { ImageSource } from '../../oci/image.js';
import { normalizeImageName } from '../../oci/reference.js';
import { makeOwnedTempDir } from '../../util/temp-dir.js';
import { writeDockerArchive } from '../docker-archive/writer.js';
import type { WriteResult } from '../layout/writer.js';

/**
 * `docker-daemon:NAME` as a destination (`build --load`): the image as a docker-archive, sent to
 * the Engine API's load endpoint (`POST /images/load`) over the daemon's Unix socket, as
 * `docker load` does; further names are added with `POST /images/{id}/tag`. No docker CLI is
 * needed. The archive is staged in a temporary file first because a tar member needs its size
 * before its bytes, and an inflated layer's size is known only once it is inflated.
 */

export interface DaemonLoadOptions {
  readonly signal?: AbortSignal;
  /** Where the archive is staged (default: the system temp directory). */
  readonly tmpDir?: string;
  /** The Engine API socket; default: DOCKER_HOST when it is unix://, else /var/run/docker.sock. */
  readonly socketPath?: string;
}

export interface DaemonLoadResult extends WriteResult {
  /** The image ID the daemon knows it by: the config digest. */
  readonly imageId: string;
}

export function dockerSocketPath(env: NodeJS.ProcessEnv = process.env): string {
  const host = env['DOCKER_HOST'];
  if (host?.startsWith('unix://') === true) return host.slice('unix://'.length);
  return '/var/run/docker.sock';
}

export async function loadIntoDockerDaemon(
  source: ImageSource,
  names: readonly string[],
  options: DaemonLoadOptions = {},
): Promise<DaemonLoadResult> {
  const socketPath = options.socketPath ?? dockerSocketPath();
  const where = `docker-daemon:${names[0] ?? source.config.digest}`;
  const dir = await makeOwnedTempDir('stratum-load-', options.tmpDir);
  try {
    const archive = join(dir, 'image.tar');
    const written = await writeDockerArchive(
      source,
      archive,
      names[0],
      options.signal ? { signal: options.signal } : {},
    );
    const response = await engineRequest(socketPath, 'POST', '/images/load?quiet=1', where, {
      body: archive,
      ...(options.signal ? { signal: options.signal } : {}),
    });
    // The load endpoint answers 200 and reports failures inside its JSON message stream.
    for (const line of response.split('\n')) {
      if (line.trim() === '') continue;
      const message = JSON.parse(line) as { error?: string; errorDetail?: { message?: string } };
      const failure = message.errorDetail?.message ?? message.error;
      if (failure !== undefined)
        throw new StratumError('IO', `${where}: the Docker daemon refused the image: ${failure}`);
    }
    const imageId = source.config.digest;
    for (const name of names.slice(1)) {
      const normalized = normalizeImageName(name);
      const colon = normalized.lastIndexOf(':');
      const query = new URLSearchParams({
        repo: normalized.slice(0, colon),
        tag: normalized.slice(colon + 1),
      });
      await engineRequest(socketPath, 'POST', `/images/${imageId}/tag?${query.toString()}`, where, {
        ...(options.signal ? { signal: options.signal } : {}),
      });
    }
    return { ...written, imageId };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** One Engine API call over the Unix socket; returns the body, or throws naming the status. */
function engineRequest(
  socketPath: string,
  method: string,
  path: string,
  where: string,
  options: { readonly body?: string; readonly signal?: AbortSignal },
): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const fail = (error: unknown): void => {
      const code = errnoCode(error);
      if (code === 'ENOENT' || code === 'ECONNREFUSED' || code === 'EACCES') {
        reject(
          new StratumError(
            'IO',
            `${where}: cannot reach the Docker daemon at ${socketPath} (${code}); is dockerd running, and may you use its socket?`,
          ),
        );
      } else if (options.signal?.aborted === true) {
        reject(new StratumError('ABORTED', `${where}: loading into the Docker daemon was interrupted`));
      } else reject(error instanceof Error ? error : new Error(String(error)));
    };
    const req = request(
      {
        socketPath,
        method,
        path: `/v1.41${path}`,
        headers: options.body === undefined ? {} : { 'Content-Type': 'application/x-tar' },
        ...(options.signal ? { signal: options.signal } : {}),
      },
      (response: IncomingMessage) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('error', fail);
        response.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          const status = response.statusCode ?? 0;
          if (status >= 200 && status < 300) resolvePromise(text);
          else {
            let detail = text.trim();
            try {
              detail = (JSON.parse(text) as { message?: string }).message ?? detail;
            } catch {
              // not JSON: keep the text
            }
            reject(new StratumError('IO', `${where}: the Docker daemon answered ${status}: ${detail}`));
          }
        });
      },
    );
    req.on('error', fail);
    if (options.body === undefined) req.end();
    else pipeline(createReadStream(options.body), req).catch(fail);
  });
}
