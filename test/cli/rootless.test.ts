import { execFileSync, spawn, spawnSync } from 'node:child_process';
import {
  appendFileSync,
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyLayers } from '../../src/analyze/apply.js';
import { openImage } from '../../src/images/images.js';
import { openOciLayout } from '../../src/transport/layout/reader.js';
import { ImageStore } from '../../src/transport/store/store.js';
import { makeBusyboxRootfs, makeParityBaseRootfs, writeBaseImage } from '../helpers/base-image.js';
import { imageConfig, layerListings } from '../helpers/layout.js';
import { inCI, isRoot, holdSubordinateIdsLock, requireTool } from '../helpers/system.js';

const BIN = resolve(import.meta.dirname, '../../bin/stratum.js');

/** Unprivileged user namespaces: what a rootless build stands on. */
function userNamespacesWork(): boolean {
  const probe = spawnSync('setpriv', [
    '--reuid=65534',
    '--regid=65534',
    '--clear-groups',
    'unshare',
    '--user',
    '--map-root-user',
    'true',
  ]);
  if (probe.status === 0) return true;
  if (inCI)
    throw new Error(
      'CI is set but unprivileged user namespaces do not work here (sysctl user.max_user_namespaces)',
    );
  console.warn('skipping rootless build test: unprivileged user namespaces are not available');
  return false;
}

/** Runs as root to set up, then builds as nobody (uid 65534): the rootless path end to end. */
describe.skipIf(!isRoot || !userNamespacesWork())('rootless build (as nobody, in a user namespace)', () => {
  // /etc/subuid and /etc/subgid are the machine's: one such test file at a time (see the helper).
  holdSubordinateIdsLock();
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'stratum-rootless-'));
    chmodSync(dir, 0o777);
    const rootfs = join(dir, 'base-rootfs');
    mkdirSync(rootfs);
    makeBusyboxRootfs(rootfs);
    writeBaseImage(rootfs, join(dir, 'base'), 'stratum-test/busybox:1');
    mkdirSync(join(dir, 'ctx'));
    writeFileSync(
      join(dir, 'ctx/Dockerfile'),
      `FROM oci:${join(dir, 'base/layout')}:1\nRUN echo rootless > /made-by-run\nCOPY Dockerfile /copied\n`,
    );
    execFileSync('chmod', ['-R', 'a+rX', dir]);
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  /** The command line and environment that run stratum as nobody, with its caches under the test dir. */
  function nobody(args: readonly string[], cacheDir = join(dir, 'cache'), env: NodeJS.ProcessEnv = {}) {
    return {
      command: '/usr/bin/setpriv',
      args: ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, BIN, ...args],
      env: {
        ...process.env,
        HOME: dir,
        TMPDIR: dir,
        STRATUM_DATA_DIR: join(dir, 'data'),
        STRATUM_CACHE_DIR: cacheDir,
        ...env,
      },
    };
  }

  /** stratum run as nobody, to its end. */
  function asNobody(args: readonly string[], cacheDir?: string, env?: NodeJS.ProcessEnv) {
    const run = nobody(args, cacheDir, env);
    return spawnSync(run.command, run.args, { env: run.env, encoding: 'utf8' });
  }

  /** A command run to its end without blocking the event loop (to run two side by side). */
  function runAsync(run: { command: string; args: readonly string[]; env: NodeJS.ProcessEnv }) {
    return new Promise<{ status: number | null; stderr: string }>((done) => {
      const child = spawn(run.command, run.args, { env: run.env, stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
      child.once('close', (status) => {
        done({ status, stderr });
      });
    });
  }

  function buildAsNobody(
    context: string,
    out: string,
    extra: readonly string[] = [],
    cacheDir?: string,
    env?: NodeJS.ProcessEnv,
  ) {
    const args = ['build', context, '--network', 'none', '--progress', 'plain', '--output', `oci:${out}:x`];
    return asNobody([...args, ...extra], cacheDir, env);
  }

  it('RUN and COPY work without root, and what they make is root-owned in the layers', async () => {
    const out = join(dir, 'out');
    const built = buildAsNobody(join(dir, 'ctx'), out);
    expect(built.status, built.stderr).toBe(0);
    // The overlay snapshotter, in a user namespace (kernel >= 5.11), not the scan fallback.
    expect(built.stderr).toContain('snapshotter: overlay (available, rootless (user namespace))');
    const image = await openImage(`oci:${out}:x`);
    try {
      const applied = await applyLayers(image);
      for (const path of ['made-by-run', 'copied']) {
        const entry = applied.fs.nodes.get(path)?.entry;
        expect(entry?.type, path).toBe('file');
        expect([entry?.uid, entry?.gid], path).toEqual([0, 0]);
      }
    } finally {
      await image.close();
    }
  });

  it("the first process does not load the CLI: the code cache a rootless build leaves is the namespaced process's", () => {
    // bin/stratum.js decides the re-exec from dist/bundle/rootless.cjs. When the first process
    // loaded the whole CLI, it wrote its cache (the few functions it ran) after the namespaced
    // build had written the whole build's, and every later build ran from that smaller one.
    const cacheFiles = (home: string): string[] =>
      readdirSync(join(home, 'stratum-code-cache')).filter((name) => name.endsWith('-build.bin'));
    const sizeAfterOneBuild = (
      home: string,
      build: () => { status: number | null; stderr: string },
    ): number => {
      mkdirSync(home, { mode: 0o777 });
      chmodSync(home, 0o777);
      const built = build();
      expect(built.status, built.stderr).toBe(0);
      const files = cacheFiles(home);
      expect(files).toHaveLength(1);
      return statSync(join(home, 'stratum-code-cache', files[0]!)).size;
    };
    const args = (out: string): string[] => [
      'build',
      join(dir, 'ctx'),
      '--network',
      'none',
      '--output',
      `oci:${out}:x`,
    ];
    const rootless = sizeAfterOneBuild(join(dir, 'xdg-nobody'), () =>
      asNobody(args(join(dir, 'out-cc-nobody')), undefined, { XDG_CACHE_HOME: join(dir, 'xdg-nobody') }),
    );
    const asRoot = sizeAfterOneBuild(join(dir, 'xdg-root'), () =>
      spawnSync(process.execPath, [BIN, ...args(join(dir, 'out-cc-root'))], {
        env: {
          ...process.env,
          XDG_CACHE_HOME: join(dir, 'xdg-root'),
          STRATUM_CACHE_DIR: join(dir, 'cache-cc-root'),
        },
        encoding: 'utf8',
      }),
    );
    // The same build compiles about the same functions (the first process alone: ~1/3).
    expect(rootless / asRoot).toBeGreaterThan(0.8);
  });

  it('on overlay, deletions and replaced directories reach the layers as the scan snapshotter makes them', () => {
    const ctx = join(dir, 'ctx-wh');
    mkdirSync(ctx);
    writeFileSync(join(ctx, 'f'), 'one\n');
    writeFileSync(
      join(ctx, 'Dockerfile'),
      [
        `FROM oci:${join(dir, 'base/layout')}:1 AS tools`,
        'RUN mkdir -p /data/sub && echo a > /data/a && echo b > /data/sub/b && echo keep > /keep',
        'FROM tools',
        'RUN rm /data/a && rm -rf /data/sub && mkdir /data/sub && echo c > /data/sub/c && chmod 700 /keep',
        'RUN --mount=type=bind,from=tools,source=/data,target=/mnt cat /mnt/sub/b > /data/copied',
        'COPY f /data/f',
        '',
      ].join('\n'),
    );
    execFileSync('chmod', ['-R', 'a+rX', ctx]);
    const overlay = buildAsNobody(ctx, join(dir, 'out-wh-overlay'));
    expect(overlay.status, overlay.stderr).toBe(0);
    expect(overlay.stderr).toContain('snapshotter: overlay');
    const scan = buildAsNobody(
      ctx,
      join(dir, 'out-wh-scan'),
      ['--snapshotter', 'scan'],
      join(dir, 'cache-scan'),
    );
    expect(scan.status, scan.stderr).toBe(0);
    const fromOverlay = layerListings(join(dir, 'out-wh-overlay'));
    expect(fromOverlay.slice(1)).toEqual(layerListings(join(dir, 'out-wh-scan')).slice(1));
    const deletions = fromOverlay[2]!.join('\n');
    expect(deletions).toContain('data/.wh.a');
    expect(deletions).toContain('data/sub/.wh.b');
    expect(deletions).toMatch(/^-rwx------ 0\/0 5 keep$/m);
    expect(fromOverlay[3]!.join('\n')).toMatch(/^-rw-r--r-- 0\/0 2 data\/copied$/m);
  });

  it('a rebuild after an edit reuses the cache on overlay; nothing stays mounted or running; prune frees the layers', () => {
    const ctx = join(dir, 'ctx-wh');
    writeFileSync(join(ctx, 'f'), 'two\n');
    const rebuilt = buildAsNobody(ctx, join(dir, 'out-wh-2'));
    expect(rebuilt.status, rebuilt.stderr).toBe(0);
    expect(rebuilt.stderr.match(/CACHED/g)?.length).toBe(3);
    expect(layerListings(join(dir, 'out-wh-2'))[4]).toEqual([
      'drwxr-xr-x 0/0 0 data/',
      '-rw-r--r-- 0/0 4 data/f',
    ]);
    // The mounts lived in the build's own mount namespace and went with it.
    const cacheDir = join(dir, 'cache');
    expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(cacheDir);
    const left = spawnSync('pgrep', ['-u', '65534', '-f', cacheDir], { encoding: 'utf8' });
    expect(left.stdout.trim()).toBe('');
    const store = join(cacheDir, 'overlay-rootless/layers');
    expect(readdirSync(store).length).toBeGreaterThan(0);
    const pruned = asNobody(['cache', 'prune', '--cache-dir', cacheDir]);
    expect(pruned.status, pruned.stderr).toBe(0);
    expect(readdirSync(store)).toEqual([]);
    expect(readdirSync(join(cacheDir, 'overlay-rootless/sessions'))).toEqual([]);
  });

  it('RUN --mount of every type works without root, on overlay (a cache mount failed with EPERM before)', () => {
    const ctx = join(dir, 'ctx-mounts');
    mkdirSync(join(ctx, 'src'), { recursive: true });
    writeFileSync(join(ctx, 'src', 'a'), 'a');
    writeFileSync(join(dir, 'secret.txt'), 's3cret');
    writeFileSync(
      join(ctx, 'Dockerfile'),
      [
        `FROM oci:${join(dir, 'base/layout')}:1`,
        'RUN --mount=type=cache,target=/cache echo x >> /cache/log && wc -l < /cache/log > /cached',
        'RUN --mount=type=secret,id=s cat /run/secrets/s > /secret-seen',
        'RUN --mount=type=bind,source=src,target=/src cat /src/a > /bound',
        'RUN --mount=type=tmpfs,target=/t touch /t/x && ls /t > /tmpfs-seen',
        '',
      ].join('\n'),
    );
    execFileSync('chmod', ['-R', 'a+rX', ctx, join(dir, 'secret.txt')]);
    const built = buildAsNobody(ctx, join(dir, 'out-mounts'), [
      '--secret',
      `id=s,src=${join(dir, 'secret.txt')}`,
    ]);
    expect(built.status, built.stderr).toBe(0);
    expect(built.stderr).toContain('snapshotter: overlay');
    const files = layerListings(join(dir, 'out-mounts'))
      .slice(1)
      .flat()
      .filter((line) => line.startsWith('-'));
    expect(files).toEqual([
      '-rw-r--r-- 0/0 2 cached',
      '-rw-r--r-- 0/0 6 secret-seen',
      '-rw-r--r-- 0/0 1 bound',
      '-rw-r--r-- 0/0 2 tmpfs-seen',
    ]);
  });

  it('COPY of a directory works without root; COPY --chown to an id no range maps is refused, naming uidmap', () => {
    const ctx = join(dir, 'ctx-copy-dir');
    mkdirSync(join(ctx, 'src'), { recursive: true });
    for (const name of ['a', 'b', 'c']) writeFileSync(join(ctx, 'src', name), name);
    writeFileSync(join(ctx, 'Dockerfile'), `FROM oci:${join(dir, 'base/layout')}:1\nCOPY src /app/\n`);
    execFileSync('chmod', ['-R', 'a+rX', ctx]);
    const copied = buildAsNobody(ctx, join(dir, 'out-copy-dir'));
    expect(copied.status, copied.stderr).toBe(0);
    expect(layerListings(join(dir, 'out-copy-dir'))[1]).toEqual([
      expect.stringMatching(/^drwxr-xr-x 0\/0 0 app\/$/),
      '-rw-r--r-- 0/0 1 app/a',
      '-rw-r--r-- 0/0 1 app/b',
      '-rw-r--r-- 0/0 1 app/c',
    ]);
    writeFileSync(
      join(ctx, 'Dockerfile'),
      `FROM oci:${join(dir, 'base/layout')}:1\nCOPY --chown=1000:1000 src /app/\n`,
    );
    const refused = buildAsNobody(ctx, join(dir, 'out-copy-chown'));
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(
      /Dockerfile:2: .*uid 1000 gid 1000 need root, or a subordinate id range .*uidmap/,
    );
    expect(existsSync(join(dir, 'out-copy-chown'))).toBe(false);
  });

  it('where no user namespace can be made, a build without RUN works on scan, and RUN and COPY --chown say what they need', () => {
    // No unshare on the PATH stands in for a machine that refuses unprivileged user namespaces
    // (a locked-down container): stratum then runs as the caller, outside any namespace.
    const ctx = join(dir, 'ctx-no-userns');
    mkdirSync(ctx);
    writeFileSync(join(ctx, 'f'), 'f\n');
    // Writable by nobody: each case writes its Dockerfile.
    execFileSync('chmod', ['a+rwx', ctx]);
    execFileSync('chmod', ['a+r', join(ctx, 'f')]);
    const build = (instruction: string, name: string) => {
      writeFileSync(join(ctx, 'Dockerfile'), `FROM oci:${join(dir, 'base/layout')}:1\n${instruction}\n`);
      return buildAsNobody(ctx, join(dir, name), [], join(dir, 'cache-no-userns'), { PATH: '/nonexistent' });
    };
    const copied = build('COPY f /f', 'out-no-userns');
    expect(copied.status, copied.stderr).toBe(0);
    expect(copied.stderr).toContain('snapshotter: scan (not root, and no user namespace could be made');
    expect(layerListings(join(dir, 'out-no-userns'))[1]).toEqual(['-rw-r--r-- 0/0 2 f']);
    // No overlay store was made for nothing.
    expect(readdirSync(join(dir, 'cache-no-userns')).filter((name) => name.startsWith('overlay'))).toEqual(
      [],
    );
    const ran = build('RUN true', 'out-no-userns-run');
    expect(ran.status).toBe(1);
    expect(ran.stderr).toContain('Dockerfile:2: stage 0, step 1/1 RUN true: RUN needs setpriv and unshare');
    const chowned = build('COPY --chown=5:5 f /g', 'out-no-userns-chown');
    expect(chowned.status).toBe(1);
    expect(chowned.stderr).toMatch(
      /Dockerfile:2: .*files owned by uid 5 gid 5 need root, or a user namespace/,
    );
    expect(existsSync(join(dir, 'out-no-userns-run'))).toBe(false);
    expect(existsSync(join(dir, 'out-no-userns-chown'))).toBe(false);
  });

  it('SIGTERM, SIGINT to its process group, or Ctrl-C on a terminal stops a rootless build once, and it cleans up', async () => {
    const ctx = join(dir, 'ctx-signal');
    mkdirSync(ctx);
    writeFileSync(
      join(ctx, 'Dockerfile'),
      `FROM oci:${join(dir, 'base/layout')}:1\nRUN echo started && sleep 60\n`,
    );
    execFileSync('chmod', ['-R', 'a+rX', ctx]);
    const cacheDir = join(dir, 'cache-signal');
    const run = nobody(['build', ctx, '--network', 'none', '--progress', 'plain'], cacheDir);
    const env = run.env;
    for (const how of ['SIGTERM', 'SIGINT to the group', 'Ctrl-C on a terminal'] as const) {
      const onTerminal = how === 'Ctrl-C on a terminal';
      // `script` (bsdutils) gives the build a terminal; Ctrl-C typed there goes to the
      // terminal's whole foreground process group, as in a shell.
      const child = onTerminal
        ? spawn('script', ['-qfec', [run.command, ...run.args].join(' '), '/dev/null'], {
            env,
            stdio: ['pipe', 'pipe', 'ignore'],
          })
        : spawn(run.command, run.args, { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
      let output = '';
      const started = new Promise<void>((resolve) => {
        for (const stream of [child.stdout, child.stderr]) {
          stream?.on('data', (chunk: Buffer) => {
            output += chunk.toString('utf8');
            if (output.includes('| started')) resolve();
          });
        }
      });
      const exited = new Promise<number | null>((resolve) =>
        child.once('exit', (code) => {
          resolve(code);
        }),
      );
      await started;
      const sentAt = Date.now();
      if (how === 'SIGTERM') child.kill('SIGTERM');
      else if (how === 'SIGINT to the group') process.kill(-child.pid!, 'SIGINT');
      else child.stdin?.write('\x03');
      const code = await exited;
      expect(Date.now() - sentAt, how).toBeLessThan(10_000);
      expect(code, output).not.toBe(0);
      // Once: a second signal would have said "stopped by a second SIGINT" and skipped the cleanup.
      expect(output, how).toMatch(/build interrupted( by \S+)?; nothing was written/);
      expect(output, how).not.toContain('second');
      // Nothing of it still runs, and its workspace is gone.
      const left = spawnSync('pgrep', ['-u', '65534', '-f', 'sleep 60'], { encoding: 'utf8' });
      expect(left.stdout.trim(), how).toBe('');
      const workspaces = spawnSync('find', [cacheDir, '-name', 'stratum-build-*'], { encoding: 'utf8' });
      expect(workspaces.stdout.trim(), how).toBe('');
    }
  }, 60_000);

  it("the default network works without root: the step's own namespace, the host's loopback through pasta, nothing left", async () => {
    requireTool('pasta', 'passt');
    const server = createServer((socket) => socket.end('hello from the host loopback\n'));
    await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
    const port = (server.address() as AddressInfo).port;
    try {
      const ctx = join(dir, 'ctx-network');
      mkdirSync(ctx);
      writeFileSync(
        join(ctx, 'Dockerfile'),
        [
          `FROM oci:${join(dir, 'base/layout')}:1`,
          'RUN readlink /proc/self/ns/net > /netns && ls /sys/class/net > /interfaces \\',
          ` && (timeout 5 nc "$(ip route | awk '/^default/ {print $3}')" ${port} </dev/null | head -n 1 > /via-gateway)`,
          '',
        ].join('\n'),
      );
      execFileSync('chmod', ['-R', 'a+rX', ctx]);
      const runtimeDir = join(dir, 'runtime');
      mkdirSync(runtimeDir, { mode: 0o700 });
      execFileSync('chown', ['65534:65534', runtimeDir]);
      const out = join(dir, 'out-network');
      // Not spawnSync: this process's server must answer while the build runs.
      const run = nobody(
        ['build', ctx, '--progress', 'plain', '--output', `type=local,dest=${out}`],
        join(dir, 'cache-network'),
        { XDG_RUNTIME_DIR: runtimeDir },
      );
      const child = spawn(run.command, run.args, { env: run.env, stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
      const code = await new Promise<number | null>((done) =>
        child.once('close', (status) => {
          done(status);
        }),
      );
      expect(code, stderr).toBe(0);
      expect(readFileSync(join(out, 'netns'), 'utf8').trim()).not.toBe(readlinkSync('/proc/self/ns/net'));
      expect(readFileSync(join(out, 'interfaces'), 'utf8').trim().split(/\s+/).sort()).toHaveLength(2);
      expect(readFileSync(join(out, 'via-gateway'), 'utf8').trim()).toBe('hello from the host loopback');
      // The namespace files were in the caller's runtime directory, and pasta ended with the build.
      expect(readdirSync(join(runtimeDir, 'stratum-netns-nobody'))).toEqual([]);
      const pasta = spawnSync('pgrep', ['-u', '65534', 'pasta'], { encoding: 'utf8' });
      expect(pasta.stdout.trim()).toBe('');
    } finally {
      await new Promise((done) => server.close(done));
    }
  });

  it('XDG_RUNTIME_DIR under /proc: a RUN with the default network fails in one line, naming it (it spun)', () => {
    requireTool('pasta', 'passt');
    const ctx = join(dir, 'ctx-runtime-proc');
    mkdirSync(ctx);
    writeFileSync(join(ctx, 'Dockerfile'), `FROM oci:${join(dir, 'base/layout')}:1\nRUN true\n`);
    execFileSync('chmod', ['-R', 'a+rX', ctx]);
    const run = nobody(['build', ctx, '--progress', 'quiet'], join(dir, 'cache-runtime-proc'), {
      XDG_RUNTIME_DIR: '/proc/stratum-no-such-dir',
    });
    const built = spawnSync(run.command, run.args, {
      env: run.env,
      encoding: 'utf8',
      timeout: 60_000,
      killSignal: 'SIGKILL',
    });
    expect(built.status, built.stderr).toBe(1);
    expect(built.stderr).toMatch(/cannot create \/proc\/stratum-no-such-dir \(ENOENT\)/);
  });

  describe('with a subordinate id range (uidmap)', () => {
    const files = ['/etc/subuid', '/etc/subgid'];
    const saved = new Map<string, string | undefined>();
    beforeAll(() => {
      requireTool('newuidmap', 'uidmap');
      for (const file of files) {
        saved.set(file, existsSync(file) ? readFileSync(file, 'utf8') : undefined);
        appendFileSync(file, 'nobody:400000:65536\n');
      }
    });
    afterAll(() => {
      for (const file of files) {
        const old = saved.get(file);
        if (old === undefined) rmSync(file, { force: true });
        else writeFileSync(file, old);
      }
    });

    it('files a RUN gives to USER 1000 are 1000 in the layer on overlay and scan; prune removes them', () => {
      const ctx = join(dir, 'ctx-ids');
      mkdirSync(ctx);
      writeFileSync(
        join(ctx, 'Dockerfile'),
        [
          `FROM oci:${join(dir, 'base/layout')}:1`,
          'RUN mkdir -p /work/app && chown 1000:1000 /work/app && chmod 755 /work/app',
          'USER 1000:1000',
          'RUN touch /work/app/made && id -u > /work/app/uid',
          '',
        ].join('\n'),
      );
      execFileSync('chmod', ['-R', 'a+rX', ctx]);
      const listings: string[][][] = [];
      for (const snapshotter of ['overlay', 'scan']) {
        const cacheDir = join(dir, `cache-ids-${snapshotter}`);
        const built = buildAsNobody(
          ctx,
          join(dir, `out-ids-${snapshotter}`),
          ['--snapshotter', snapshotter],
          cacheDir,
        );
        expect(built.status, built.stderr).toBe(0);
        listings.push(layerListings(join(dir, `out-ids-${snapshotter}`)));
        // On disk these files belong to 400999, which nobody cannot remove alone.
        const pruned = asNobody(['cache', 'prune', '--cache-dir', cacheDir]);
        expect(pruned.status, pruned.stderr).toBe(0);
        const left = spawnSync('find', [cacheDir, '-uid', '400999'], { encoding: 'utf8' });
        expect(left.stdout.trim(), snapshotter).toBe('');
      }
      const [overlay, scan] = listings;
      expect(overlay!.slice(1)).toEqual(scan!.slice(1));
      expect(overlay![1]).toContain('drwxr-xr-x 1000/1000 0 work/app/');
      expect(overlay![2]).toEqual(
        expect.arrayContaining([
          '-rw-r--r-- 1000/1000 0 work/app/made',
          '-rw-r--r-- 1000/1000 5 work/app/uid',
        ]),
      );
    });

    it('COPY --chown=1000 and COPY --from a stage keep 1000 in the layer, on overlay and scan', () => {
      const ctx = join(dir, 'ctx-copy-owners');
      mkdirSync(join(ctx, 'src'), { recursive: true });
      writeFileSync(join(ctx, 'src', 'a'), 'a');
      writeFileSync(
        join(ctx, 'Dockerfile'),
        [
          `FROM oci:${join(dir, 'base/layout')}:1 AS stage`,
          'RUN mkdir /o && touch /o/f && chown -R 1000:1000 /o',
          `FROM oci:${join(dir, 'base/layout')}:1`,
          'COPY --from=stage /o /o',
          'COPY --chown=1000:1000 src /app/',
          '',
        ].join('\n'),
      );
      execFileSync('chmod', ['-R', 'a+rX', ctx]);
      for (const snapshotter of ['overlay', 'scan']) {
        const out = join(dir, `out-copy-owners-${snapshotter}`);
        const built = buildAsNobody(
          ctx,
          out,
          ['--snapshotter', snapshotter],
          join(dir, `cache-co-${snapshotter}`),
        );
        expect(built.status, built.stderr).toBe(0);
        const [, fromStage, chowned] = layerListings(out);
        expect(fromStage, snapshotter).toContain('-rw-r--r-- 1000/1000 0 o/f');
        expect(chowned, snapshotter).toEqual(
          expect.arrayContaining([
            expect.stringMatching(/^drwxr-xr-x 1000\/1000 0 app\/$/),
            '-rw-r--r-- 1000/1000 1 app/a',
          ]),
        );
      }
    });

    it("COPY into a base's directory of USER 1000, and USER 1000's 0700 directory, reach the layers on overlay and scan", () => {
      // Both failed before stratum ran itself inside the namespace: COPY wrote as the caller
      // into a directory of host uid 400999 (EACCES), and the layer writer could not read a
      // 0700 directory of it. A failing build then leaves none of those files behind.
      const ctx = join(dir, 'ctx-sub-dirs');
      mkdirSync(ctx);
      writeFileSync(join(ctx, 'f'), 'f\n');
      const dockerfile = (last: string): string =>
        [
          `FROM oci:${join(dir, 'base/layout')}:1`,
          'COPY f /home/app/f',
          'USER 1000:1000',
          'RUN mkdir /home/app/priv && echo s > /home/app/priv/s && chmod 700 /home/app/priv && chmod 600 /home/app/priv/s',
          last,
          '',
        ].join('\n');
      writeFileSync(join(ctx, 'Dockerfile'), dockerfile('RUN cat /home/app/priv/s > /home/app/read'));
      execFileSync('chmod', ['-R', 'a+rX', ctx]);
      const listings: string[][][] = [];
      for (const snapshotter of ['overlay', 'scan']) {
        const out = join(dir, `out-sub-dirs-${snapshotter}`);
        const cacheDir = join(dir, `cache-sub-dirs-${snapshotter}`);
        const built = buildAsNobody(ctx, out, ['--snapshotter', snapshotter], cacheDir);
        expect(built.status, built.stderr).toBe(0);
        listings.push(layerListings(out));
      }
      const [overlay, scan] = listings;
      expect(overlay!.slice(1)).toEqual(scan!.slice(1));
      expect(overlay![1]).toContain('-rw-r--r-- 0/0 2 home/app/f');
      expect(overlay![2]).toEqual(
        expect.arrayContaining([
          'drwx------ 1000/1000 0 home/app/priv/',
          '-rw------- 1000/1000 2 home/app/priv/s',
        ]),
      );
      expect(overlay![3]).toContain('-rw-r--r-- 1000/1000 2 home/app/read');

      writeFileSync(join(ctx, 'Dockerfile'), dockerfile('RUN false'));
      for (const snapshotter of ['overlay', 'scan']) {
        const cacheDir = join(dir, `cache-sub-dirs-${snapshotter}`);
        const failed = buildAsNobody(
          ctx,
          join(dir, `out-sub-fail-${snapshotter}`),
          ['--snapshotter', snapshotter],
          cacheDir,
        );
        expect(failed.status, failed.stderr).toBe(1);
        // The failed build's workspace (its stage filesystem holding USER 1000's files) is gone.
        const left = spawnSync('find', [cacheDir, '-name', 'stratum-build-*'], { encoding: 'utf8' });
        expect(left.stdout.trim(), snapshotter).toBe('');
        const pruned = asNobody(['cache', 'prune', '--cache-dir', cacheDir]);
        expect(pruned.status, pruned.stderr).toBe(0);
        const owned = spawnSync('find', [cacheDir, '-uid', '400999'], { encoding: 'utf8' });
        expect(owned.stdout.trim(), snapshotter).toBe('');
      }
    });

    it('type=local gives the caller the exported files; type=tar records the image owners', () => {
      const ctx = join(dir, 'ctx-export');
      mkdirSync(ctx);
      writeFileSync(
        join(ctx, 'Dockerfile'),
        `FROM oci:${join(dir, 'base/layout')}:1\nUSER 1000:1000\nRUN touch /home/app/mine\n`,
      );
      execFileSync('chmod', ['-R', 'a+rX', ctx]);
      const local = join(dir, 'export-local');
      const tar = join(dir, 'export.tar');
      const built = asNobody(
        [
          'build',
          ctx,
          '--network',
          'none',
          '--progress',
          'plain',
          '--output',
          `type=local,dest=${local}`,
          '--output',
          `type=tar,dest=${tar}`,
        ],
        join(dir, 'cache-export'),
      );
      expect(built.status, built.stderr).toBe(0);
      // Not host uid 400999, which nobody could not even remove.
      const owners = spawnSync('find', [local, '!', '-uid', '65534'], { encoding: 'utf8' });
      expect(owners.stdout.trim()).toBe('');
      expect(existsSync(join(local, 'home/app/mine'))).toBe(true);
      const listing = execFileSync('tar', ['--numeric-owner', '-tvf', tar], { encoding: 'utf8' });
      expect(listing).toMatch(/^-rw-r--r-- 1000\/1000 .* home\/app\/mine$/m);
      expect(listing).toMatch(/^drwxr-xr-x 1000\/1000 .* home\/app\/$/m);
    });

    it('every Docker parity case builds the same layers and config as nobody as it does as root', async () => {
      // The parity cases (test/parity) hold what stratum must agree with Docker on: built as
      // root and as nobody (in its user namespace, with the range), their layers and configs
      // must be the same, or fail alike.
      const parity = resolve(import.meta.dirname, '../parity');
      const work = join(dir, 'parity');
      mkdirSync(work);
      const rootfs = join(work, 'rootfs');
      mkdirSync(rootfs);
      makeParityBaseRootfs(rootfs);
      const bases: [string, boolean][] = [
        ['stratum-test/busybox:2', false],
        ['stratum-test/busybox-noenv:2', true],
      ];
      const layouts: [string, string][] = bases.map(([tag, withoutEnv]) => [
        tag,
        writeBaseImage(rootfs, join(work, `base-${withoutEnv}`), tag, { withoutEnv }).layout,
      ]);
      for (const user of ['root', 'nobody']) {
        for (const [tag, layout] of layouts) {
          const source = await openOciLayout(layout, '2');
          await new ImageStore(join(work, `data-${user}`)).put(source, [tag]);
          await source.close();
        }
      }
      execFileSync('cp', ['-r', join(parity, 'cases'), work]);
      execFileSync('chown', ['-R', '65534:65534', join(work, 'data-nobody')]);
      execFileSync('chmod', ['-R', 'a+rX', work]);
      // Where both write their images.
      const outs = join(work, 'out');
      mkdirSync(outs);
      chmodSync(outs, 0o777);

      /** Cases that need root of the host: `mknod` of a device node in a RUN. */
      const NEEDS_HOST_ROOT = new Set(['special-bits']);
      const compared: string[] = [];
      for (const group of ['cases']) {
        for (const name of readdirSync(join(work, group)).sort()) {
          const context = join(work, group, name);
          const secret = join(context, 'secret.txt');
          const args = (user: string) => [
            'build',
            context,
            '--network',
            'none',
            '--progress',
            'plain',
            ...(existsSync(secret) ? ['--secret', `id=s,src=${secret}`] : []),
            '--output',
            `oci:${join(outs, `${user}-${group}-${name}`)}:x`,
          ];
          // Side by side: the two builds are independent.
          const rootRun = {
            command: process.execPath,
            args: [BIN, ...args('root')],
            env: {
              ...process.env,
              STRATUM_DATA_DIR: join(work, 'data-root'),
              STRATUM_CACHE_DIR: join(work, 'cache-root'),
            },
          };
          const nobodyRun = nobody(args('nobody'), join(dir, 'cache-parity-nobody'), {
            STRATUM_DATA_DIR: join(work, 'data-nobody'),
          });
          const [asRoot, rootless] = await Promise.all([runAsync(rootRun), runAsync(nobodyRun)]);
          if (NEEDS_HOST_ROOT.has(name)) {
            // Refused in the step itself, as rootless Docker and podman refuse it.
            expect(asRoot.status, asRoot.stderr).toBe(0);
            expect(rootless.stderr).toContain('Operation not permitted');
            continue;
          }
          expect(
            rootless.status === 0,
            `${name}: as root ${asRoot.status}, as nobody ${rootless.status}:\n${rootless.stderr}`,
          ).toBe(asRoot.status === 0);
          if (asRoot.status !== 0) continue;
          const [rootOut, nobodyOut] = ['root', 'nobody'].map((user) =>
            join(outs, `${user}-${group}-${name}`),
          );
          expect(layerListings(nobodyOut!), name).toEqual(layerListings(rootOut!));
          const config = (layout: string) => {
            const image = imageConfig(layout);
            // (Not the diff_ids: the layers' times differ between two builds.)
            return image['config'];
          };
          expect(config(nobodyOut!), name).toEqual(config(rootOut!));
          compared.push(name);
        }
      }
      // Nearly all of them build (a few are meant to fail, as Docker does).
      expect(compared.length).toBeGreaterThanOrEqual(25);
    }, 600_000);

    it("a base layer's files keep their owners, on overlay and scan", () => {
      // The base has /home/app owned by 1000: USER 1000 can write there only if that survived.
      const ctx = join(dir, 'ctx-base-owner');
      mkdirSync(ctx);
      writeFileSync(
        join(ctx, 'Dockerfile'),
        `FROM oci:${join(dir, 'base/layout')}:1\nUSER 1000:1000\nRUN touch /home/app/mine\n`,
      );
      execFileSync('chmod', ['-R', 'a+rX', ctx]);
      for (const snapshotter of ['overlay', 'scan']) {
        const out = join(dir, `out-base-owner-${snapshotter}`);
        const built = buildAsNobody(
          ctx,
          out,
          ['--snapshotter', snapshotter],
          join(dir, `cache-base-owner-${snapshotter}`),
        );
        expect(built.status, built.stderr).toBe(0);
        expect(layerListings(out)[1], snapshotter).toContain('-rw-r--r-- 1000/1000 0 home/app/mine');
      }
    });
  });
});
