import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runInSandbox } from '../../../src/executor/sandbox/index.js';
import { isRoot, requireTool } from '../../helpers/system.js';
import { baseSpec, makeBusyboxRootfs, makeTempDir, processesWith } from './fixtures.js';
import { capture, tools } from './run-helpers.js';

const ready = tools.every(([command, pkg]) => requireTool(command, pkg));

async function waitFor<T>(probe: () => T | undefined, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** The host pid of the step's process running `sleep <marker>` (busybox shows argv as is). */
function sleeperPid(marker: string): number | undefined {
  return processesWith(marker).find((pid) =>
    readFileSync(`/proc/${pid}/cmdline`, 'utf8').startsWith('sleep\0'),
  );
}

describe.skipIf(!ready || !isRoot)('RUN step lifecycle', () => {
  let dir: string;
  let rootfs: string;
  beforeAll(() => {
    dir = makeTempDir('stratum-life-');
    rootfs = makeBusyboxRootfs(dir, { full: true });
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it("the exit code of the command is the step's exit code", async () => {
    expect(await runInSandbox(baseSpec(rootfs, ['sh', '-c', 'exit 42']))).toEqual({ exitCode: 42 });
    expect(await runInSandbox(baseSpec(rootfs, ['true']))).toEqual({ exitCode: 0 });
  });

  it('a step whose PID 1 is killed by a signal reports the signal and 128+n', async () => {
    const marker = '3141.59';
    const running = runInSandbox(baseSpec(rootfs, ['sleep', marker]));
    const pid = await waitFor(() => sleeperPid(marker), 5000);
    process.kill(pid, 'SIGKILL');
    expect(await running).toEqual({ exitCode: 137, signal: 'SIGKILL' });
  });

  it('output is streamed as it is written, stdout and stderr apart', async () => {
    const events: { stream: string; text: string; at: number }[] = [];
    const start = Date.now();
    await runInSandbox(baseSpec(rootfs, ['sh', '-c', 'echo first; echo oops >&2; sleep 1; echo second']), {
      onOutput: (chunk, stream) => events.push({ stream, text: chunk.toString(), at: Date.now() - start }),
    });
    const first = events.find((event) => event.text.includes('first'));
    const second = events.find((event) => event.text.includes('second'));
    expect(first?.stream).toBe('stdout');
    expect(events.find((event) => event.text.includes('oops'))?.stream).toBe('stderr');
    expect(second!.at - first!.at).toBeGreaterThanOrEqual(700);
  });

  it("a step's output is whole when it ends, however much came at its very end", async () => {
    // The step ends with PID 1's status and the end of its output pipes, not the init's own exit.
    for (let round = 0; round < 3; round++) {
      const run = await capture(
        baseSpec(rootfs, [
          'sh',
          '-c',
          'head -c 1048576 /dev/zero | tr "\\0" a; head -c 65536 /dev/zero | tr "\\0" b >&2',
        ]),
      );
      expect(run.exitCode).toBe(0);
      expect(run.stdout).toBe('a'.repeat(1048576));
      expect(run.stderr).toBe('b'.repeat(65536));
    }
  });

  it('a background process does not keep the step alive and does not survive it', async () => {
    const marker = '2718.28';
    const start = Date.now();
    const run = await capture(
      baseSpec(rootfs, [
        'sh',
        '-c',
        `sleep ${marker} & sleep ${marker}1 </dev/null >/dev/null 2>&1 & echo started`,
      ]),
    );
    expect(run).toMatchObject({ exitCode: 0, stdout: 'started\n' });
    expect(Date.now() - start).toBeLessThan(5000);
    expect(processesWith(marker)).toEqual([]);
  });

  it('abort kills the whole step promptly and rejects with ABORTED', async () => {
    const marker = '1618.03';
    const controller = new AbortController();
    const running = capture(
      baseSpec(rootfs, ['sh', '-c', `sleep ${marker} & sleep ${marker}; echo never`]),
      controller.signal,
    );
    await waitFor(() => (processesWith(marker).length >= 2 ? true : undefined), 5000);
    const start = Date.now();
    controller.abort();
    await expect(running).rejects.toMatchObject({ code: 'ABORTED' });
    expect(Date.now() - start).toBeLessThan(2000);
    expect(processesWith(marker)).toEqual([]);
  });

  it('a setup that fails after the process chain started ends that chain and says why', async () => {
    // The chain (setpriv, unshare, perl) starts while the mount points are prepared; a mount
    // point that cannot be made must not leave it waiting for operations that never come.
    const before = new Set(childrenOf(process.pid));
    await expect(
      runInSandbox(
        baseSpec(rootfs, ['true'], {
          mounts: [{ kind: 'bind', source: '/etc/hostname', target: '/bin', readonly: true }],
        }),
      ),
    ).rejects.toMatchObject({
      code: 'BUILD_FAILED',
      message: expect.stringMatching(/cannot mount a file on \/bin/),
    });
    expect(childrenOf(process.pid).filter((pid) => !before.has(pid))).toEqual([]);
  });

  it('an already aborted signal runs nothing', async () => {
    await expect(
      runInSandbox(baseSpec(rootfs, ['true']), { signal: AbortSignal.abort() }),
    ).rejects.toMatchObject({
      code: 'ABORTED',
    });
  });

  it('a command that cannot be executed is a BUILD_FAILED error naming it', async () => {
    await expect(runInSandbox(baseSpec(rootfs, ['/bin/nope', 'x']))).rejects.toMatchObject({
      code: 'BUILD_FAILED',
      message: expect.stringMatching(/exec \/bin\/nope: No such file or directory/),
    });
    await expect(runInSandbox(baseSpec(rootfs, ['true'], { cwd: '/missing' }))).rejects.toMatchObject({
      code: 'BUILD_FAILED',
      message: expect.stringMatching(/chdir \/missing/),
    });
  });
});

/** The live child processes of `pid` (its threads' children). */
function childrenOf(pid: number): number[] {
  return readdirSync(`/proc/${pid}/task`).flatMap((task) =>
    readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8')
      .split(' ')
      .filter((word) => word !== '')
      .map(Number),
  );
}
