import { StratumError } from '../../errors.js';

/**
 * Which ADD sources are git repositories, and what they ask for, as current BuildKit reads them
 * (frontend/dockerfile/dfgitutil/git_ref.go ParseGitRef, util/gitutil/git_url.go ParseURL,
 * util/sshutil/scpurl.go): `http(s)://…/repo.git` (the path must end in `.git`), any `git://`
 * or `ssh://` URL, and scp-style `user@host:path`. After `#` come `REF[:SUBDIR]`; the newer
 * query form (`?ref=…&subdir=…`, also `tag=`, `branch=`, `checksum=`/`commit=`,
 * `keep-git-dir`, `submodules`, `mtime=checkout|commit`) says the same. `github.com/org/repo`
 * without a scheme is a local path for ADD, as in BuildKit (its IndistinguishableFromLocal).
 */
export interface GitSource {
  /** The URL handed to the git CLI: no fragment or query, credentials kept. */
  readonly remote: string;
  /** The remote with any `user:password@` removed: for messages, keys and history. */
  readonly display: string;
  readonly scheme: 'http' | 'https' | 'ssh' | 'git';
  /** A branch, tag, full ref or commit; `''` for the remote's default branch. */
  readonly ref: string;
  /** A directory inside the repository whose contents are copied; `''` for the whole tree. */
  readonly subdir: string;
  /** From the query; the `--keep-git-dir` flag must agree with it. */
  readonly keepGitDir?: boolean;
  /** Submodules are checked out unless `submodules=false`. */
  readonly submodules: boolean;
  /** Expected commit (a hex prefix), from `checksum=`/`commit=` (or `--checksum`). */
  readonly checksum?: string;
  /** `checkout` (default: the files' mtimes are the checkout's time) or `commit` (the commit's time). */
  readonly mtime: 'checkout' | 'commit';
}

const SCHEME = /^([a-zA-Z0-9]+):\/\//;
const SCP_STYLE = /^([a-zA-Z0-9-_]+)@([a-zA-Z0-9-.]+):(.*?)(?:\?(.*?))?(?:#(.*))?$/;
const GIT_SCHEMES = new Set(['http', 'https', 'ssh', 'git']);

/** `user:password@` removed from a URL (scp-style `git@host:` keeps its user: it is no secret). */
export function redactCredentials(url: string): string {
  return url.replace(/^([a-zA-Z0-9]+:\/\/)[^/@]*@/, '$1');
}

/** Go's path.Join("/", subdir) with the leading slash removed. */
function cleanSubdir(subdir: string): string {
  const out: string[] = [];
  for (const part of subdir.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') out.pop();
    else out.push(part);
  }
  return out.join('/');
}

function parseBool(source: string, key: string, value: string | undefined): boolean {
  if (value === undefined || value === '') return true;
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(value)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(value)) return false;
  throw new StratumError('BUILD_FAILED', `ADD ${source}: invalid ${key} value: "${value}"`);
}

/** The git source `src` names, or undefined when it is not one (a local path or an http file). */
export function parseGitSource(src: string): GitSource | undefined {
  if (src.startsWith('./') || src.startsWith('../') || src.startsWith('github.com/')) return undefined;
  let scheme: GitSource['scheme'];
  let beforeQuery: string;
  let query = '';
  let fragment = '';
  const schemeMatch = SCHEME.exec(src);
  if (schemeMatch !== null) {
    const name = schemeMatch[1]!.toLowerCase();
    if (!GIT_SCHEMES.has(name)) return undefined;
    scheme = name as GitSource['scheme'];
    const hash = src.indexOf('#');
    const withoutFragment = hash < 0 ? src : src.slice(0, hash);
    fragment = hash < 0 ? '' : src.slice(hash + 1);
    const question = withoutFragment.indexOf('?');
    beforeQuery = question < 0 ? withoutFragment : withoutFragment.slice(0, question);
    query = question < 0 ? '' : withoutFragment.slice(question + 1);
    if (scheme === 'http' || scheme === 'https') {
      const path = beforeQuery.slice(schemeMatch[0].length).replace(/^[^/]*/, '');
      if (!path.endsWith('.git')) return undefined;
    }
  } else {
    const scp = SCP_STYLE.exec(src);
    if (scp === null) return undefined;
    scheme = 'ssh';
    beforeQuery = `${scp[1]}@${scp[2]}:${scp[3]}`;
    query = scp[4] ?? '';
    fragment = scp[5] ?? '';
  }
  const colon = fragment.indexOf(':');
  let ref = colon < 0 ? fragment : fragment.slice(0, colon);
  let subdir = colon < 0 ? '' : cleanSubdir(fragment.slice(colon + 1));
  const display = redactCredentials(beforeQuery);
  const what = `${display}${fragment === '' ? '' : `#${fragment}`}`;
  let keepGitDir: boolean | undefined;
  let submodules = true;
  let checksum: string | undefined;
  let mtime: GitSource['mtime'] = 'checkout';
  let tag = '';
  let branch = '';
  const seen = new Set<string>();
  for (const pair of query === '' ? [] : query.split('&')) {
    const eq = pair.indexOf('=');
    const key = decodeURIComponent(eq < 0 ? pair : pair.slice(0, eq));
    const value = eq < 0 ? undefined : decodeURIComponent(pair.slice(eq + 1).replace(/\+/g, ' '));
    if (seen.has(key))
      throw new StratumError('BUILD_FAILED', `ADD ${what}: query "${key}" has multiple values`);
    seen.add(key);
    if (
      (value === undefined || value === '') &&
      !['submodules', 'keep-git-dir', 'fetch-by-commit'].includes(key)
    )
      throw new StratumError('BUILD_FAILED', `ADD ${what}: query "${key}" has no value`);
    switch (key) {
      case 'ref':
        if (ref !== '' && ref !== value)
          throw new StratumError('BUILD_FAILED', `ADD ${what}: ref conflicts: "${ref}" vs "${value}"`);
        ref = value!;
        break;
      case 'tag':
        tag = value!;
        break;
      case 'branch':
        branch = value!;
        break;
      case 'subdir':
        if (subdir !== '' && subdir !== value)
          throw new StratumError('BUILD_FAILED', `ADD ${what}: subdir conflicts: "${subdir}" vs "${value}"`);
        subdir = cleanSubdir(value!);
        break;
      case 'checksum':
      case 'commit':
        checksum = value!;
        break;
      case 'keep-git-dir':
        keepGitDir = parseBool(what, key, value);
        break;
      case 'submodules':
        submodules = parseBool(what, key, value);
        break;
      case 'mtime':
        if (value !== 'checkout' && value !== 'commit')
          throw new StratumError(
            'BUILD_FAILED',
            `ADD ${what}: invalid mtime value: "${value}" (must be "checkout" or "commit")`,
          );
        mtime = value;
        break;
      case 'fetch-by-commit':
        // Only changes how BuildKit fetches; the files are the same.
        break;
      default:
        throw new StratumError('BUILD_FAILED', `ADD ${what}: unexpected query "${key}"`);
    }
  }
  for (const [given, prefix] of [
    [tag, 'refs/tags/'],
    [branch, 'refs/heads/'],
  ] as const) {
    if (given === '') continue;
    if (tag !== '' && branch !== '')
      throw new StratumError('BUILD_FAILED', `ADD ${what}: branch conflicts with tag`);
    const full = given.startsWith(prefix) ? given : `${prefix}${given}`;
    if (ref !== '' && ref !== full)
      throw new StratumError('BUILD_FAILED', `ADD ${what}: ref conflicts: "${ref}" vs "${full}"`);
    ref = full;
  }
  return {
    remote: beforeQuery,
    display,
    scheme,
    ref,
    subdir,
    ...(keepGitDir === undefined ? {} : { keepGitDir }),
    submodules,
    ...(checksum === undefined ? {} : { checksum }),
    mtime,
  };
}

/** How the source reads in messages and history: no credentials, the ref and subdir kept. */
export function displayGitSource(source: GitSource): string {
  const fragment =
    source.ref === '' && source.subdir === ''
      ? ''
      : `#${source.ref}${source.subdir === '' ? '' : `:${source.subdir}`}`;
  return `${source.display}${fragment}`;
}
