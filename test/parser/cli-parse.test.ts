import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';

/** Runs the built CLI (npm test builds dist/ first) and captures its output and exit code. */
const bin = resolve(import.meta.dirname, '..', '..', 'bin', 'stratum.js');
const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'stratum-parse-cli-'));
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

async function stratum(args: string[], cwd = dir): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [bin, ...args], { cwd });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe('stratum parse', () => {
  it('prints stages and instructions of ./Dockerfile and exits 0', async () => {
    writeFileSync(
      join(dir, 'Dockerfile'),
      'ARG V=1\nFROM alpine:$V AS build\nRUN echo hi\n\nFROM scratch\nCOPY --from=build /x /y\n',
    );
    const result = await stratum(['parse']);
    expect(result).toEqual({
      code: 0,
      stderr: '',
      stdout:
        '   1  ARG V=1\n' +
        'stage 0 "build": 1 instruction after FROM\n' +
        '   2  FROM alpine:$V AS build\n' +
        '   3  RUN echo hi\n' +
        'stage 1: 1 instruction after FROM\n' +
        '   5  FROM scratch\n' +
        '   6  COPY --from=build /x /y\n',
    });
  });

  it('reports an unknown instruction with file:line:column, the line, a caret, and exit 1', async () => {
    const file = join(dir, 'bad.Dockerfile');
    writeFileSync(file, 'FROM alpine\n\n  RUNN echo hi\n');
    const result = await stratum(['parse', 'bad.Dockerfile']);
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toBe(
      'bad.Dockerfile:3:3: error: unknown instruction "RUNN" (did you mean "RUN"?)\n' +
        '      RUNN echo hi\n' +
        '      ^\n',
    );
  });

  it('--json prints the typed result', async () => {
    writeFileSync(join(dir, 'Dockerfile'), 'FROM alpine\nHEALTHCHECK --interval=30s CMD true\n');
    const result = await stratum(['parse', '--json']);
    expect(result.code).toBe(0);
    const parsed = JSON.parse(result.stdout) as { ok: boolean; stages: { instructions: unknown[] }[] };
    expect(parsed.ok).toBe(true);
    expect(parsed.stages[0]!.instructions[0]).toMatchObject({
      kind: 'healthcheck',
      test: ['CMD-SHELL', 'true'],
      interval: 30e9,
    });
  });

  it('reads standard input for -', async () => {
    const child = execFile(process.execPath, [bin, 'parse', '-'], { cwd: dir });
    child.stdin?.end('FROM busybox\nRUN true\n');
    const stdout = await new Promise<string>((done) => {
      let out = '';
      child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
      child.on('close', () => {
        done(out);
      });
    });
    expect(stdout).toContain('   2  RUN true');
  });

  it('a missing file is one line and exit 1', async () => {
    const result = await stratum(['parse', 'nope/Dockerfile']);
    expect(result).toEqual({ code: 1, stdout: '', stderr: 'stratum: nope/Dockerfile: no such file\n' });
  });

  it('a usage error exits 2', async () => {
    const result = await stratum(['parse', 'a', 'b']);
    expect(result.code).toBe(2);
  });

  it('--help describes the command and exits 0', async () => {
    const result = await stratum(['parse', '--help']);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('Usage: stratum parse [options] [file]');
    expect(result.stdout).toContain('--json');
  });
});
