import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeBusyboxRootfs, writeBaseImage } from '../helpers/base-image.js';
import { isRoot, requireTool } from '../helpers/system.js';

const BIN = resolve(import.meta.dirname, '../../bin/stratum.js');

/** Every regular file under `dir` whose bytes contain `needle` (the secrets are ASCII). */
function filesHolding(dir: string, needle: string): string[] {
  const found: string[] = [];
  const walk = (path: string): void => {
    for (const entry of readdirSync(path, { withFileTypes: true })) {
      const full = join(path, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.isFile() && readFileSync(full).includes(needle)) found.push(full);
    }
  };
  walk(dir);
  return found;
}

const modes = [
  { name: 'as root', prefix: [] as string[] },
  { name: 'rootless (as nobody)', prefix: ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'] },
];

/**
 * Secrets live in memory and on a tmpfs of the step's own mount namespace only: a build killed
 * (SIGKILL, no clean-up) while a step has them mounted leaves no copy on any disk.
 */
describe.skipIf(!isRoot || !requireTool('unshare', 'util-linux'))(
  'a killed build leaves no secret on disk',
  () => {
    let dir: string;
    beforeAll(() => {
      dir = mkdtempSync(join(tmpdir(), 'stratum-secret-kill-'));
      chmodSync(dir, 0o777);
      const rootfs = join(dir, 'base-rootfs');
      mkdirSync(rootfs);
      makeBusyboxRootfs(rootfs);
      writeBaseImage(rootfs, join(dir, 'base'), 'stratum-test/busybox:1');
      execFileSync('chmod', ['-R', 'a+rX', dir]);
    });
    afterAll(() => {
      rmSync(dir, { recursive: true, force: true });
    });

    for (const mode of modes) {
      it(`${mode.name}: env= and src= secrets mounted by a running step are nowhere on disk after SIGKILL`, async () => {
        const work = join(dir, mode.name.replace(/\W+/g, '-'));
        mkdirSync(join(work, 'ctx'), { recursive: true });
        const fromEnv = `ENV-SECRET-${randomBytes(12).toString('hex')}`;
        const fromFile = `FILE-SECRET-${randomBytes(12).toString('hex')}`;
        // The src= file itself lives outside the directories searched.
        const secretFile = join(dir, `secret-${mode.name.length}.txt`);
        writeFileSync(secretFile, fromFile);
        chmodSync(secretFile, 0o644);
        writeFileSync(
          join(work, 'ctx/Dockerfile'),
          [
            `FROM oci:${join(dir, 'base/layout')}:1`,
            'RUN --mount=type=secret,id=tok --mount=type=secret,id=file,uid=0 cat /run/secrets/tok /run/secrets/file > /dev/null && echo mounted && sleep 60',
            '',
          ].join('\n'),
        );
        const state = join(work, 'state');
        mkdirSync(state);
        chmodSync(work, 0o777);
        chmodSync(state, 0o777);
        const argv = [
          ...mode.prefix,
          process.execPath,
          BIN,
          'build',
          join(work, 'ctx'),
          '--network',
          'none',
          '--progress',
          'plain',
          '--secret',
          'id=tok,env=TOKEN',
          '--secret',
          `id=file,src=${secretFile}`,
          '-o',
          `oci:${join(state, 'out')}:x`,
        ];
        const child = spawn(argv[0]!, argv.slice(1), {
          env: {
            ...process.env,
            TOKEN: fromEnv,
            HOME: state,
            TMPDIR: state,
            XDG_RUNTIME_DIR: state,
            STRATUM_CACHE_DIR: join(state, 'cache'),
            STRATUM_DATA_DIR: join(state, 'data'),
          },
          stdio: ['ignore', 'ignore', 'pipe'],
        });
        let stderr = '';
        await new Promise<void>((done, fail) => {
          const timer = setTimeout(() => {
            fail(new Error(`the step never started: ${stderr}`));
          }, 60_000);
          child.stderr.on('data', (chunk: Buffer) => {
            stderr += chunk.toString('utf8');
            if (stderr.includes('mounted')) {
              clearTimeout(timer);
              done();
            }
          });
        });
        const closed = new Promise((done) => child.once('close', done));
        // The whole tree at once, as an OOM kill or a node eviction would: nothing gets to clean up.
        spawnSync('pkill', ['-KILL', '-f', `${work}/ctx`]);
        child.kill('SIGKILL');
        await closed;
        // The step dies with stratum (parent-death signal); wait for its sleep to be gone.
        for (let i = 0; i < 100 && spawnSync('pgrep', ['-f', 'sleep 60']).status === 0; i++) {
          await new Promise((done) => setTimeout(done, 50));
        }
        expect(filesHolding(state, fromEnv)).toEqual([]);
        expect(filesHolding(state, fromFile)).toEqual([]);
        expect(filesHolding('/dev/shm', fromEnv)).toEqual([]);
        // What the killed build left (its overlay mounts as root) goes at the next cache command.
        const prune = spawnSync(process.execPath, [BIN, 'cache', 'prune'], {
          encoding: 'utf8',
          env: {
            ...process.env,
            STRATUM_CACHE_DIR: join(state, 'cache'),
            STRATUM_DATA_DIR: join(state, 'data'),
          },
        });
        expect(prune.status, prune.stderr).toBe(0);
      }, 120_000);
    }
  },
);
