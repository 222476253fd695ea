import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { openImage } from '../../src/transport/images.js';
import { buildSandbox, type BuildSandbox } from '../helpers/build.js';
import { isRoot, requireTool } from '../helpers/system.js';
import { startRegistry, type RunningRegistry } from '../registry/harness.js';

const enabled =
  isRoot && requireTool('docker-registry', 'docker-registry') && requireTool('skopeo', 'skopeo');

describe.skipIf(!enabled)('stratum build --push (real registry on 127.0.0.1)', () => {
  let box: BuildSandbox;
  let registry: RunningRegistry;
  beforeAll(async () => {
    box = buildSandbox();
    registry = await startRegistry();
  });
  afterAll(async () => {
    await registry.stop();
    box.cleanup();
  });

  it('builds FROM a local layout and pushes under every tag; skopeo and a FROM docker:// read it back', async () => {
    const ctx = box.context('push', {
      Dockerfile: `FROM ${box.baseRef}\nRUN echo pushed > /pushed\nCMD ["cat", "/pushed"]\n`,
    });
    const ref = `${registry.host}/stratum/pushed`;
    const result = await box.build(ctx, { tags: [`${ref}:one`, `${ref}:two`], push: true });
    expect(result.written).toEqual(expect.arrayContaining([`docker://${ref}:one`, `docker://${ref}:two`]));
    const inspected = JSON.parse(
      execFileSync('skopeo', ['inspect', '--tls-verify=false', `docker://${ref}:two`], { encoding: 'utf8' }),
    ) as { Digest: string };
    expect(inspected.Digest).toBe(result.digest);

    const pulled = await openImage(`docker://${ref}:one`);
    expect(pulled.descriptor.digest).toBe(result.digest);
    await pulled.close();

    // A later build can start FROM the pushed image by its registry name.
    const next = box.context('from-registry', { Dockerfile: `FROM ${ref}:one\nRUN cat /pushed > /copied\n` });
    const built = await box.build(next, { outputs: [`oci:${box.dir}/from-registry:x`] });
    const image = await box.open(`oci:${box.dir}/from-registry:x`);
    expect(image.manifest.value.layers).toHaveLength(3);
    expect(built.digest).toBe(image.descriptor.digest);
  });

  it('--push without -t is a usage error before anything is built', async () => {
    const ctx = box.context('push-usage', { Dockerfile: `FROM ${box.baseRef}\nRUN echo x\n` });
    await expect(box.build(ctx, { push: true })).rejects.toMatchObject({ code: 'USAGE' });
  });
});
