import { createHash } from 'node:crypto';
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PackageURL } from 'packageurl-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readAttestations } from '../../src/attest/read.js';
import type { Statement } from '../../src/attest/types.js';
import type { BuildEvent } from '../../src/executor/progress.js';
import type { ImageIndex, ImageManifest } from '../../src/oci/types.js';
import { buildSandbox, type BuildSandbox } from '../helpers/build.js';
import { ensureNodeBase } from '../helpers/container-image.js';
import { requireTool } from '../helpers/system.js';
import { startRegistry, type RunningRegistry } from '../registry/harness.js';
import { expectValidSpdx23 } from './spdx.js';

/**
 * The "done when", end to end: builds FROM a debootstrapped Debian (the Node base of
 * test/helpers/container-image.ts, made once per machine) with --sbom and --provenance, read
 * back from the layout, the store and a registry (docker-registry on 127.0.0.1, skopeo).
 * No step RUNs: nothing here needs namespaces.
 */

const REPO = join(import.meta.dirname, '../..');
const CLI = join(REPO, 'bin/stratum.js');
const enabled = requireTool('debootstrap', 'debootstrap') && requireTool('skopeo', 'skopeo');
const DEBIAN_ROOTFS = '/var/tmp/stratum-test-debian/rootfs';

function blob(layout: string, digest: string): Buffer {
  return readFileSync(join(layout, 'blobs', ...digest.split(':')));
}
// eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters -- a typed read of a test fixture
function json<T>(layout: string, digest: string): T {
  return JSON.parse(blob(layout, digest).toString('utf8')) as T;
}
/** The image index a layout's tag names. */
function indexOf(layout: string, tag: string): { digest: string; index: ImageIndex } {
  const top = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8')) as ImageIndex;
  const entry = top.manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === tag)!;
  expect(entry.mediaType).toBe('application/vnd.oci.image.index.v1+json');
  return { digest: entry.digest, index: json<ImageIndex>(layout, entry.digest) };
}
function statementsOf(
  layout: string,
  manifestDigest: string,
): { manifest: ImageManifest; statements: Statement[] } {
  const manifest = json<ImageManifest>(layout, manifestDigest);
  return { manifest, statements: manifest.layers.map((layer) => json<Statement>(layout, layer.digest)) };
}
type Spdx = {
  packages: {
    name: string;
    versionInfo?: string;
    comment?: string;
    externalRefs?: { referenceLocator: string }[];
  }[];
};
function spdxOf(statements: Statement[]): Spdx {
  return statements.find((s) => s.predicateType === 'https://spdx.dev/Document')!.predicate as Spdx;
}
function purlOf(pkg: Spdx['packages'][number]): PackageURL {
  return PackageURL.fromString(pkg.externalRefs![0]!.referenceLocator);
}
/** dpkg-query's own answer, from the Debian rootfs the base was made of. */
function dpkgVersion(name: string): string {
  return execFileSync(
    'dpkg-query',
    ['--admindir', join(DEBIAN_ROOTFS, 'var/lib/dpkg'), '-W', '-f', '${Version}', name],
    {
      encoding: 'utf8',
    },
  );
}

describe.skipIf(!enabled)('--sbom and --provenance on a Debian base (BuildKit attestation storage)', () => {
  let box: BuildSandbox;
  let base: string;
  let baseDigest: string;
  let baseLayerDiffId: string;
  let registry: RunningRegistry;
  const extraStatus = (version: string): string =>
    `Package: stratum-test-extra\nStatus: install ok installed\nArchitecture: all\nVersion: ${version}\nMaintainer: Test <t@example.org>\n\n`;

  beforeAll(async () => {
    box = buildSandbox();
    base = ensureNodeBase();
    const top = JSON.parse(readFileSync(join(base, 'index.json'), 'utf8')) as ImageIndex;
    baseDigest = top.manifests[0]!.digest;
    const manifest = json<ImageManifest>(base, baseDigest);
    baseLayerDiffId = json<{ rootfs: { diff_ids: string[] } }>(base, manifest.config.digest).rootfs
      .diff_ids[0]!;
    registry = await startRegistry();
  }, 1_800_000);
  afterAll(async () => {
    await registry.stop();
    box.cleanup();
  });

  /**
   * A Debian context whose second layer adds a package to dpkg's status (as apt-get would). Each
   * test gives its own version of that package: a layer one test cached (without
   * SOURCE_DATE_EPOCH, say) is then never what another test's build reuses.
   */
  function debianContext(name: string, version = '1.2-3'): string {
    const status = readFileSync(join(DEBIAN_ROOTFS, 'var/lib/dpkg/status'), 'utf8');
    return box.context(name, {
      Dockerfile: `FROM oci:${base}:24\nARG FOO=default\nCOPY status /var/lib/dpkg/status\n`,
      status: status + (status.endsWith('\n\n') ? '' : '\n') + extraStatus(version),
    });
  }

  it('done when: an index of the image and one attestation manifest; the SBOM lists libc6 as dpkg does; provenance names the base by digest', async () => {
    const ctx = debianContext('done-when');
    const out = join(box.dir, 'done-when');
    const events: BuildEvent[] = [];
    const secret = `s3cr3t-${process.pid}`;
    process.env['STRATUM_TEST_TOKEN'] = secret;
    const result = await box.build(ctx, {
      outputs: [`oci:${out}:t`],
      buildArgs: { FOO: 'from-the-command-line' },
      secretSources: { token: { env: 'STRATUM_TEST_TOKEN' } },
      attestations: { sbom: {}, provenance: { mode: 'max', version: 'v0.2' } },
      onEvent: (event) => events.push(event),
    });
    const { digest, index } = indexOf(out, 't');
    expect(result.digest).toBe(digest);
    expect(index.manifests).toHaveLength(2);
    const [image, attestation] = index.manifests as [ImageIndex['manifests'][0], ImageIndex['manifests'][0]];
    expect(image.platform).toEqual({ architecture: 'amd64', os: 'linux' });
    expect(attestation.platform).toEqual({ architecture: 'unknown', os: 'unknown' });
    expect(attestation.annotations).toEqual({
      'vnd.docker.reference.digest': image.digest,
      'vnd.docker.reference.type': 'attestation-manifest',
    });

    const { manifest, statements } = statementsOf(out, attestation.digest);
    expect(json<{ architecture: string; os: string }>(out, manifest.config.digest)).toMatchObject({
      architecture: 'unknown',
      os: 'unknown',
    });
    expect(statements.map((s) => s.predicateType).sort()).toEqual([
      'https://slsa.dev/provenance/v0.2',
      'https://spdx.dev/Document',
    ]);
    for (const [i, layer] of manifest.layers.entries()) {
      expect(layer.mediaType).toBe('application/vnd.in-toto+json');
      expect(layer.annotations?.['in-toto.io/predicate-type']).toBe(statements[i]!.predicateType);
      expect(statements[i]!._type).toBe('https://in-toto.io/Statement/v0.1');
      expect(statements[i]!.subject).toEqual([
        { name: '_', digest: { sha256: image.digest.slice('sha256:'.length) } },
      ]);
    }

    // The SBOM: SPDX 2.3; libc6 with dpkg-query's version and purl, added by the base's layer;
    // the package the COPY added, by the COPY's layer.
    const spdx = spdxOf(statements);
    expectValidSpdx23(spdx);
    const libc6 = spdx.packages.find((p) => p.name === 'libc6')!;
    expect(libc6.versionInfo).toBe(dpkgVersion('libc6'));
    const purl = purlOf(libc6);
    expect(purl).toMatchObject({
      type: 'deb',
      namespace: 'debian',
      name: 'libc6',
      version: dpkgVersion('libc6'),
    });
    expect(purl.qualifiers).toMatchObject({ arch: 'amd64', distro: 'debian-12' });
    expect(libc6.comment).toBe(`layerID: ${baseLayerDiffId}`);
    const imageConfig = json<{ rootfs: { diff_ids: string[] } }>(
      out,
      json<ImageManifest>(out, image.digest).config.digest,
    );
    const extra = spdx.packages.find((p) => p.name === 'stratum-test-extra')!;
    expect(extra.versionInfo).toBe('1.2-3');
    expect(extra.comment).toBe(`layerID: ${imageConfig.rootfs.diff_ids[1]}`);
    // npm's own packages in the Node base, from node_modules/**/package.json.
    const npm = spdx.packages.find((p) => p.name === 'npm')!;
    expect(purlOf(npm)).toMatchObject({ type: 'npm', name: 'npm' });

    // The provenance: the base by digest, the Dockerfile by digest, the build arg (max), the
    // secret's id and never its value.
    const provenance = statements.find((s) => s.predicateType === 'https://slsa.dev/provenance/v0.2')!;
    const predicate = provenance.predicate as {
      builder: { id: string };
      buildType: string;
      materials: { uri: string; digest: { sha256: string } }[];
      invocation: {
        configSource: { digest: { sha256: string }; entryPoint: string };
        parameters: { frontend: string; args: Record<string, string>; secrets: { id: string }[] };
      };
      buildConfig: {
        steps: { instruction: string; location: string }[];
        layers: { digest: string; createdBy: string }[];
      };
      metadata: Record<string, unknown>;
    };
    expect(predicate.builder.id).toBe('pkg:npm/stratum@0.1.0');
    expect(predicate.buildType).toBe('https://mobyproject.org/buildkit@v1');
    expect(predicate.materials).toContainEqual({
      uri: 'pkg:oci/layout@24?platform=linux%2Famd64',
      digest: { sha256: baseDigest.slice('sha256:'.length) },
    });
    expect(predicate.invocation.configSource).toEqual({
      digest: {
        sha256: createHash('sha256')
          .update(readFileSync(join(ctx, 'Dockerfile')))
          .digest('hex'),
      },
      entryPoint: 'Dockerfile',
    });
    expect(predicate.invocation.parameters.args).toEqual({ 'build-arg:FOO': 'from-the-command-line' });
    expect(predicate.invocation.parameters.secrets).toEqual([{ id: 'token' }]);
    expect(predicate.buildConfig.steps.map((step) => step.location)).toEqual([
      'Dockerfile:2',
      'Dockerfile:3',
    ]);
    expect(predicate.buildConfig.layers.map((layer) => layer.digest)).toEqual(
      json<ImageManifest>(out, image.digest).layers.map((layer) => layer.digest),
    );
    expect(predicate.buildConfig.layers[1]!.createdBy).toBe('COPY status /var/lib/dpkg/status # buildkit');
    const source = (
      predicate.metadata['https://mobyproject.org/buildkit@v1#metadata'] as {
        source: { infos: { data: string }[] };
      }
    ).source;
    expect(Buffer.from(source.infos[0]!.data, 'base64').toString()).toBe(
      readFileSync(join(ctx, 'Dockerfile'), 'utf8'),
    );
    expect(JSON.stringify(statements)).not.toContain(secret);
    expect(events.filter((e) => e.kind === 'warning')).toEqual([]);

    // Read back by the library and the CLI.
    const read = await readAttestations(`oci:${out}:t`, { withStatements: true });
    expect(read.index).toBe(digest);
    expect(read.manifests).toHaveLength(1);
    expect(read.manifests[0]!.subject).toBe(image.digest);
    const inspect = spawnSync(process.execPath, [CLI, 'inspect', `oci:${out}:t`], { encoding: 'utf8' });
    expect(inspect.status, inspect.stderr).toBe(0);
    expect(inspect.stdout).toContain(`Attestations: ${attestation.digest}`);
    expect(inspect.stdout).toMatch(/https:\/\/spdx\.dev\/Document\n/);
    expect(inspect.stdout).toContain('Platforms: linux/amd64\n');

    // stratum sbom prints the attached document; stratum diff sees the same image as a plain build.
    const sbom = spawnSync(process.execPath, [CLI, 'sbom', `oci:${out}:t`], {
      encoding: 'utf8',
      maxBuffer: 64 << 20,
    });
    expect(sbom.status, sbom.stderr).toBe(0);
    expect(sbom.stderr).toContain('attached');
    expect(JSON.parse(sbom.stdout)).toEqual(spdx);
    const plainOut = join(box.dir, 'done-when-plain');
    await box.build(ctx, { outputs: [`oci:${plainOut}:t`], buildArgs: { FOO: 'from-the-command-line' } });
    const diff = spawnSync(process.execPath, [CLI, 'diff', `oci:${out}:t`, `oci:${plainOut}:t`], {
      encoding: 'utf8',
    });
    expect(diff.status, diff.stdout + diff.stderr).toBe(0);
  }, 600_000);

  it('--sbom=false --provenance=false attaches nothing: the same single manifest as a build without the flags', async () => {
    const ctx = debianContext('none', '2.0-none');
    // One creation time for all three (the config's `created` would differ between builds).
    const off = await box.build(ctx, {
      outputs: [`oci:${box.dir}/none:t`],
      attestations: {},
      sourceDateEpoch: 1_700_000_000,
    });
    const plain = await box.build(ctx, {
      outputs: [`oci:${box.dir}/plain:t`],
      sourceDateEpoch: 1_700_000_000,
    });
    expect(off.digest).toBe(plain.digest);
    const top = JSON.parse(readFileSync(join(box.dir, 'none', 'index.json'), 'utf8')) as ImageIndex;
    expect(top.manifests[0]!.mediaType).toBe('application/vnd.oci.image.manifest.v1+json');
    // And through the CLI's spelling of the flags.
    const cli = spawnSync(
      process.execPath,
      [
        CLI,
        'build',
        ctx,
        '--sbom=false',
        '--provenance=false',
        '-o',
        `oci:${box.dir}/none-cli:t`,
        '--progress',
        'quiet',
        '--network',
        'none',
      ],
      {
        encoding: 'utf8',
        env: {
          ...process.env,
          STRATUM_DATA_DIR: box.dataDir,
          STRATUM_CACHE_DIR: box.cacheDir,
          SOURCE_DATE_EPOCH: '1700000000',
        },
      },
    );
    expect(cli.status, cli.stderr).toBe(0);
    expect(cli.stdout.trim()).toBe(plain.digest);
  }, 600_000);

  it('mode=min leaves build-arg values, secret ids and the Dockerfile source out, and says the parameters are incomplete', async () => {
    const ctx = debianContext('min');
    await box.build(ctx, {
      outputs: [`oci:${box.dir}/min:t`],
      buildArgs: { FOO: 'private-value' },
      attestations: { provenance: { mode: 'min', version: 'v0.2' } },
    });
    const { index } = indexOf(join(box.dir, 'min'), 't');
    const { statements } = statementsOf(join(box.dir, 'min'), index.manifests[1]!.digest);
    expect(statements.map((s) => s.predicateType)).toEqual(['https://slsa.dev/provenance/v0.2']);
    const text = JSON.stringify(statements[0]);
    expect(text).not.toContain('private-value');
    expect(text).not.toContain('buildConfig');
    const predicate = statements[0]!.predicate as { metadata: { completeness: { parameters: boolean } } };
    expect(predicate.metadata.completeness.parameters).toBe(false);
  }, 600_000);

  it('reproducible under SOURCE_DATE_EPOCH: two builds (the second without the cache) give the same index, SLSA v1 included', async () => {
    const ctx = debianContext('repro', '3.0-repro');
    const options = {
      sourceDateEpoch: 1_700_000_000,
      attestations: { sbom: {}, provenance: { mode: 'max' as const, version: 'v1' as const } },
    };
    const first = await box.build(ctx, { ...options, outputs: [`oci:${box.dir}/repro-1:t`] });
    const second = await box.build(ctx, { ...options, noCache: true, outputs: [`oci:${box.dir}/repro-2:t`] });
    expect(second.digest).toBe(first.digest);
    const { index } = indexOf(join(box.dir, 'repro-1'), 't');
    const { statements } = statementsOf(join(box.dir, 'repro-1'), index.manifests[1]!.digest);
    const provenance = statements.find((s) => s.predicateType === 'https://slsa.dev/provenance/v1')!;
    expect(provenance.predicate).toMatchObject({
      buildDefinition: {
        buildType: 'https://github.com/moby/buildkit/blob/master/docs/attestations/slsa-definitions.md',
        resolvedDependencies: [
          { uri: 'pkg:oci/layout@24?platform=linux%2Famd64', digest: { sha256: baseDigest.slice(7) } },
        ],
      },
      runDetails: {
        builder: { id: 'pkg:npm/stratum@0.1.0' },
        metadata: { startedOn: '2023-11-14T22:13:20Z', finishedOn: '2023-11-14T22:13:20Z' },
      },
    });
  }, 600_000);

  it('a push keeps the attestations: skopeo reads the index and the attestation manifest back; stratum sbom reads the SBOM from the registry', async () => {
    const ctx = debianContext('push');
    const ref = `${registry.host}/stratum/attested:1`;
    const result = await box.build(ctx, {
      tags: [ref],
      push: true,
      attestations: { sbom: {}, provenance: { mode: 'min', version: 'v0.2' } },
    });
    const raw = JSON.parse(
      execFileSync('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${ref}`], {
        encoding: 'utf8',
      }),
    ) as ImageIndex;
    expect(
      createHash('sha256')
        .update(execFileSync('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${ref}`]))
        .digest('hex'),
    ).toBe(result.digest.slice(7));
    expect(raw.manifests).toHaveLength(2);
    const attestation = raw.manifests[1]!;
    expect(attestation.platform).toEqual({ architecture: 'unknown', os: 'unknown' });
    expect(attestation.annotations?.['vnd.docker.reference.digest']).toBe(raw.manifests[0]!.digest);
    const manifest = JSON.parse(
      execFileSync(
        'skopeo',
        [
          'inspect',
          '--raw',
          '--tls-verify=false',
          `docker://${registry.host}/stratum/attested@${attestation.digest}`,
        ],
        {
          encoding: 'utf8',
        },
      ),
    ) as ImageManifest;
    expect(manifest.layers.map((l) => l.annotations?.['in-toto.io/predicate-type']).sort()).toEqual([
      'https://slsa.dev/provenance/v0.2',
      'https://spdx.dev/Document',
    ]);
    // BuildKit's subject for a named image: its purl.
    const read = await readAttestations(`docker://${ref}`, { withStatements: true });
    expect(read.manifests[0]!.statements[0]!.statement!.subject[0]!.name).toBe(
      `pkg:docker/${registry.host}/stratum/attested@1?platform=linux%2Famd64`,
    );
    const sbom = spawnSync(process.execPath, [CLI, 'sbom', `docker://${ref}`], {
      encoding: 'utf8',
      maxBuffer: 64 << 20,
    });
    expect(sbom.status, sbom.stderr).toBe(0);
    expect(sbom.stderr).toContain('attached');
    expect((JSON.parse(sbom.stdout) as Spdx).packages.some((p) => p.name === 'stratum-test-extra')).toBe(
      true,
    );
  }, 600_000);

  it('stratum sbom scans an image that has no SBOM (the Debian base itself): libc6, its layer, npm', () => {
    const sbom = spawnSync(process.execPath, [CLI, 'sbom', `oci:${base}:24`], {
      encoding: 'utf8',
      maxBuffer: 64 << 20,
    });
    expect(sbom.status, sbom.stderr).toBe(0);
    expect(sbom.stderr).toContain('no SBOM attached');
    const spdx = JSON.parse(sbom.stdout) as Spdx;
    expectValidSpdx23(spdx);
    const libc6 = spdx.packages.find((p) => p.name === 'libc6')!;
    expect(libc6.versionInfo).toBe(dpkgVersion('libc6'));
    expect(libc6.comment).toBe(`layerID: ${baseLayerDiffId}`);
    // As many Debian packages as dpkg-query says are installed.
    const installed = execFileSync(
      'dpkg-query',
      ['--admindir', join(DEBIAN_ROOTFS, 'var/lib/dpkg'), '-W', '-f', '${db:Status-Abbrev}\n'],
      {
        encoding: 'utf8',
      },
    )
      .split('\n')
      .filter((line) => line.startsWith('ii')).length;
    expect(spdx.packages.filter((p) => purlOf(p).type === 'deb')).toHaveLength(installed);
  }, 600_000);

  it('docker-archive alone cannot hold them: refused before the build, as buildx; beside oci: it gets the plain image and a warning', async () => {
    const ctx = debianContext('archive');
    await expect(
      box.build(ctx, { outputs: [`docker-archive:${box.dir}/a.tar:x:1`], attestations: { sbom: {} } }),
    ).rejects.toMatchObject({
      code: 'USAGE',
      message: expect.stringMatching(
        /holds one image manifest, not an index: the SBOM attestations would be dropped/,
      ),
    });
    const both = await box.build(ctx, {
      outputs: [`oci:${box.dir}/both:t`, `docker-archive:${box.dir}/b.tar:x:1`],
      attestations: { provenance: { mode: 'min', version: 'v0.2' } },
    });
    expect(both.warnings.join('\n')).toMatch(
      /docker-archive:.*b\.tar:x:1 holds one image manifest, not an index: it gets the image without its provenance attestations/,
    );
    const { index } = indexOf(join(box.dir, 'both'), 't');
    const archived = JSON.parse(
      execFileSync('tar', ['-xOf', join(box.dir, 'b.tar'), 'manifest.json'], { encoding: 'utf8' }),
    ) as { Config: string }[];
    const imageConfig = json<ImageManifest>(join(box.dir, 'both'), index.manifests[0]!.digest).config.digest;
    expect(archived[0]!.Config).toContain(imageConfig.slice(7));
  }, 600_000);
});

describe('multi-platform builds and BUILDKIT_SBOM_SCAN_* (FROM scratch: no base, no RUN)', () => {
  let box: BuildSandbox;
  beforeAll(() => {
    box = buildSandbox();
  });
  afterAll(() => {
    box.cleanup();
  });

  it('one attestation manifest per platform, each about its own image', async () => {
    const ctx = box.context('multi', {
      Dockerfile: 'FROM scratch\nCOPY node_modules /app/node_modules\n',
      'node_modules/left-pad/package.json': JSON.stringify({
        name: 'left-pad',
        version: '1.3.0',
        license: 'WTFPL',
      }),
    });
    await box.build(ctx, {
      platform: 'linux/amd64,linux/arm64',
      outputs: [`oci:${box.dir}/multi:t`],
      attestations: { sbom: {}, provenance: { mode: 'max', version: 'v0.2' } },
    });
    const { index } = indexOf(join(box.dir, 'multi'), 't');
    expect(index.manifests.map((m) => `${m.platform!.os}/${m.platform!.architecture}`)).toEqual([
      'linux/amd64',
      'linux/arm64',
      'unknown/unknown',
      'unknown/unknown',
    ]);
    for (const [i, attestation] of index.manifests.slice(2).entries()) {
      const image = index.manifests[i]!;
      expect(attestation.annotations?.['vnd.docker.reference.digest']).toBe(image.digest);
      const { statements } = statementsOf(join(box.dir, 'multi'), attestation.digest);
      for (const statement of statements)
        expect(statement.subject[0]!.digest.sha256).toBe(image.digest.slice(7));
      const spdx = spdxOf(statements);
      expectValidSpdx23(spdx);
      expect(spdx.packages.find((p) => p.name === 'left-pad')?.externalRefs?.[0]?.referenceLocator).toBe(
        'pkg:npm/left-pad@1.3.0',
      );
      const provenance = statements.find((s) => s.predicateType.startsWith('https://slsa.dev/'))!
        .predicate as {
        invocation: { parameters: { args: Record<string, string> } };
      };
      expect(provenance.invocation.parameters.args['platform']).toBe('linux/amd64,linux/arm64');
    }
  });

  it('BUILDKIT_SBOM_SCAN_CONTEXT and BUILDKIT_SBOM_SCAN_STAGE add an SBOM of the context and of the stage', async () => {
    const ctx = box.context('scan-args', {
      Dockerfile: [
        'FROM scratch AS build',
        'ARG BUILDKIT_SBOM_SCAN_STAGE=true',
        'COPY vendor /app/node_modules',
        'FROM scratch',
        'ARG BUILDKIT_SBOM_SCAN_CONTEXT=true',
        'COPY --from=build /app/node_modules/left-pad /app/node_modules/left-pad',
        '',
      ].join('\n'),
      'vendor/left-pad/package.json': JSON.stringify({ name: 'left-pad', version: '1.3.0' }),
      'vendor/isarray/package.json': JSON.stringify({ name: 'isarray', version: '2.0.5', license: 'MIT' }),
      'node_modules/dev-only/package.json': JSON.stringify({ name: 'dev-only', version: '0.0.1' }),
    });
    const out = join(box.dir, 'scan-args');
    await box.build(ctx, { outputs: [`oci:${out}:t`], attestations: { sbom: {} } });
    const { index } = indexOf(out, 't');
    const { statements } = statementsOf(out, index.manifests[1]!.digest);
    const documents = statements.map((s) => s.predicate as Spdx & { name: string });
    expect(documents.map((d) => d.name)).toEqual([index.manifests[0]!.digest, 'context', 'stage build']);
    const names = documents.map((d) =>
      d.packages
        .map((p) => p.name)
        .filter((n) => !n.startsWith('sha256:') && n !== 'context' && !n.startsWith('stage'))
        .sort(),
    );
    expect(names).toEqual([['left-pad'], ['dev-only'], ['isarray', 'left-pad']]);
    for (const document of documents) expectValidSpdx23(document);

    // Without the ARGs in the Dockerfile a --build-arg alone does nothing, as in BuildKit.
    const plain = box.context('scan-args-undeclared', {
      Dockerfile: 'FROM scratch\nCOPY vendor /app/node_modules\n',
      'vendor/left-pad/package.json': JSON.stringify({ name: 'left-pad', version: '1.3.0' }),
    });
    await box.build(plain, {
      outputs: [`oci:${box.dir}/undeclared:t`],
      buildArgs: { BUILDKIT_SBOM_SCAN_CONTEXT: 'true' },
      attestations: { sbom: {} },
    });
    const undeclared = indexOf(join(box.dir, 'undeclared'), 't');
    expect(
      statementsOf(join(box.dir, 'undeclared'), undeclared.index.manifests[1]!.digest).statements,
    ).toHaveLength(1);
  });
});
