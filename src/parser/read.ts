/**
 * Reads a Dockerfile's bytes from a path or, for `-`, from standard input. A missing or
 * unreadable file is a one-line StratumError naming the path.
 */
import { readFile } from 'node:fs/promises';
import { StratumError, errnoCode } from '../errors.js';

export async function readDockerfileSource(path: string, signal?: AbortSignal): Promise<Uint8Array> {
  if (path === '-') {
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) {
      signal?.throwIfAborted();
      chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer));
    }
    return Buffer.concat(chunks);
  }
  try {
    return await readFile(path, signal === undefined ? {} : { signal });
  } catch (error) {
    const code = errnoCode(error);
    if (code === 'ENOENT') throw new StratumError('NOT_FOUND', `${path}: no such file`);
    if (code === 'EISDIR') throw new StratumError('IO', `${path}: is a directory, not a Dockerfile`);
    if (code === 'EACCES') throw new StratumError('IO', `${path}: permission denied`);
    if (code === 'ABORT_ERR') throw new StratumError('ABORTED', `reading ${path} was aborted`);
    throw new StratumError('IO', `${path}: cannot read (${code ?? String(error)})`, { cause: error });
  }
}
