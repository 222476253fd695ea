import type { Command } from 'commander';
import { imageSbom, openImage, parsePlatform, readAttestations } from '../api/cli.js';

export function registerSbom(program: Command): void {
  program
    .command('sbom')
    .description(
      "print an image's SBOM as SPDX 2.3 JSON: the one attached to it (--sbom), or, for an image without one (built by anything), one made by scanning its filesystem (dpkg, apk, npm, Python, Go binaries)",
    )
    .argument(
      '<image>',
      'oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE[:NAME], docker://REF, docker-daemon:NAME, or a stored name',
    )
    .option(
      '--platform <os/arch[/variant]>',
      'platform to pick from a multi-platform image (default: this host)',
    )
    .option(
      '--all',
      'every attached SPDX document (the image, then BUILDKIT_SBOM_SCAN_CONTEXT / _STAGE ones), as a JSON array',
    )
    .option('--scan', 'scan the filesystem even when an SBOM is attached')
    .action(async (image: string, options: { platform?: string; all?: boolean; scan?: boolean }) => {
      const source = await openImage(
        image,
        options.platform === undefined ? {} : { platform: parsePlatform(options.platform) },
      );
      try {
        const attestations =
          options.scan === true ? { manifests: [] } : await readAttestations(image, { withStatements: true });
        const sbom = await imageSbom(source, attestations, { name: image });
        process.stderr.write(
          sbom.source === 'attestation'
            ? `sbom: attached to ${source.manifest.digest}\n`
            : `sbom: scanned ${source.manifest.digest} (${options.scan === true ? '--scan' : 'no SBOM attached'})\n`,
        );
        const output = options.all === true ? sbom.documents : sbom.documents[0];
        process.stdout.write(`${JSON.stringify(output, null, 2)}\n`);
      } finally {
        await source.close();
      }
    });
}
