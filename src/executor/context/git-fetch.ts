import { spawn } from 'node:child_process';
import { constants } from 'node:fs';
import { access, lstat, readdir, rename, rm, utimes, lutimes } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { StratumError } from '../../errors.js';
import { displayGitSource, type GitSource } from './git-url.js';

/**
 * ADD of a git repository through the git CLI, as BuildKit's source/git does it: the ref is
 * resolved to a commit with `git ls-remote` first (that commit is the cache key, so a hit
 * fetches nothing), then one shallow fetch of that ref, a checkout, submodules, and `.git`
 * removed unless kept. git runs with BuildKit's environment: no system or user config
 * (GIT_CONFIG_NOSYSTEM, HOME=/dev/null), never a terminal prompt, umask 022 (so files are 0644
 * or 0755 as git records them, whatever the builder's umask).
 */

export interface GitRunOptions {
  readonly signal?: AbortSignal;
  /** The ssh agent socket for `git@`/`ssh://` remotes (`--ssh default`). */
  readonly sshAuthSock?: string;
  /** PATH to find git on (default: this process's). */
  readonly path?: string;
}

export interface ResolvedGitRef {
  /** The commit the files come from. */
  readonly commit: string;
  /** The object the ref names: an annotated tag's own id, else the commit. */
  readonly object: string;
  /** The full ref name fetched (`refs/tags/v1`), or the commit when one was given. */
  readonly ref: string;
}

const FULL_SHA = /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/;

/** Whether an executable `git` is on PATH; the check is ours so the message can name the source. */
async function findGit(path: string | undefined): Promise<string | undefined> {
  for (const dir of (path ?? process.env['PATH'] ?? '').split(delimiter)) {
    if (dir === '') continue;
    const candidate = join(dir, 'git');
    if (
      await access(candidate, constants.X_OK).then(
        () => true,
        () => false,
      )
    )
      return candidate;
  }
  return undefined;
}

class GitCli {
  private constructor(
    private readonly git: string,
    private readonly source: GitSource,
    private readonly options: GitRunOptions,
  ) {}

  static async open(source: GitSource, options: GitRunOptions): Promise<GitCli> {
    const git = await findGit(options.path);
    if (git === undefined) {
      throw new StratumError(
        'UNSUPPORTED',
        `ADD ${displayGitSource(source)}: git sources need the git command, which is not on PATH (Debian: apt-get install git)`,
      );
    }
    if (source.scheme === 'ssh' && options.sshAuthSock === undefined) {
      throw new StratumError(
        'BUILD_FAILED',
        `ADD ${displayGitSource(source)}: an ssh remote needs an ssh agent: build with --ssh default`,
      );
    }
    return new GitCli(git, source, options);
  }

  /** Runs git (under umask 022) and returns its standard output; failures name the source, never credentials. */
  run(args: readonly string[], cwd?: string): Promise<string> {
    const env: NodeJS.ProcessEnv = {
      PATH: this.options.path ?? process.env['PATH'] ?? '/usr/bin:/bin',
      GIT_TERMINAL_PROMPT: '0',
      GIT_CONFIG_NOSYSTEM: '1',
      HOME: '/dev/null',
      LC_ALL: 'C',
      GIT_SSH_COMMAND: 'ssh -F /dev/null -o StrictHostKeyChecking=no',
      ...(this.options.sshAuthSock === undefined ? {} : { SSH_AUTH_SOCK: this.options.sshAuthSock }),
    };
    return new Promise((resolvePromise, reject) => {
      const child = spawn('/bin/sh', ['-c', 'umask 022 && exec "$0" "$@"', this.git, ...args], {
        cwd,
        env,
        stdio: ['ignore', 'pipe', 'pipe'],
        ...(this.options.signal ? { signal: this.options.signal } : {}),
      });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
      child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
      child.on('error', reject);
      child.on('close', (code) => {
        if (code === 0) {
          resolvePromise(Buffer.concat(out).toString('utf8'));
          return;
        }
        const lines = Buffer.concat(err)
          .toString('utf8')
          .split('\n')
          .map((line) => line.trim())
          .filter((line) => line !== '' && !line.startsWith('warning: unable to access'));
        const detail = (
          lines.find((line) => /^(fatal|error):/.test(line)) ??
          lines[0] ??
          `exit status ${code}`
        ).replaceAll(this.source.remote, this.source.display);
        reject(new GitCommandError(`ADD ${displayGitSource(this.source)}: git ${args[0]}: ${detail}`));
      });
    });
  }
}

class GitCommandError extends StratumError {
  constructor(message: string) {
    super('BUILD_FAILED', message);
  }
}

/**
 * The commit a source names, as BuildKit's resolveMetadata: a full commit id is taken as is;
 * otherwise `ls-remote` of the ref (the default branch when none), where a branch wins over a
 * tag of the same name and an annotated tag is peeled to its commit.
 */
export async function resolveGitRef(source: GitSource, options: GitRunOptions = {}): Promise<ResolvedGitRef> {
  const git = await GitCli.open(source, options);
  const what = displayGitSource(source);
  let ref = source.ref;
  if (FULL_SHA.test(ref)) {
    checkChecksum(source, ref, undefined);
    return { commit: ref, object: ref, ref };
  }
  if (ref === '') {
    const head = await git.run(['ls-remote', '--symref', '--', source.remote, 'HEAD']);
    const match = /^ref: (\S+)\tHEAD$/m.exec(head);
    if (match === null)
      throw new StratumError('BUILD_FAILED', `ADD ${what}: could not find the repository's default branch`);
    ref = match[1]!;
  }
  const listing = await git.run(['ls-remote', '--', source.remote, ref, `${ref}^{}`]);
  const bare = ref.replace(/^refs\/(heads\/|tags\/)?/, '');
  const partial = `refs/${ref.replace(/^refs\//, '')}`;
  const head = `refs/heads/${bare}`;
  const tag = `refs/tags/${bare}`;
  let sha = '';
  let used = '';
  let headSha = '';
  let tagSha = '';
  let peeled = '';
  for (const line of listing.split('\n')) {
    const [lineSha, lineRef] = line.split('\t');
    if (lineSha === undefined || lineRef === undefined) continue;
    if (lineRef === head) headSha = lineSha;
    else if (lineRef === tag) tagSha = lineSha;
    else if (lineRef === `${tag}^{}`) peeled = lineSha;
    else if (lineRef === partial) {
      sha = lineSha;
      used = lineRef;
    }
  }
  if (sha === '' && headSha !== '') {
    sha = headSha;
    used = head;
  }
  if (sha !== '') peeled = '';
  if (sha === '' && tagSha !== '') {
    sha = tagSha;
    used = tag;
  }
  if (sha === '') throw new StratumError('NOT_FOUND', `ADD ${what}: the repository has no ref ${ref}`);
  const commit = peeled === '' ? sha : peeled;
  checkChecksum(source, commit, sha);
  return { commit, object: sha, ref: used };
}

function checkChecksum(source: GitSource, commit: string, object: string | undefined): void {
  if (source.checksum === undefined) return;
  if (!/^[0-9a-fA-F]+$/.test(source.checksum))
    throw new StratumError(
      'BUILD_FAILED',
      `ADD ${displayGitSource(source)}: invalid checksum ${source.checksum} for Git URL, expected hex commit hash`,
    );
  const wanted = source.checksum.toLowerCase();
  if (commit.startsWith(wanted) || (object !== undefined && object.startsWith(wanted))) return;
  throw new StratumError(
    'DIGEST_MISMATCH',
    `ADD ${displayGitSource(source)}: expected checksum to match ${source.checksum}, got ${commit}`,
  );
}

/**
 * Fetches the resolved commit into `dir` and leaves there what ADD copies: the tree (or the
 * subdirectory's contents), with `.git` only when kept (and no subdirectory was asked for,
 * as BuildKit). The remote's credentials are never written into a kept `.git`.
 */
export async function checkoutGit(
  source: GitSource,
  resolved: ResolvedGitRef,
  dir: string,
  keepGitDir: boolean,
  options: GitRunOptions = {},
): Promise<string> {
  const git = await GitCli.open(source, options);
  const what = displayGitSource(source);
  await git.run(['-c', 'init.defaultBranch=master', 'init', '-q', dir]);
  await git.run(['remote', 'add', 'origin', source.remote], dir);
  const isCommit = resolved.ref === resolved.commit;
  const refspec = isCommit ? resolved.commit : `+${resolved.ref}:${resolved.ref}`;
  // Shallow first; git's dumb HTTP transport cannot do shallow fetches, so then a full one.
  try {
    await git.run(['fetch', '-q', '--depth=1', '--no-tags', 'origin', refspec], dir);
  } catch (error) {
    if (!(error instanceof GitCommandError)) throw error;
    await git.run(
      ['fetch', '-q', '--no-tags', 'origin', isCommit ? '+refs/*:refs/remotes/origin/*' : refspec],
      dir,
    );
  }
  const fetched = (await git.run(['rev-parse', `${resolved.commit}^{commit}`], dir).catch(() => '')).trim();
  if (fetched !== resolved.commit) {
    throw new StratumError(
      'BUILD_FAILED',
      `ADD ${what}: ${resolved.ref} moved while it was fetched (now not ${resolved.commit}); build again`,
    );
  }
  await git.run(['-c', 'advice.detachedHead=false', 'checkout', '-q', '--detach', resolved.commit], dir);
  const entries = await readdir(dir);
  if (source.submodules && entries.includes('.gitmodules')) {
    try {
      await git.run(['submodule', 'update', '-q', '--init', '--recursive', '--depth=1'], dir);
    } catch (error) {
      if (!(error instanceof GitCommandError)) throw error;
      await git.run(['submodule', 'update', '-q', '--init', '--recursive'], dir);
    }
  }
  if (source.mtime === 'commit') {
    const seconds = Number((await git.run(['log', '-1', '--format=%ct', resolved.commit], dir)).trim());
    await setMtimes(dir, seconds);
  }
  const keep = keepGitDir && source.subdir === '';
  if (keep) {
    await git.run(['remote', 'set-url', 'origin', source.display], dir);
    await git.run(['reflog', 'expire', '--all', '--expire=now'], dir);
    await rm(join(dir, '.git', 'FETCH_HEAD'), { force: true });
  } else {
    await rm(join(dir, '.git'), { recursive: true, force: true });
  }
  if (source.subdir === '') return dir;
  // The subdirectory must be directories all the way down (BuildKit's validateDirsOnly).
  let at = dir;
  for (const part of source.subdir.split('/')) {
    at = join(at, part);
    const st = await lstat(at).catch(() => undefined);
    if (st === undefined || !st.isDirectory())
      throw new StratumError(
        'NOT_FOUND',
        `ADD ${what}: invalid subdir ${source.subdir}: not a directory in the repository`,
      );
  }
  const moved = `${dir}.subdir`;
  await rename(at, moved);
  await rm(dir, { recursive: true, force: true });
  await rename(moved, dir);
  return dir;
}

/** `mtime=commit`: every entry gets the commit's time, directories last. */
async function setMtimes(dir: string, seconds: number): Promise<void> {
  const entries = await readdir(dir, { withFileTypes: true });
  for (const entry of entries) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) await setMtimes(path, seconds);
    else if (entry.isSymbolicLink()) await lutimes(path, seconds, seconds);
    else await utimes(path, seconds, seconds);
  }
  await utimes(dir, seconds, seconds);
}
