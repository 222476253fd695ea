import { readFileSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  chooseIsolation,
  holdSpareInits,
  holdSpareInitsForBuild,
} from '../../../src/executor/sandbox/index.js';
import {
  namespaceWords,
  refillSpareInit,
  spareInitArgs,
  spawnInitProcess,
} from '../../../src/executor/sandbox/spare-init.js';
import { isRoot, requireTool } from '../../helpers/system.js';
import { baseSpec, makeBusyboxRootfs, makeTempDir } from './fixtures.js';
import { capture, tools } from './run-helpers.js';

const ready = tools.every(([command, pkg]) => requireTool(command, pkg));

/** This process's children that are inits waiting for their operations (perl running init.ts). */
function waitingInits(): number[] {
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const parent = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (parent !== process.pid) continue;
      const argv = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0');
      if (argv[0] === 'perl' && argv[1] === '-e' && argv[2]?.includes('$NR_setns') === true)
        pids.push(Number(name));
    } catch {
      // exited meanwhile
    }
  }
  return pids;
}

function childrenOf(parent: number): number[] {
  return readFileSync(`/proc/${parent}/task/${parent}/children`, 'utf8')
    .split(' ')
    .filter((pid) => pid !== '')
    .map(Number);
}

async function until<T>(probe: () => T | undefined, what: string): Promise<T> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

const oneInit = (): number | undefined => {
  const pids = waitingInits();
  return pids.length === 1 ? pids[0] : undefined;
};

describe.skipIf(!ready || !isRoot)('spare inits (a RUN init started before its step)', () => {
  let dir: string;
  let rootfs: string;
  let release: (() => void) | undefined;
  beforeAll(() => {
    dir = makeTempDir('stratum-spare-');
    rootfs = makeBusyboxRootfs(dir, { full: true });
  });
  afterEach(() => {
    release?.();
    release = undefined;
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('a held spare waits; a step takes it, makes its namespaces itself, and a new spare follows', async () => {
    expect((await chooseIsolation()).mode).toBe('namespaces');
    release = holdSpareInits();
    refillSpareInit();
    const spare = await until(oneInit, 'a spare');
    // The spare sits in this process's namespaces until a step's operations come, but for the
    // PID namespace: its PID 1 is forked while it waits, and still shares the mount namespace.
    expect(readlinkSync(`/proc/${spare}/ns/mnt`)).toBe(readlinkSync('/proc/self/ns/mnt'));
    const pid1 = await until(() => childrenOf(spare)[0], "the spare's PID 1");
    expect(readlinkSync(`/proc/${pid1}/ns/pid`)).not.toBe(readlinkSync('/proc/self/ns/pid'));
    expect(readFileSync(`/proc/${pid1}/status`, 'utf8')).toMatch(/^NSpid:\s+\d+\s+1$/m);
    expect(readlinkSync(`/proc/${pid1}/ns/mnt`)).toBe(readlinkSync('/proc/self/ns/mnt'));

    const step = await capture(baseSpec(rootfs, ['sh', '-c', 'echo pid=$$; hostname']));
    expect(step.exitCode).toBe(0);
    expect(step.stdout).toContain('pid=1\n');
    expect(step.stdout).toContain('stepbox\n');
    // network none: the init made a network namespace of its own, with only lo in it.
    const none = await capture(baseSpec(rootfs, ['ls', '/sys/class/net'], { network: 'none' }));
    expect(none.stdout.split('\n').filter((name) => name !== '')).toEqual(['lo']);
    // The spare was used (it ran the first step and is gone), and another one waits.
    const next = await until(() => {
      const pid = oneInit();
      return pid !== undefined && pid !== spare ? pid : undefined;
    }, 'the next spare');
    expect(next).not.toBe(spare);
    expect(waitingInits()).not.toContain(spare);
  });

  it('the step has the isolation of the chain it replaces: its own mount, UTS, IPC and PID namespaces', async () => {
    release = holdSpareInits();
    refillSpareInit();
    await until(oneInit, 'a spare');
    const host = Object.fromEntries(
      ['mnt', 'uts', 'ipc', 'pid', 'net'].map((kind) => [kind, readlinkSync(`/proc/self/ns/${kind}`)]),
    );
    const step = await capture(
      baseSpec(rootfs, [
        'sh',
        '-c',
        'for k in mnt uts ipc pid net; do echo $k $(readlink /proc/1/ns/$k); done',
      ]),
    );
    expect(step.exitCode).toBe(0);
    const inside = Object.fromEntries(
      step.stdout
        .trim()
        .split('\n')
        .map((line) => line.split(' ') as [string, string]),
    );
    for (const kind of ['mnt', 'uts', 'ipc', 'pid']) expect(inside[kind]).not.toBe(host[kind]);
    // network host: the host's network namespace
    expect(inside['net']).toBe(host['net']);
  });

  it('a spare killed while it waits does not fail the step: a fresh init runs it', async () => {
    release = holdSpareInits();
    refillSpareInit();
    const spare = await until(oneInit, 'a spare');
    process.kill(spare, 'SIGKILL');
    await until(() => (waitingInits().includes(spare) ? undefined : true), 'the spare to end');
    const step = await capture(baseSpec(rootfs, ['echo', 'still runs']));
    expect(step).toMatchObject({ exitCode: 0, stdout: 'still runs\n' });
  });

  it("a spare that cannot make the step's namespaces says why on its status fd, and its PID 1 exits 125", async () => {
    const child = spawnInitProcess(spareInitArgs());
    let status = '';
    child.stdio[3]?.on('data', (chunk: Buffer) => (status += chunk.toString('utf8')));
    const ops = (child.stdio as readonly unknown[])[5] as NodeJS.WritableStream;
    ops.end(namespaceWords(false, join(dir, 'no-such-netns')).join('\0'));
    const code = await new Promise((resolve) => child.on('close', resolve));
    // The spare forked PID 1 of its PID namespace while it waited: that process failed, and its
    // parent reported its status.
    expect(code).toBe(0);
    expect(status).toBe(`!open ${join(dir, 'no-such-netns')}: No such file or directory\n=E125\n`);
  });

  it('letting go of the last hold ends the waiting spare; without a hold none is started', async () => {
    release = holdSpareInits();
    refillSpareInit();
    const spare = await until(oneInit, 'a spare');
    release();
    release = undefined;
    await until(() => (waitingInits().includes(spare) ? undefined : true), 'the spare to end');
    refillSpareInit();
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(waitingInits()).toEqual([]);
  });

  it("a build's hold wants a spare only while a RUN may still come; a session's hold gets one once the build lets go", async () => {
    const build = holdSpareInitsForBuild(2);
    release = build.release;
    refillSpareInit();
    await until(oneInit, 'a spare for the first RUN');
    build.runStarting();
    const first = await capture(baseSpec(rootfs, ['true']));
    expect(first.exitCode).toBe(0);
    // One RUN to come: the spare taken is replaced.
    const forSecond = await until(oneInit, 'a spare for the second RUN');
    build.runStarting();
    const second = await capture(baseSpec(rootfs, ['true']));
    expect(second.exitCode).toBe(0);
    await until(() => (waitingInits().includes(forSecond) ? undefined : true), 'the spare to be taken');
    // None to come: no spare is started for nothing.
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(waitingInits()).toEqual([]);

    // A --watch session holds too: while its build runs its last RUN, still none; once the build
    // lets go, one is started for the next build.
    const session = holdSpareInits();
    refillSpareInit();
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(waitingInits()).toEqual([]);
    build.release();
    release = session;
    await until(oneInit, 'a spare for the next build');
  });
});
