import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openOciLayout } from '../../src/transport/layout/reader.js';
import { ImageStore } from '../../src/transport/store/store.js';
import { makeParityBaseRootfs, writeBaseImage } from '../helpers/base-image.js';
import { DOCKER, dockerAvailable, ensureContainerImage, runInContainer } from '../helpers/container-image.js';
import { imageConfig, layerListings } from '../helpers/layout.js';
import { isRoot, requireTool } from '../helpers/system.js';

const REPO = resolve(import.meta.dirname, '../..');
const CASES = resolve(import.meta.dirname, 'cases');
const EPOCH = '1700000000';

/**
 * The parity suite's Dockerfiles (cases/, each checked against Docker by parity.test.ts) built by
 * stratum inside a container under Docker's default settings, where RUN runs under proot, must
 * give what the same builds on the host give (RUN in namespaces): the same layers (type, mode,
 * owner, size, name) and config, or fail alike. All cases build in one container run.
 */
const ready =
  isRoot &&
  requireTool(DOCKER, 'docker.io') &&
  requireTool('debootstrap', 'debootstrap') &&
  dockerAvailable();

describe.skipIf(!ready)("the parity cases inside a container under Docker's defaults", () => {
  const cases = readdirSync(CASES).sort();
  let dir: string;
  const outcome = new Map<string, { host: boolean; container: boolean; log: string }>();

  beforeAll(async () => {
    ensureContainerImage();
    dir = mkdtempSync(join(tmpdir(), 'stratum-parity-container-'));
    chmodSync(dir, 0o755);
    const rootfs = join(dir, 'base-rootfs');
    mkdirSync(rootfs);
    makeParityBaseRootfs(rootfs);
    // The bases the cases name, in a store both builds read (a copy each: a build writes to it).
    for (const [tag, withoutEnv] of [
      ['stratum-test/busybox:2', false],
      ['stratum-test/busybox-noenv:2', true],
    ] as const) {
      const base = writeBaseImage(rootfs, join(dir, `base-${String(withoutEnv)}`), tag, { withoutEnv });
      for (const store of ['host-data', 'container-data']) {
        const source = await openOciLayout(base.layout, '2');
        await new ImageStore(join(dir, store)).put(source, [tag]);
        await source.close();
      }
    }
    const buildAll = (bin: string, casesDir: string, outDir: string): string =>
      cases
        .map((name) => {
          const secret = existsSync(join(CASES, name, 'secret.txt'))
            ? ` --secret id=s,src=${casesDir}/${name}/secret.txt`
            : '';
          return `${bin} build ${casesDir}/${name} --network host --progress plain${secret} -o oci:${outDir}/${name}:x > ${outDir}/${name}.log 2>&1 && echo ok > ${outDir}/${name}.status || echo failed > ${outDir}/${name}.status`;
        })
        .join('\n');
    mkdirSync(join(dir, 'host'));
    mkdirSync(join(dir, 'container'));
    writeFileSync(
      join(dir, 'host.sh'),
      buildAll(`"${process.execPath}" "${join(REPO, 'bin/stratum.js')}"`, CASES, join(dir, 'host')),
    );
    writeFileSync(
      join(dir, 'container.sh'),
      buildAll('node /stratum/bin/stratum.js', '/cases', '/work/container'),
    );
    const host = spawnSync('sh', [join(dir, 'host.sh')], {
      encoding: 'utf8',
      env: {
        ...process.env,
        SOURCE_DATE_EPOCH: EPOCH,
        STRATUM_CACHE_DIR: join(dir, 'host-cache'),
        STRATUM_DATA_DIR: join(dir, 'host-data'),
      },
    });
    if (host.status !== 0) throw new Error(`host builds: ${host.stderr}`);
    const container = runInContainer(['sh', '/work/container.sh'], {
      env: { SOURCE_DATE_EPOCH: EPOCH, STRATUM_DATA_DIR: '/work/container-data' },
      mounts: { [CASES]: '/cases:ro', [dir]: '/work' },
    });
    if (container.status !== 0) throw new Error(`container builds: ${container.stderr}`);
    for (const name of cases) {
      const ok = (where: string): boolean =>
        spawnSync('cat', [join(dir, where, `${name}.status`)], { encoding: 'utf8' }).stdout.trim() === 'ok';
      const log = spawnSync('cat', [join(dir, 'container', `${name}.log`)], { encoding: 'utf8' }).stdout;
      outcome.set(name, { host: ok('host'), container: ok('container'), log });
    }
  }, 1_200_000);

  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  for (const name of cases) {
    it(`${name}: the same image as on the host (or fails alike)`, () => {
      const result = outcome.get(name)!;
      expect(result.container, result.log.slice(-2000)).toBe(result.host);
      if (!result.host) return;
      expect(layerListings(join(dir, 'container', name))).toEqual(layerListings(join(dir, 'host', name)));
      expect(imageConfig(join(dir, 'container', name))).toEqual(imageConfig(join(dir, 'host', name)));
    });
  }
});
