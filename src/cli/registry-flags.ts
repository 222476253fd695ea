import { Option, type Command } from 'commander';

/**
 * The registry flags, declared once for every command that reaches a registry (build, cache
 * diff, pull, push, login, logout, verify-attestation, inspect, copy), so their spelling and help
 * agree.
 */

/** Accumulates a repeatable flag's values. */
export function collect(value: string, previous: readonly string[] = []): string[] {
  return [...previous, value];
}

export interface RegistryFlags {
  readonly insecureRegistry?: readonly string[];
  readonly authfile?: string;
}

/** `--insecure-registry HOST` (repeatable). */
export function insecureRegistryOption(): Option {
  return new Option(
    '--insecure-registry <host>',
    'reach this registry over plain HTTP or unverified TLS (repeatable)',
  ).argParser(collect);
}

/** `--authfile PATH`, `use` saying what the command does with it. */
export function authfileOption(use = 'Docker config.json with credentials'): Option {
  return new Option('--authfile <path>', `${use} (default: $REGISTRY_AUTH_FILE, $DOCKER_CONFIG, ~/.docker)`);
}

/** Both flags, for the commands that take both (pull, push, login). */
export function withRegistryFlags(command: Command, authfileUse?: string): Command {
  return command.addOption(insecureRegistryOption()).addOption(authfileOption(authfileUse));
}

/** The flags as the registry client's options. */
export function registryOptions(flags: RegistryFlags): {
  insecureRegistries?: readonly string[];
  authFile?: string;
} {
  return {
    ...(flags.insecureRegistry !== undefined ? { insecureRegistries: flags.insecureRegistry } : {}),
    ...(flags.authfile !== undefined ? { authFile: flags.authfile } : {}),
  };
}
