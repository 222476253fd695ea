import { resolve } from 'node:path';
import { StratumError } from '../errors.js';
import type { Ulimit } from '../executor/sandbox/index.js';

/**
 * The text forms of `stratum build`'s flags, as `docker buildx build` spells them, turned into
 * plain data for buildImage. Each parser refuses a malformed value with a usage error naming the
 * flag and the value, before any work starts.
 */

/** Where a secret's bytes come from (`--secret id=ID,src=PATH` or `id=ID,env=VAR`). */
export type SecretSource = { readonly file: string } | { readonly env: string };

function fieldsOf(flag: string, value: string): Map<string, string> {
  const fields = new Map<string, string>();
  for (const field of value.split(',')) {
    const eq = field.indexOf('=');
    const key = eq < 0 ? field : field.slice(0, eq);
    if (fields.has(key)) throw new StratumError('USAGE', `${flag} ${value}: "${key}" given twice`);
    fields.set(key, eq < 0 ? '' : field.slice(eq + 1));
  }
  return fields;
}

function refuseUnknown(
  flag: string,
  value: string,
  fields: Map<string, string>,
  known: readonly string[],
): void {
  for (const key of fields.keys()) {
    if (!known.includes(key))
      throw new StratumError('USAGE', `${flag} ${value}: unknown key "${key}" (known: ${known.join(', ')})`);
  }
}

/**
 * `--secret id=ID,src=PATH` (`source=`), `id=ID,env=VAR`, or `id=ID` alone (buildx: the
 * variable ID if it is set, else the file ID). `type=file|env` is accepted as buildx does.
 */
export function parseSecretFlags(values: readonly string[]): Record<string, SecretSource> {
  const out: Record<string, SecretSource> = {};
  for (const value of values) {
    const fields = fieldsOf('--secret', value);
    refuseUnknown('--secret', value, fields, ['id', 'src', 'source', 'env', 'type']);
    const id = fields.get('id');
    if (id === undefined || id === '')
      throw new StratumError('USAGE', `--secret ${value}: expected id=ID,src=PATH or id=ID,env=VAR`);
    const type = fields.get('type');
    if (type !== undefined && type !== 'file' && type !== 'env')
      throw new StratumError('USAGE', `--secret ${value}: type=${type} is not file or env`);
    const src = fields.get('src') ?? fields.get('source');
    const env = fields.get('env');
    if (src !== undefined && env !== undefined)
      throw new StratumError('USAGE', `--secret ${value}: give src= or env=, not both`);
    if (src === '' || env === '') throw new StratumError('USAGE', `--secret ${value}: empty src= or env=`);
    if (type === 'env' || env !== undefined) out[id] = { env: env ?? src ?? id };
    else if (src !== undefined || type === 'file') out[id] = { file: resolve(src ?? id) };
    else out[id] = process.env[id] !== undefined ? { env: id } : { file: resolve(id) };
  }
  return out;
}

/** `--ssh default` (the agent at $SSH_AUTH_SOCK), `--ssh ID=SOCKET[,SOCKET...]` (the first is used). */
export function parseSshFlags(
  values: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const value of values) {
    const eq = value.indexOf('=');
    const id = eq < 0 ? value : value.slice(0, eq);
    if (id === '') throw new StratumError('USAGE', `--ssh ${value}: expected default or ID=SOCKET`);
    const paths =
      eq < 0
        ? []
        : value
            .slice(eq + 1)
            .split(',')
            .filter((path) => path !== '');
    const socket = paths[0] ?? env['SSH_AUTH_SOCK'];
    if (socket === undefined || socket === '') {
      throw new StratumError(
        'USAGE',
        `--ssh ${value}: no socket given and SSH_AUTH_SOCK is not set (start ssh-agent, or give ${id}=SOCKET)`,
      );
    }
    out[id] = resolve(socket);
  }
  return out;
}

/** `--label K=V` (repeatable); `K` alone sets an empty value, as Docker does. */
export function parseKeyValues(flag: string, values: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const value of values) {
    const eq = value.indexOf('=');
    const key = eq < 0 ? value : value.slice(0, eq);
    if (key === '') throw new StratumError('USAGE', `${flag} ${value}: the key is empty`);
    out[key] = eq < 0 ? '' : value.slice(eq + 1);
  }
  return out;
}

/**
 * `--annotation K=V` or `manifest:K=V`: annotations on the image manifest. buildx's other
 * places (`index:`, `manifest-descriptor:`, `index-descriptor:`) need an index, which a
 * single-platform build does not write; they are refused by name.
 */
export function parseAnnotations(values: readonly string[]): Record<string, string> {
  const plain: string[] = [];
  for (const value of values) {
    const match = /^([a-z-]+)(?:\[[^\]]*\])?:(.*)$/.exec(value);
    const eq = value.indexOf('=');
    const colon = value.indexOf(':');
    if (match !== null && colon < eq) {
      if (match[1] !== 'manifest') {
        throw new StratumError(
          'USAGE',
          `--annotation ${value}: "${match[1]}:" annotations are not supported (a single-platform build writes no index); use manifest:KEY=VALUE`,
        );
      }
      plain.push(match[2]!);
    } else plain.push(value);
  }
  return parseKeyValues('--annotation', plain);
}

/** What a Dockerfile may ask for only when the person running the build grants it (BuildKit's entitlements). */
export type Entitlement = 'network.host' | 'security.insecure';

/** `--allow network.host,security.insecure` (repeatable, comma-separated as buildx takes it). */
export function parseAllow(values: readonly string[]): Entitlement[] {
  const granted: Entitlement[] = [];
  for (const value of values.flatMap((entry) => entry.split(','))) {
    const name = value.trim();
    if (name !== 'network.host' && name !== 'security.insecure') {
      throw new StratumError(
        'USAGE',
        `--allow ${value}: unknown entitlement (valid: network.host, security.insecure)`,
      );
    }
    if (!granted.includes(name)) granted.push(name);
  }
  return granted;
}

/** `--add-host NAME:IP` (also `NAME=IP`, as buildx accepts): an /etc/hosts line for RUN. */
export function parseAddHosts(values: readonly string[]): { readonly host: string; readonly ip: string }[] {
  return values.map((value) => {
    const separator = value.includes('=') ? value.indexOf('=') : value.indexOf(':');
    const host = value.slice(0, separator);
    const ip = value.slice(separator + 1).replace(/^\[(.*)\]$/, '$1');
    if (separator <= 0 || !/^[A-Za-z0-9.-]+$/.test(host))
      throw new StratumError('USAGE', `--add-host ${value}: expected HOST:IP`);
    if (!/^[0-9.]+$/.test(ip) && !/^[0-9a-fA-F:.]+$/.test(ip))
      throw new StratumError('USAGE', `--add-host ${value}: "${ip}" is not an IP address`);
    return { host, ip };
  });
}

/** Docker's ulimit names (`--ulimit nofile=1024:2048`); each maps to a prlimit(1) option. */
const ULIMIT_NAMES = [
  'core',
  'cpu',
  'data',
  'fsize',
  'locks',
  'memlock',
  'msgqueue',
  'nice',
  'nofile',
  'nproc',
  'rss',
  'rtprio',
  'rttime',
  'sigpending',
  'stack',
  'as',
];

export function parseUlimits(values: readonly string[]): Ulimit[] {
  return values.map((value) => {
    const match = /^([a-z]+)=(-?\d+|unlimited)(?::(-?\d+|unlimited))?$/.exec(value);
    if (match === null) throw new StratumError('USAGE', `--ulimit ${value}: expected NAME=SOFT[:HARD]`);
    const name = match[1]!;
    if (!ULIMIT_NAMES.includes(name))
      throw new StratumError(
        'USAGE',
        `--ulimit ${value}: unknown limit "${name}" (known: ${ULIMIT_NAMES.join(', ')})`,
      );
    const limit = (text: string): number | 'unlimited' =>
      text === 'unlimited' || text === '-1' ? 'unlimited' : Number(text);
    const soft = limit(match[2]!);
    const hard = match[3] === undefined ? soft : limit(match[3]);
    if (soft !== 'unlimited' && (hard === 'unlimited' ? false : soft > hard))
      throw new StratumError('USAGE', `--ulimit ${value}: the soft limit is above the hard limit`);
    return { name, soft, hard };
  });
}
