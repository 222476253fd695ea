import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { StratumError, loadPublicKey, verifyAttestations } from '../api/cli.js';
import { insecureRegistryOption } from './registry-flags.js';

export function registerVerifyAttestation(program: Command): void {
  program
    .command('verify-attestation')
    .description(
      "check the signed provenance beside an image (built with --sign-key; cosign's sha256-DIGEST.att tag) against a public key, offline; exit 1 unless at least one signature verifies and names the image",
    )
    .argument('<image>', 'oci:DIR[:TAG], docker://REF, or a stored name')
    .requiredOption('--key <file>', 'the PEM public key (ECDSA P-256 or Ed25519)')
    .addOption(insecureRegistryOption().default([]))
    .action(async (image: string, options: { key: string; insecureRegistry: string[] }) => {
      let pem: Buffer;
      try {
        pem = readFileSync(options.key);
      } catch (error) {
        throw new StratumError('NOT_FOUND', `--key ${options.key}: ${(error as Error).message}`);
      }
      const key = loadPublicKey(pem, `--key ${options.key}`);
      const result = await verifyAttestations(image, key, { insecureRegistries: options.insecureRegistry });
      for (const attestation of result.verified)
        process.stdout.write(`verified ${attestation.predicateType} ${attestation.digest}\n`);
      if (result.verified.length === 0)
        throw new StratumError(
          'DIGEST_MISMATCH',
          `${image} (${result.digest}): no signed attestation verifies with ${options.key}${result.rejected > 0 ? ` (${result.rejected} rejected)` : ''}`,
        );
      if (result.rejected > 0)
        process.stderr.write(`${result.rejected} signed attestation(s) did not verify\n`);
    });
}
