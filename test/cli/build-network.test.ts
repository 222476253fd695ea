import { execFileSync, spawn } from 'node:child_process';
import {
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readlinkSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeBusyboxRootfs, writeBaseImage } from '../helpers/base-image.js';
import { isRoot, requireTool } from '../helpers/system.js';

const BIN = resolve(import.meta.dirname, '../../bin/stratum.js');

const enabled = isRoot && requireTool('pasta', 'passt');

/** Runs the CLI without blocking the event loop (the test's own TCP server must answer). */
function stratum(
  args: readonly string[],
  env: NodeJS.ProcessEnv,
): Promise<{ status: number | null; stderr: string; pid: number | undefined }> {
  return new Promise((resolvePromise) => {
    const child = spawn(process.execPath, [BIN, ...args], { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    child.on('close', (status) => {
      resolvePromise({ status, stderr, pid: child.pid });
    });
  });
}

/**
 * RUN's default network, as Docker's: a namespace of its own with outbound access (pasta), not
 * the host's; `--network host` and `none` stay as they were.
 */
describe.skipIf(!enabled)('stratum build: the default network is a private namespace through pasta', () => {
  let dir: string;
  let baseRef: string;
  let server: Server;
  let port: number;
  const env = (): NodeJS.ProcessEnv => ({
    ...process.env,
    STRATUM_DATA_DIR: join(dir, 'data'),
    STRATUM_CACHE_DIR: join(dir, 'cache'),
  });
  /**
   * What a RUN saw, written into the image and exported with type=local. (busybox-static's
   * wget crashes without the NSS files a static glibc looks for, so nc is the client; `head`
   * ends it after the one line the server sends.)
   */
  let lastPid: number | undefined;
  const probe = async (
    name: string,
    networkArgs: readonly string[],
    extraEnv: NodeJS.ProcessEnv = {},
  ): Promise<Record<string, string>> => {
    const ctx = join(dir, name);
    mkdirSync(ctx);
    writeFileSync(
      join(ctx, 'Dockerfile'),
      [
        `FROM ${baseRef}`,
        'RUN mkdir /probe && readlink /proc/self/ns/net > /probe/netns && ls /sys/class/net > /probe/interfaces \\',
        ' && gateway=$(ip route | awk \'/^default/ {print $3}\') && echo "$gateway" > /probe/gateway \\',
        ` && (timeout 5 nc "$gateway" ${port} </dev/null | head -n 1 > /probe/via-gateway) \\`,
        ` && (timeout 5 nc 127.0.0.1 ${port} </dev/null | head -n 1 > /probe/via-loopback)`,
        '',
      ].join('\n'),
    );
    const out = join(dir, `${name}-fs`);
    const built = await stratum(
      ['build', ctx, '--no-cache', ...networkArgs, '-o', `type=local,dest=${out}`],
      { ...env(), ...extraEnv },
    );
    expect(built.status, built.stderr).toBe(0);
    lastPid = built.pid;
    return Object.fromEntries(
      readdirSync(join(out, 'probe')).map((file) => [
        file,
        readFileSync(join(out, 'probe', file), 'utf8').trim(),
      ]),
    );
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'stratum-network-'));
    const rootfs = join(dir, 'base-rootfs');
    mkdirSync(rootfs);
    makeBusyboxRootfs(rootfs);
    baseRef = `oci:${writeBaseImage(rootfs, join(dir, 'base'), 'stratum-test/busybox:1').layout}:1`;
    // A service on the host's loopback only.
    server = createServer((socket) => socket.end('hello from the host loopback\n'));
    await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
    port = (server.address() as { port: number }).port;
  });
  afterAll(async () => {
    await new Promise((done) => server.close(done));
    rmSync(dir, { recursive: true, force: true });
  });

  it('by default a RUN has its own namespace, reaches the host loopback only through pasta, and leaves nothing behind', async () => {
    const seen = await probe('default', []);
    expect(seen['netns']).toMatch(/^net:\[\d+\]$/);
    expect(seen['netns']).not.toBe(readlinkSync('/proc/self/ns/net'));
    // Only its loopback and pasta's interface, never the host's full list.
    const interfaces = seen['interfaces']!.split(/\s+/);
    expect(interfaces).toContain('lo');
    expect(interfaces).toHaveLength(2);
    expect(readdirSync('/sys/class/net').length).toBeGreaterThanOrEqual(interfaces.length);
    // The host's 127.0.0.1 service answers through the gateway address (pasta maps it to the
    // host's loopback), while the step's own 127.0.0.1 is its own.
    expect(seen['via-gateway']).toBe('hello from the host loopback');
    expect(seen['via-loopback']).not.toContain('hello from the host loopback');
    // The build's namespaces (named after its pid) and their pasta processes end with it.
    expect(readdirSync('/run/stratum-netns').filter((name) => name.startsWith(`${lastPid}-`))).toEqual([]);
  });

  it('a pasta that fails to set up a namespace once (issue 26, under load) does not fail the step: a fresh namespace is made', async () => {
    // The real pasta behind a shim whose first call fails as pasta did in the flaky rootless test.
    const shims = join(dir, 'shims');
    mkdirSync(shims);
    const real = execFileSync('sh', ['-c', 'command -v pasta'], { encoding: 'utf8' }).trim();
    const calls = join(dir, 'pasta-calls');
    writeFileSync(
      join(shims, 'pasta'),
      [
        '#!/bin/sh',
        // Setups only (not `pasta --version`): the first fails.
        `case "$*" in *--netns*) ;; *) exec ${real} "$@" ;; esac`,
        `echo x >> ${calls}`,
        `if [ "$(wc -l < ${calls})" -eq 1 ]; then echo 'Failed to open tun socket in namespace' >&2; exit 1; fi`,
        `exec ${real} "$@"`,
        '',
      ].join('\n'),
      { mode: 0o755 },
    );
    const seen = await probe('pasta-fails-once', [], { PATH: `${shims}:${process.env['PATH'] ?? ''}` });
    expect(seen['via-gateway']).toBe('hello from the host loopback');
    // The failed setup, then the one that worked.
    expect(readFileSync(calls, 'utf8').split('\n').filter(Boolean)).toHaveLength(2);
  });

  it('--network host shares the host namespace; --network none has only lo', async () => {
    const host = await probe('host', ['--network', 'host']);
    expect(host['netns']).toBe(readlinkSync('/proc/self/ns/net'));
    const none = await probe('none', ['--network', 'none']);
    expect(none['interfaces']).toBe('lo');
    expect(none['via-gateway']).not.toContain('hello from the host loopback');
  });
});
