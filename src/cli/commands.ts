import type { Command } from 'commander';

/** Each command lives in its own module and adds itself to the program. */
export type RegisterCommand = (program: Command) => void;

/**
 * The commands by name, each loaded only when used: importing a command module pulls in the
 * parts of stratum it needs (the build pulls in nearly all of it), so `stratum --version` or
 * `stratum parse` should not pay for the executor, the registry client and the analyzers.
 */
export interface LazyCommand {
  /** The top-level command word(s) the module registers. */
  readonly names: readonly string[];
  readonly load: () => Promise<RegisterCommand>;
}

export const commands: readonly LazyCommand[] = [
  { names: ['parse'], load: async () => (await import('./parse.js')).registerParse },
  { names: ['inspect'], load: async () => (await import('./inspect.js')).registerInspect },
  { names: ['copy'], load: async () => (await import('./copy.js')).registerCopy },
  { names: ['pull'], load: async () => (await import('./pull.js')).registerPull },
  { names: ['push'], load: async () => (await import('./push.js')).registerPush },
  { names: ['login', 'logout'], load: async () => (await import('./login.js')).registerLogin },
  { names: ['build'], load: async () => (await import('./build.js')).registerBuild },
  { names: ['cache'], load: async () => (await import('./cache.js')).registerCache },
  { names: ['images', 'rmi'], load: async () => (await import('./images.js')).registerImages },
  { names: ['diff'], load: async () => (await import('./diff.js')).registerDiff },
  { names: ['analyze'], load: async () => (await import('./analyze.js')).registerAnalyze },
  { names: ['du'], load: async () => (await import('./du.js')).registerDu },
  { names: ['sbom'], load: async () => (await import('./sbom.js')).registerSbom },
  {
    names: ['verify-attestation'],
    load: async () => (await import('./verify-attestation.js')).registerVerifyAttestation,
  },
];

/**
 * The commands to load for these arguments: only the one named (the first word that is not an
 * option; the program itself takes no option with a value), none for a bare `--version`, and
 * every command otherwise, so help and "unknown command" messages list them all.
 */
export function commandsFor(argv: readonly string[]): readonly LazyCommand[] {
  const word = argv.find((arg) => !arg.startsWith('-'));
  if (word === undefined && argv.some((arg) => arg === '-V' || arg === '--version')) return [];
  const named = commands.find((command) => word !== undefined && command.names.includes(word));
  return named === undefined ? commands : [named];
}
