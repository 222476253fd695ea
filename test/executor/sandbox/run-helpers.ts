import { runInSandbox, type SandboxResult, type SandboxSpec } from '../../../src/executor/sandbox/index.js';

export interface Captured extends SandboxResult {
  readonly stdout: string;
  readonly stderr: string;
}

export async function capture(spec: SandboxSpec, signal?: AbortSignal): Promise<Captured> {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const result = await runInSandbox(spec, {
    ...(signal === undefined ? {} : { signal }),
    onOutput: (chunk, stream) => (stream === 'stdout' ? out : err).push(chunk),
  });
  return {
    ...result,
    stdout: Buffer.concat(out).toString('utf8'),
    stderr: Buffer.concat(err).toString('utf8'),
  };
}

export const tools: readonly (readonly [string, string])[] = [
  ['unshare', 'util-linux'],
  ['setpriv', 'util-linux'],
  ['perl', 'perl-base'],
  ['busybox', 'busybox-static'],
];
