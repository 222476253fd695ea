import { readFileSync } from 'node:fs';

/**
 * `NODE_EXTRA_CA_CERTS` (a private CA's certificates, for a company's registry) costs Node 20
 * ~50 ms at every start: it builds its whole certificate store then, before any JavaScript runs
 * (nodejs/node#40524; Node 24 builds it when TLS is first used, measured ~4 ms). stratum's own
 * second process, its re-start in a user namespace (rootless, or root in a container), would pay
 * that again; so the re-start gets the file's name under HANDED_OVER_ENV instead, and stratum's
 * TLS clients (the registry's undici agents, ADD's downloads) are given the same trust when they
 * are made: Node's bundled roots plus the file's certificates. The first process, which has the
 * variable itself, already warned if the file could not be read, as Node does.
 */
export const HANDED_OVER_ENV = 'STRATUM_EXTRA_CA_CERTS';

/** The environment for stratum's re-start: NODE_EXTRA_CA_CERTS handed over where that saves time. */
export function environmentForRestart(
  env: NodeJS.ProcessEnv,
  nodeVersion = process.versions.node,
  execArgv: readonly string[] = process.execArgv,
): NodeJS.ProcessEnv {
  const file = env['NODE_EXTRA_CA_CERTS'];
  if (file === undefined || file === '') return env;
  // Measured eager on Node 20, lazy on Node 24: from 24 on there is nothing to save.
  if (Number(nodeVersion.split('.')[0]) >= 24) return env;
  // A flag choosing another store (OpenSSL's, the system's) is Node's to combine with the file.
  if (/--use-(openssl|system|bundled)-ca/.test(`${env['NODE_OPTIONS'] ?? ''} ${execArgv.join(' ')}`))
    return env;
  const { NODE_EXTRA_CA_CERTS: _handedOver, ...rest } = env;
  return { ...rest, [HANDED_OVER_ENV]: file };
}

let handedOver: Promise<{ readonly ca: readonly string[] } | undefined> | undefined;

/**
 * undici `connect` options with the handed-over certificates, or undefined where there are none;
 * read once (callers asking at the same time share the reading). node:tls is loaded here, not
 * with this module: a build that talks to no registry never needs it (~2.5 ms of a start).
 */
export function handedOverTrust(): Promise<{ readonly ca: readonly string[] } | undefined> {
  handedOver ??= (async () => {
    const file = process.env[HANDED_OVER_ENV];
    if (file === undefined || file === '') return undefined;
    const { rootCertificates } = await import('node:tls');
    try {
      return { ca: [...rootCertificates, readFileSync(file, 'utf8')] };
    } catch {
      // Node's own rule for an unreadable file: the bundled roots alone (the warning was given).
      return undefined;
    }
  })();
  return handedOver;
}
