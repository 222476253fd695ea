import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  ensureEmulation,
  findDefinition,
  handlerName,
  parseHandler,
} from '../../../src/executor/sandbox/binfmt.js';
import { StratumError } from '../../../src/errors.js';

/**
 * The QEMU handler check. The real kernel interface is exercised by test/executor/platforms.test.ts
 * (arm64 RUN steps); here a directory laid out as /proc/sys/fs/binfmt_misc is, to reach the
 * states this machine is not in (disabled handler, no F flag) without touching the system's.
 */

const ARM64 = { os: 'linux', architecture: 'arm64' } as const;
const dir = mkdtempSync(join(tmpdir(), 'stratum-binfmt-'));
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

function fakeBinfmt(name: string, handler: string | undefined): string {
  const root = mkdtempSync(join(dir, 'proc-'));
  writeFileSync(join(root, 'status'), 'enabled\n');
  writeFileSync(join(root, 'register'), '');
  if (handler !== undefined) writeFileSync(join(root, name), handler);
  return root;
}

const REGISTERED =
  'enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POCF\noffset 0\nmagic 7f454c46\n';

describe('binfmt_misc handlers for QEMU', () => {
  it('names handlers as qemu-user-static does; STRATUM_QEMU_HANDLER overrides', () => {
    expect(handlerName(ARM64, {})).toBe('qemu-aarch64');
    expect(handlerName({ os: 'linux', architecture: 'arm', variant: 'v7' }, {})).toBe('qemu-arm');
    expect(handlerName({ os: 'linux', architecture: 'riscv64' }, {})).toBe('qemu-riscv64');
    expect(handlerName({ os: 'linux', architecture: 'wasm' }, {})).toBeUndefined();
    expect(handlerName(ARM64, { STRATUM_QEMU_HANDLER: 'qemu-other' })).toBe('qemu-other');
  });

  it('reads the kernel handler file', () => {
    expect(parseHandler(REGISTERED)).toEqual({
      enabled: true,
      interpreter: '/usr/libexec/qemu-binfmt/aarch64-binfmt-P',
      flags: 'POCF',
    });
    expect(parseHandler('disabled\ninterpreter /x\nflags: \n').enabled).toBe(false);
  });

  it('accepts an enabled handler with the F flag, and refuses one without it in one line', async () => {
    const where = 'Dockerfile:3';
    const options = { env: {}, mayRegister: false };
    await expect(
      ensureEmulation(ARM64, where, { ...options, binfmtDir: fakeBinfmt('qemu-aarch64', REGISTERED) }),
    ).resolves.toBeUndefined();
    const noF = fakeBinfmt('qemu-aarch64', REGISTERED.replace('POCF', 'POC'));
    await expect(ensureEmulation(ARM64, where, { ...options, binfmtDir: noF })).rejects.toThrow(
      /^Dockerfile:3: RUN for linux\/arm64 needs QEMU user emulation, but the binfmt_misc handler "qemu-aarch64" lacks the F flag/,
    );
    const disabled = fakeBinfmt('qemu-aarch64', REGISTERED.replace('enabled', 'disabled'));
    await expect(ensureEmulation(ARM64, where, { ...options, binfmtDir: disabled })).rejects.toThrow(
      /is disabled/,
    );
    const missing = fakeBinfmt('qemu-aarch64', undefined);
    const error = await ensureEmulation(ARM64, where, { ...options, binfmtDir: missing }).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(StratumError);
    expect((error as Error).message).not.toContain('\n');
    expect((error as Error).message).toMatch(
      /no binfmt_misc handler "qemu-aarch64" is registered.*apt-get install qemu-user-static/,
    );
  });

  it('finds the registration line in a binfmt.d directory and adds the F flag when missing', async () => {
    const defs = join(dir, 'binfmt.d');
    mkdirSync(defs, { recursive: true });
    writeFileSync(
      join(defs, 'qemu-aarch64.conf'),
      '# comment\n:qemu-aarch64:M::\\x7fELF:\\xff\\xff:/usr/bin/qemu-aarch64-static:OC\n',
    );
    expect(await findDefinition('qemu-aarch64', [join(dir, 'nowhere'), defs])).toEqual({
      line: ':qemu-aarch64:M::\\x7fELF:\\xff\\xff:/usr/bin/qemu-aarch64-static:OCF',
      file: join(defs, 'qemu-aarch64.conf'),
    });
    expect(await findDefinition('qemu-riscv64', [defs])).toBeUndefined();
  });

  it('as root, a handler that registering does not create is an error naming the definition directories', async () => {
    const missing = fakeBinfmt('qemu-aarch64', undefined);
    await expect(
      ensureEmulation(ARM64, 'Dockerfile:1', {
        binfmtDir: missing,
        definitionDirs: [join(dir, 'empty')],
        env: {},
        mayRegister: true,
      }),
    ).rejects.toThrow(/no qemu-aarch64.conf is in .*empty/);
  });
});
