import { execFileSync } from 'node:child_process';
import {
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readlinkSync,
  readFileSync,
  symlinkSync,
  copyFileSync,
  chmodSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { SandboxSpec } from '../../../src/executor/sandbox/index.js';

/** A temp dir of its own under os.tmpdir(), traversable by other users (for the rootless test). */
export function makeTempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  chmodSync(dir, 0o755);
  return dir;
}

/**
 * A busybox rootfs from Debian's busybox-static: /bin/busybox plus one symlink per applet.
 * `full` adds the usual top-level directories and /etc files; without it the rootfs is as bare
 * as a scratch image with one binary (no /etc, /proc, /dev, /sys, /tmp).
 */
export function makeBusyboxRootfs(parent: string, options: { full: boolean }): string {
  const rootfs = join(parent, 'rootfs');
  mkdirSync(join(rootfs, 'bin'), { recursive: true });
  copyFileSync('/bin/busybox', join(rootfs, 'bin', 'busybox'));
  chmodSync(join(rootfs, 'bin', 'busybox'), 0o755);
  const applets = execFileSync('/bin/busybox', ['--list'], { encoding: 'utf8' }).split('\n');
  for (const applet of applets) {
    if (applet === '' || applet === 'busybox') continue;
    symlinkSync('busybox', join(rootfs, 'bin', applet));
  }
  if (options.full) {
    for (const dir of ['etc', 'proc', 'dev', 'sys', 'tmp', 'root', 'home/app', 'run']) {
      mkdirSync(join(rootfs, dir), { recursive: true });
    }
    chmodSync(join(rootfs, 'tmp'), 0o1777);
    execFileSync('sh', [
      '-c',
      [
        `printf 'root:x:0:0:root:/root:/bin/sh\\napp:x:1000:1000:app:/home/app:/bin/sh\\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\\n' > ${rootfs}/etc/passwd`,
        `printf 'root:x:0:\\napp:x:1000:\\nwheel:x:10:app,root\\naudio:x:29:app\\nnogroup:x:65534:\\n' > ${rootfs}/etc/group`,
        // Docker's images carry these as empty files (their real content is bind-mounted).
        `: > ${rootfs}/etc/hosts && : > ${rootfs}/etc/resolv.conf && : > ${rootfs}/etc/hostname`,
      ].join(' && '),
    ]);
  }
  return rootfs;
}

export function baseSpec(
  rootfs: string,
  argv: readonly string[],
  overrides: Partial<SandboxSpec> = {},
): SandboxSpec {
  return {
    rootfs,
    argv,
    env: ['PATH=/bin', 'HOME=/root'],
    cwd: '/',
    uid: 0,
    gid: 0,
    additionalGids: [],
    hostname: 'stepbox',
    network: 'host',
    mounts: [],
    etcHosts: '127.0.0.1\tlocalhost\n',
    etcResolvConf: 'nameserver 127.0.0.53\n',
    etcHostname: 'stepbox\n',
    ...overrides,
  };
}

/**
 * Every entry of a tree with the lstat fields a snapshot compares (mtime to the nanosecond,
 * inode, link target), sorted: equal listings mean the snapshot sees no change. ctime is listed
 * apart because creating and removing a mount point changes the parent's ctime, which no
 * user-space call can restore.
 */
export function listTree(root: string, options: { withCtime?: boolean } = {}): string[] {
  const out: string[] = [];
  const walk = (path: string, rel: string): void => {
    const st = lstatSync(path, { bigint: true });
    const target = st.isSymbolicLink() ? readlinkSync(path) : '';
    const ctime = options.withCtime === true ? ` ctime=${st.ctimeNs}` : '';
    out.push(
      `${rel} mode=${st.mode.toString(8)} uid=${st.uid} gid=${st.gid} size=${st.size} mtime=${st.mtimeNs} ino=${st.ino} -> ${target}${ctime}`,
    );
    if (st.isDirectory())
      for (const name of readdirSync(path).sort()) walk(join(path, name), `${rel}/${name}`);
  };
  walk(root, '.');
  return out;
}

/**
 * Mount points in the host's (the test's) mount namespace that lie under `dir` or under one of
 * stratum's scratch directories. Only these: other processes on the machine (dockerd, other
 * tests) mount and unmount elsewhere at any time.
 */
export function hostMountsOf(dir: string): string[] {
  const scratch = join(tmpdir(), 'stratum-run-');
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[4] ?? '')
    .filter((point) => point === dir || point.startsWith(`${dir}/`) || point.startsWith(scratch));
}

/** Host pids whose command line contains `marker` (to find processes a step left behind). */
export function processesWith(marker: string): number[] {
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const cmdline = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0').join(' ');
      if (cmdline.includes(marker)) pids.push(Number(name));
    } catch {
      // exited meanwhile
    }
  }
  return pids;
}
