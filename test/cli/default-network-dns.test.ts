import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeBusyboxRootfs, writeBaseImage } from '../helpers/base-image.js';
import { isRoot, requireTool } from '../helpers/system.js';

const BIN = resolve(import.meta.dirname, '../../bin/stratum.js');

/** A DNS responder of a few lines: NAME's A record is ADDRESS; anything else has no record. */
const responder = String.raw`
import dgram from 'node:dgram';
const [host, name, address] = process.argv.slice(2);
const socket = dgram.createSocket('udp4');
socket.on('message', (query, peer) => {
  let at = 12;
  const labels = [];
  while (query[at] !== 0) { labels.push(query.subarray(at + 1, at + 1 + query[at]).toString()); at += query[at] + 1; }
  const type = query.readUInt16BE(at + 1);
  const found = labels.join('.').toLowerCase() === name && type === 1;
  const header = Buffer.alloc(12);
  query.copy(header, 0, 0, 2);
  header.writeUInt16BE(0x8180, 2);
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(found ? 1 : 0, 6);
  const answer = found
    ? Buffer.concat([Buffer.from([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]), Buffer.from(address.split('.').map(Number))])
    : Buffer.alloc(0);
  socket.send(Buffer.concat([header, query.subarray(12, at + 5), answer]), peer.port, peer.address);
});
socket.bind(53, host, () => console.log('ready'));
`;

/**
 * Name resolution on the default network when the host's resolver is not on loopback (issue 26:
 * `nameserver 10.255.255.53` here). Reproduced honestly in network namespaces of the test's own:
 * "host" is a namespace whose resolv.conf (`ip netns exec` binds /etc/netns/NAME/resolv.conf)
 * names a responder on its non-loopback address, with a default route over a veth pair; stratum
 * runs there, and its step must resolve a name through pasta's forwarder.
 */
const ready = isRoot && requireTool('ip', 'iproute2') && requireTool('pasta', 'passt');

describe.skipIf(!ready)('the default network resolves names through a non-loopback host resolver', () => {
  const suffix = `${process.pid}`;
  const hostNs = `stratum-dns-host-${suffix}`;
  const peerNs = `stratum-dns-peer-${suffix}`;
  const resolver = '10.77.0.1';
  let dir: string;
  let server: ChildProcess | undefined;

  const ip = (...args: string[]): void => {
    const result = spawnSync('ip', args, { encoding: 'utf8' });
    if (result.status !== 0) throw new Error(`ip ${args.join(' ')}: ${result.stderr}`);
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'stratum-dns-'));
    const rootfs = join(dir, 'base-rootfs');
    mkdirSync(rootfs);
    makeBusyboxRootfs(rootfs);
    writeBaseImage(rootfs, join(dir, 'base'), 'stratum-test/busybox:1');
    ip('netns', 'add', hostNs);
    ip('netns', 'add', peerNs);
    ip('link', 'add', 'sdns0', 'netns', hostNs, 'type', 'veth', 'peer', 'name', 'sdns1', 'netns', peerNs);
    ip('-n', hostNs, 'addr', 'add', `${resolver}/24`, 'dev', 'sdns0');
    ip('-n', hostNs, 'link', 'set', 'sdns0', 'up');
    ip('-n', hostNs, 'link', 'set', 'lo', 'up');
    ip('-n', peerNs, 'addr', 'add', '10.77.0.2/24', 'dev', 'sdns1');
    ip('-n', peerNs, 'link', 'set', 'sdns1', 'up');
    ip('-n', hostNs, 'route', 'add', 'default', 'via', '10.77.0.2');
    mkdirSync(`/etc/netns/${hostNs}`, { recursive: true });
    writeFileSync(`/etc/netns/${hostNs}/resolv.conf`, `search example\nnameserver ${resolver}\n`);
    writeFileSync(join(dir, 'responder.mjs'), responder);
    server = spawn('ip', [
      'netns',
      'exec',
      hostNs,
      process.execPath,
      join(dir, 'responder.mjs'),
      resolver,
      'stratum-test.example',
      '10.77.0.99',
    ]);
    await new Promise<void>((done, fail) => {
      server!.stdout!.once('data', () => {
        done();
      });
      server!.once('exit', (code) => {
        fail(new Error(`the DNS responder exited (${code})`));
      });
    });
  }, 60_000);

  afterAll(() => {
    server?.kill('SIGKILL');
    spawnSync('ip', ['netns', 'del', hostNs]);
    spawnSync('ip', ['netns', 'del', peerNs]);
    rmSync(`/etc/netns/${hostNs}`, { recursive: true, force: true });
    rmSync(dir, { recursive: true, force: true });
  });

  it('a RUN on the default network looks a name up through the host resolver', () => {
    const ctx = join(dir, 'ctx');
    mkdirSync(ctx);
    writeFileSync(
      join(ctx, 'Dockerfile'),
      [
        `FROM oci:${join(dir, 'base/layout')}:1`,
        'RUN cp /etc/resolv.conf /resolv.conf && nslookup -type=a stratum-test.example > /lookup 2>&1; echo $? >> /lookup',
        '',
      ].join('\n'),
    );
    const out = join(dir, 'out');
    const built = spawnSync(
      'ip',
      [
        'netns',
        'exec',
        hostNs,
        process.execPath,
        BIN,
        'build',
        ctx,
        '--progress',
        'plain',
        '-o',
        `type=local,dest=${out}`,
      ],
      {
        encoding: 'utf8',
        timeout: 120_000,
        env: { ...process.env, STRATUM_CACHE_DIR: join(dir, 'cache'), STRATUM_DATA_DIR: join(dir, 'data') },
      },
    );
    expect(built.status, built.stderr).toBe(0);
    const lookup = readFileSync(join(out, 'lookup'), 'utf8');
    expect(lookup).toMatch(/Address:\s*10\.77\.0\.99/);
    expect(lookup.trim().split('\n').pop()).toBe('0');
    // The host's search domain stays; the resolver is pasta's forwarder.
    expect(readFileSync(join(out, 'resolv.conf'), 'utf8')).toBe('search example\nnameserver 169.254.1.1\n');
  }, 150_000);
});
