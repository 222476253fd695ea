/**
 * Does a path look like it holds a secret? Only names are looked at (content never is): the goal
 * is to flag loudly what a reader should check, not to be a secret scanner.
 */

const EXACT_NAMES = new Map<string, string>([
  ['.npmrc', 'npm registry credentials'],
  ['.netrc', 'netrc login credentials'],
  ['.pypirc', 'PyPI credentials'],
  ['.git-credentials', 'git credentials'],
  ['.pgpass', 'PostgreSQL password file'],
  ['.htpasswd', 'htpasswd file'],
  ['.dockercfg', 'Docker registry credentials'],
  ['.env', 'environment file'],
  ['credentials', 'credentials file'],
  ['kubeconfig', 'Kubernetes credentials'],
  ['.bash_history', 'shell history'],
]);

const KEY_NAMES = /^id_(rsa|dsa|ecdsa|ed25519)(_sk)?$/;
const KEY_EXTENSIONS = /\.(pem|key|p12|pfx|jks|keystore|ppk|kdbx|ovpn|gpg|asc)$/;
const WORDS = /(secret|token|passwords?|credential|private[-_]?key|api[-_]?key|apikey|access[-_]?key)/;

/** The reason a path looks secret, or undefined. */
export function secretReason(path: string): string | undefined {
  const lower = path.toLowerCase();
  const base = lower.slice(lower.lastIndexOf('/') + 1);
  const exact = EXACT_NAMES.get(base);
  // etc/shadow is left out on purpose: every useradd rewrites it, and base images hold no hashes.
  if (exact !== undefined) return exact;
  if (KEY_NAMES.test(base)) return 'SSH private key';
  if (base.startsWith('.env.') || base.endsWith('.env')) return 'environment file';
  if (KEY_EXTENSIONS.test(base)) return `key or certificate file (${base.slice(base.lastIndexOf('.'))})`;
  if (lower.endsWith('.docker/config.json')) return 'Docker registry credentials';
  if (lower.endsWith('.kube/config')) return 'Kubernetes credentials';
  if (lower.endsWith('.aws/credentials') || lower.endsWith('.aws/config')) return 'AWS credentials';
  if (lower.includes('.ssh/') && !base.endsWith('.pub') && base !== 'known_hosts') return 'file under .ssh/';
  const word = WORDS.exec(base);
  if (word) return `name contains "${word[1]}"`;
  return undefined;
}
