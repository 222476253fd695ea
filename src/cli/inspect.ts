import type { Command } from 'commander';
import { insecureRegistryOption, registryOptions, type RegistryFlags } from './registry-flags.js';
import {
  humanSize,
  oneLine,
  openImage,
  parsePlatform,
  readAttestations,
  summarizeImage,
  type AttestationManifest,
  type ImageSummary,
} from '../api/cli.js';

function render(summary: ImageSummary, attestations: readonly AttestationManifest[]): string {
  const lines = [
    `Name:      ${summary.name}`,
    `Digest:    ${summary.digest}`,
    `MediaType: ${summary.mediaType}`,
    `Platform:  ${summary.platform}`,
  ];
  if (summary.index !== undefined) {
    lines.push(`Index:     ${summary.index.digest}`);
    // Attestation manifests sit in the index as unknown/unknown: they are listed below instead.
    const platforms = summary.index.platforms.filter((platform) => platform !== 'unknown/unknown');
    lines.push(`Platforms: ${platforms.join(', ')}`);
  }
  if (summary.created !== undefined) lines.push(`Created:   ${summary.created}`);
  if (summary.author !== undefined) lines.push(`Author:    ${summary.author}`);
  lines.push(`Config:    ${summary.configDigest}`);
  lines.push(`Size:      ${humanSize(summary.size)}`);
  const config = summary.config;
  const fields: [string, unknown][] = [
    ['User', config.User],
    ['WorkingDir', config.WorkingDir],
    ['Entrypoint', config.Entrypoint],
    ['Cmd', config.Cmd],
    ['Shell', config.Shell],
    ['StopSignal', config.StopSignal],
    ['ExposedPorts', config.ExposedPorts ? Object.keys(config.ExposedPorts) : undefined],
    ['Volumes', config.Volumes ? Object.keys(config.Volumes) : undefined],
    ['Healthcheck', config.Healthcheck?.Test],
    ['OnBuild', config.OnBuild],
  ];
  for (const [name, value] of fields) {
    if (value !== undefined && value !== null && value !== '')
      lines.push(`  ${name}: ${JSON.stringify(value)}`);
  }
  for (const env of config.Env ?? []) lines.push(`  Env: ${env}`);
  for (const [key, value] of Object.entries(config.Labels ?? {})) lines.push(`  Label: ${key}=${value}`);
  lines.push(`Layers:    ${summary.layers.length}`);
  for (const layer of summary.layers) {
    const made = layer.createdBy === undefined ? '' : `  ${oneLine(layer.createdBy)}`;
    lines.push(`  ${layer.digest}  ${humanSize(layer.size).padStart(8)}${made}`);
  }
  for (const manifest of attestations) {
    lines.push(`Attestations: ${manifest.digest}`);
    for (const statement of manifest.statements)
      lines.push(
        `  ${statement.digest}  ${humanSize(statement.size).padStart(8)}  ${statement.predicateType}`,
      );
  }
  return lines.join('\n') + '\n';
}

export function registerInspect(program: Command): void {
  program
    .command('inspect')
    .description(
      'show an image: manifest digest, platform, config, each layer with the step that made it, and its attestations (provenance, SBOM)',
    )
    .argument(
      '<image>',
      'oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE[:NAME], docker-daemon:NAME, or a stored name',
    )
    .option('--json', 'print the summary as JSON')
    .option(
      '--platform <os/arch[/variant]>',
      'platform to pick from a multi-platform image (default: this host)',
    )
    .addOption(insecureRegistryOption())
    .action(async (image: string, options: { json?: boolean; platform?: string } & RegistryFlags) => {
      const insecure = registryOptions(options);
      const source = await openImage(image, {
        ...insecure,
        ...(options.platform === undefined ? {} : { platform: parsePlatform(options.platform) }),
      });
      try {
        const summary = summarizeImage(source);
        // BuildKit's attestation manifests about this image (none in a docker-archive or the daemon).
        const attestations = (await readAttestations(image, insecure)).manifests.filter(
          (manifest) => manifest.subject === source.manifest.digest,
        );
        process.stdout.write(
          options.json === true
            ? JSON.stringify({ ...summary, attestations }, null, 2) + '\n'
            : render(summary, attestations),
        );
      } finally {
        await source.close();
      }
    });
}
