import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cosignAttestationTag } from '../../src/attest/cosign.js';
import { pae } from '../../src/attest/dsse.js';
import type { ImageIndex, ImageManifest } from '../../src/oci/types.js';
import { buildSandbox, type BuildSandbox } from '../helpers/build.js';
import { requireTool } from '../helpers/system.js';
import { startRegistry, type RunningRegistry } from '../registry/harness.js';

const CLI = join(import.meta.dirname, '../../bin/stratum.js');

describe('DSSE pre-authentication encoding', () => {
  it("the spec's example (dsse protocol.md)", () => {
    expect(pae('http://example.com/HelloWorld', Buffer.from('hello world')).toString()).toBe(
      'DSSEv1 29 http://example.com/HelloWorld 11 hello world',
    );
  });
});

const enabled =
  requireTool('openssl', 'openssl') &&
  requireTool('docker-registry', 'docker-registry') &&
  requireTool('skopeo', 'skopeo');

describe.skipIf(!enabled)('--sign-key: provenance signed where cosign looks, verified offline', () => {
  let box: BuildSandbox;
  let registry: RunningRegistry;
  let context: string;
  beforeAll(async () => {
    box = buildSandbox();
    registry = await startRegistry();
    execFileSync('openssl', [
      'ecparam',
      '-genkey',
      '-name',
      'prime256v1',
      '-noout',
      '-out',
      join(box.dir, 'ec.pem'),
    ]);
    execFileSync(
      'openssl',
      ['ec', '-in', join(box.dir, 'ec.pem'), '-pubout', '-out', join(box.dir, 'ec.pub')],
      { stdio: 'ignore' },
    );
    execFileSync('openssl', ['genpkey', '-algorithm', 'ed25519', '-out', join(box.dir, 'ed.pem')]);
    execFileSync('openssl', [
      'pkey',
      '-in',
      join(box.dir, 'ed.pem'),
      '-pubout',
      '-out',
      join(box.dir, 'ed.pub'),
    ]);
    context = box.context('signed', { Dockerfile: 'FROM scratch\nCOPY a /a\n', a: 'a\n' });
  });
  afterAll(async () => {
    await registry.stop();
    box.cleanup();
  });

  const verify = (image: string, key: string): ReturnType<typeof spawnSync> =>
    spawnSync(process.execPath, [CLI, 'verify-attestation', '--key', key, image], {
      encoding: 'utf8',
      env: { ...process.env, STRATUM_DATA_DIR: box.dataDir },
    });

  it('an oci layout and a registry get the sha256-DIGEST.att image; its envelope verifies with openssl and with stratum', async () => {
    const out = join(box.dir, 'signed');
    const ref = `${registry.host}/stratum/signed:1`;
    const result = await box.build(context, {
      outputs: [`oci:${out}:v1`],
      tags: [ref],
      push: true,
      attestations: { provenance: { mode: 'max', version: 'v0.2' } },
      signKey: join(box.dir, 'ec.pem'),
    });
    const tag = cosignAttestationTag(result.digest);
    expect(tag).toBe(`sha256-${result.digest.slice(7)}.att`);
    const top = JSON.parse(readFileSync(join(out, 'index.json'), 'utf8')) as ImageIndex;
    const att = top.manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === tag)!;
    const manifest = JSON.parse(
      readFileSync(join(out, 'blobs', ...att.digest.split(':')), 'utf8'),
    ) as ImageManifest;
    expect(manifest.layers).toHaveLength(1);
    const layer = manifest.layers[0]!;
    expect(layer.mediaType).toBe('application/vnd.dsse.envelope.v1+json');
    expect(layer.annotations).toEqual({
      'dev.cosignproject.cosign/signature': '',
      predicateType: 'https://slsa.dev/provenance/v0.2',
    });

    // openssl, knowing nothing of stratum, checks the signature over DSSE's PAE.
    const envelope = JSON.parse(readFileSync(join(out, 'blobs', ...layer.digest.split(':')), 'utf8')) as {
      payloadType: string;
      payload: string;
      signatures: { sig: string }[];
    };
    writeFileSync(join(box.dir, 'pae'), pae(envelope.payloadType, Buffer.from(envelope.payload, 'base64')));
    writeFileSync(join(box.dir, 'sig'), Buffer.from(envelope.signatures[0]!.sig, 'base64'));
    const openssl = spawnSync(
      'openssl',
      [
        'dgst',
        '-sha256',
        '-verify',
        join(box.dir, 'ec.pub'),
        '-signature',
        join(box.dir, 'sig'),
        join(box.dir, 'pae'),
      ],
      {
        encoding: 'utf8',
      },
    );
    expect(openssl.stdout.trim()).toBe('Verified OK');
    const statement = JSON.parse(Buffer.from(envelope.payload, 'base64').toString()) as {
      subject: { digest: { sha256: string } }[];
    };
    // cosign requires a subject naming the digest it verifies: the index.
    expect(statement.subject.map((s) => s.digest.sha256)).toContain(result.digest.slice(7));

    for (const image of [`oci:${out}:v1`, ref, `docker://${ref}`]) {
      const run = verify(image, join(box.dir, 'ec.pub'));
      expect(run.status, `${image}: ${String(run.stderr)}`).toBe(0);
      expect(run.stdout).toMatch(/^verified https:\/\/slsa\.dev\/provenance\/v0\.2 sha256:[0-9a-f]{64}\n$/);
    }
    // skopeo sees the tag in the registry, as cosign would look it up.
    const tags = JSON.parse(
      execFileSync(
        'skopeo',
        ['list-tags', '--tls-verify=false', `docker://${registry.host}/stratum/signed`],
        { encoding: 'utf8' },
      ),
    ) as { Tags: string[] };
    expect(tags.Tags).toContain(tag);
  });

  it('another key, or an image that was not signed, does not verify (exit 1)', async () => {
    const out = join(box.dir, 'signed-ed');
    await box.build(context, {
      outputs: [`oci:${out}:v1`],
      attestations: { provenance: { mode: 'min', version: 'v1' } },
      signKey: join(box.dir, 'ed.pem'),
    });
    expect(verify(`oci:${out}:v1`, join(box.dir, 'ed.pub')).status).toBe(0);
    const wrong = verify(`oci:${out}:v1`, join(box.dir, 'ec.pub'));
    expect(wrong.status).toBe(1);
    expect(wrong.stderr).toMatch(/no signed attestation verifies with .*ec\.pub \(1 rejected\)/);
    await box.build(context, {
      outputs: [`oci:${box.dir}/unsigned:v1`],
      attestations: { provenance: { mode: 'min', version: 'v0.2' } },
    });
    const unsigned = verify(`oci:${box.dir}/unsigned:v1`, join(box.dir, 'ec.pub'));
    expect(unsigned.status).toBe(1);
    expect(unsigned.stderr).toMatch(/no signed attestations/);
  });

  it('--sign-key without provenance, or with a key that is not one, is refused before the build', async () => {
    await expect(box.build(context, { signKey: join(box.dir, 'ec.pem') })).rejects.toMatchObject({
      code: 'USAGE',
    });
    writeFileSync(join(box.dir, 'not-a-key'), 'hello');
    await expect(
      box.build(context, {
        signKey: join(box.dir, 'not-a-key'),
        attestations: { provenance: { mode: 'min', version: 'v0.2' } },
      }),
    ).rejects.toMatchObject({ code: 'USAGE', message: expect.stringContaining('not a PEM private key') });
  });
});
