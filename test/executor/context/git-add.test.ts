import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync, chmodSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join, normalize } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseGitSource } from '../../../src/executor/context/index.js';
import { readAttestations } from '../../../src/attest/read.js';
import { buildSandbox, type BuildSandbox } from '../../helpers/build.js';
import { imageConfig, layerListings } from '../../helpers/layout.js';
import { requireTool } from '../../helpers/system.js';

describe('which ADD sources are git repositories (BuildKit dfgitutil.ParseGitRef)', () => {
  it.each([
    [
      'https://host/org/repo.git',
      { remote: 'https://host/org/repo.git', ref: '', subdir: '', scheme: 'https' },
    ],
    ['https://host/repo.git#v1.0:docs/api', { ref: 'v1.0', subdir: 'docs/api' }],
    ['http://127.0.0.1:8080/repo.git#main', { remote: 'http://127.0.0.1:8080/repo.git', scheme: 'http' }],
    ['git@github.com:org/repo.git#dev', { remote: 'git@github.com:org/repo.git', ref: 'dev', scheme: 'ssh' }],
    ['git://host/repo', { scheme: 'git', remote: 'git://host/repo' }],
    ['ssh://git@host/repo', { scheme: 'ssh' }],
    ['https://host/repo.git?ref=v2&subdir=/a/../b/', { ref: 'v2', subdir: 'b' }],
    ['https://host/repo.git?tag=v3', { ref: 'refs/tags/v3' }],
    ['https://host/repo.git?branch=main&keep-git-dir=true', { ref: 'refs/heads/main', keepGitDir: true }],
    ['https://host/repo.git?submodules=false&mtime=commit', { submodules: false, mtime: 'commit' }],
    [
      'https://user:s3cret@host/repo.git#v1',
      { display: 'https://host/repo.git', remote: 'https://user:s3cret@host/repo.git' },
    ],
  ])('%s is git', (src, expected) => {
    expect(parseGitSource(src)).toMatchObject(expected);
  });

  it.each([
    'https://host/file.tar.gz',
    'https://host/repo.git.txt',
    'github.com/org/repo',
    './x.git',
    'ftp://host/a.git',
    'dir/file',
    'C:foo',
  ])('%s is not git', (src) => {
    expect(parseGitSource(src)).toBeUndefined();
  });

  it('a malformed query is a located error, as BuildKit says it', () => {
    expect(() => parseGitSource('https://host/repo.git?what=1')).toThrow('unexpected query "what"');
    expect(() => parseGitSource('https://host/repo.git#v1?ref=v2')).not.toThrow(); // a ? in the fragment is the ref's
    expect(() => parseGitSource('https://host/repo.git?tag=a&branch=b')).toThrow('branch conflicts with tag');
  });
});

const haveGit = requireTool('git', 'git');

/** A repository served over git's dumb HTTP on 127.0.0.1 (update-server-info + a static server). */
describe.skipIf(!haveGit)('ADD of a git repository served on 127.0.0.1', () => {
  let sandbox: BuildSandbox;
  let work = '';
  let bare = '';
  let server: Server;
  let url = '';
  const git = (cwd: string, ...args: string[]): string =>
    execFileSync('git', args, {
      cwd,
      encoding: 'utf8',
      env: {
        ...process.env,
        GIT_AUTHOR_NAME: 't',
        GIT_AUTHOR_EMAIL: 't@example.com',
        GIT_COMMITTER_NAME: 't',
        GIT_COMMITTER_EMAIL: 't@example.com',
        GIT_CONFIG_NOSYSTEM: '1',
        HOME: '/dev/null',
      },
    }).trim();
  const publish = (): void => {
    git(work, 'push', '-q', '--force', '--tags', bare, 'HEAD:refs/heads/main');
    git(bare, 'update-server-info');
  };
  let requests: string[] = [];

  beforeAll(async () => {
    sandbox = buildSandbox();
    const root = mkdtempSync(join(tmpdir(), 'stratum-git-'));
    work = join(root, 'work');
    bare = join(root, 'served', 'repo.git');
    mkdirSync(work, { recursive: true });
    git(work, '-c', 'init.defaultBranch=main', 'init', '-q');
    mkdirSync(join(work, 'docs/api'), { recursive: true });
    writeFileSync(join(work, 'README'), 'v1 readme\n');
    writeFileSync(join(work, 'docs/api/index.md'), '# api v1\n');
    writeFileSync(join(work, 'run.sh'), '#!/bin/sh\necho hi\n');
    chmodSync(join(work, 'run.sh'), 0o755);
    symlinkSync('README', join(work, 'link'));
    git(work, 'add', '-A');
    git(work, 'commit', '-q', '-m', 'one');
    git(work, 'tag', '-a', 'v1', '-m', 'release one');
    mkdirSync(join(root, 'served'));
    git(root, 'init', '-q', '--bare', bare);
    publish();
    server = createServer((req, res) => {
      requests.push(req.url ?? '');
      const path = normalize(decodeURIComponent((req.url ?? '/').split('?')[0]!));
      try {
        res.end(readFileSync(join(root, 'served', path)));
      } catch {
        res.writeHead(404);
        res.end();
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    url = `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}/repo.git`;
    // A second commit on main after the tag: the tag must still give v1's files.
    writeFileSync(join(work, 'README'), 'v2 readme\n');
    git(work, 'commit', '-q', '-am', 'two');
    publish();
  });

  afterAll(() => {
    server.close();
    sandbox.cleanup();
  });

  const buildWith = async (dockerfile: string, extra: Record<string, unknown> = {}) => {
    const ctx = sandbox.context('git', { Dockerfile: dockerfile });
    const out = join(ctx, 'out');
    const result = await sandbox.build(ctx, { outputs: [`oci:${out}:1`], ...extra });
    return { result, out, listing: layerListings(out).at(-1) ?? [] };
  };

  it('the provenance lists the git source by its commit and an ADD URL by the digest of what came (materials)', async () => {
    const served = dirname(bare);
    writeFileSync(join(served, 'plain.txt'), 'plain\n');
    const plainUrl = url.replace(/repo\.git$/, 'plain.txt');
    const ctx = sandbox.context('git-provenance', {
      Dockerfile: `FROM scratch\nADD ${url}#v1 /src\nADD ${plainUrl} /plain.txt\n`,
    });
    const out = join(ctx, 'out');
    await sandbox.build(ctx, {
      outputs: [`oci:${out}:1`],
      attestations: { provenance: { mode: 'max', version: 'v0.2' } },
    });
    const read = await readAttestations(`oci:${out}:1`, { withStatements: true });
    const provenance = read.manifests[0]!.statements[0]!.statement!.predicate as {
      materials: { uri: string; digest: Record<string, string> }[];
    };
    const v1 = git(work, 'rev-parse', 'v1^{commit}');
    expect(provenance.materials).toContainEqual({ uri: url, digest: { sha1: v1 } });
    expect(provenance.materials).toContainEqual({
      uri: plainUrl,
      digest: { sha256: createHash('sha256').update('plain\n').digest('hex') },
    });
  });

  it("a tag gives that tag's files, owned by root, modes and symlinks as git has them, and no .git", async () => {
    const { listing, out } = await buildWith(`FROM scratch\nADD ${url}#v1 /src\n`);
    expect(listing).toEqual(
      expect.arrayContaining([
        'drwxr-xr-x 0/0 0 src/',
        '-rw-r--r-- 0/0 10 src/README',
        '-rwxr-xr-x 0/0 18 src/run.sh',
        'lrwxrwxrwx 0/0 0 src/link -> README',
        '-rw-r--r-- 0/0 9 src/docs/api/index.md',
      ]),
    );
    expect(listing.some((line) => line.includes('.git'))).toBe(false);
    const history = (imageConfig(out)['history'] as { created_by: string }[]).at(-1)!.created_by;
    expect(history).toContain(`ADD ${url}#v1 /src`);
  });

  it('#branch:subdir copies that directory of the branch head', async () => {
    const { listing } = await buildWith(`FROM scratch\nADD ${url}#main:docs /d/\n`);
    expect(listing).toContain('-rw-r--r-- 0/0 9 d/api/index.md');
    expect(listing.some((line) => line.includes('README'))).toBe(false);
  });

  it('--keep-git-dir keeps a .git whose HEAD is the commit and whose remote has no credentials', async () => {
    const { listing, out } = await buildWith(
      `FROM scratch\nADD --keep-git-dir ${url.replace('http://', 'http://user:pw@')}#main /r\n`,
    );
    expect(listing).toEqual(
      expect.arrayContaining(['drwxr-xr-x 0/0 0 r/.git/', '-rw-r--r-- 0/0 10 r/README']),
    );
    const layout = readFileSync(join(out, 'index.json'), 'utf8');
    expect(layout).not.toContain('pw');
    const history = JSON.stringify(imageConfig(out)['history']);
    expect(history).not.toContain('user:pw');
  });

  it('the commit is the cache key: the same commit is a hit without a fetch, a new commit a miss', async () => {
    const dockerfile = `FROM scratch\nADD ${url}#main /m\n`;
    const first = await buildWith(dockerfile);
    requests = [];
    const again = await buildWith(dockerfile);
    const gitStep = (events: typeof again.result.events) =>
      events.find((event) => event.kind === 'step-end' && event.step.instruction.startsWith('ADD'));
    expect(gitStep(again.result.events)).toMatchObject({ outcome: 'cached' });
    expect(again.result.digest).toBe(first.result.digest);
    // Only ls-remote's refs listing, never an object.
    expect(requests.filter((path) => path.includes('/objects/'))).toEqual([]);
    writeFileSync(join(work, 'README'), 'v3 readme\n');
    git(work, 'commit', '-q', '-am', 'three');
    publish();
    const third = await buildWith(dockerfile);
    expect(gitStep(third.result.events)).toMatchObject({ outcome: 'done' });
    expect(third.result.digest).not.toBe(first.result.digest);
    expect(third.listing).toContain('-rw-r--r-- 0/0 10 m/README');
  });

  it('a full commit id and --checksum pin the commit', async () => {
    const commit = git(work, 'rev-parse', 'v1^{commit}');
    const { listing } = await buildWith(`FROM scratch\nADD --checksum=${commit.slice(0, 12)} ${url}#v1 /p\n`);
    expect(listing).toContain('-rw-r--r-- 0/0 10 p/README');
    await expect(buildWith(`FROM scratch\nADD --checksum=0000000 ${url}#v1 /p\n`)).rejects.toThrow(
      /expected checksum to match 0000000/,
    );
  });

  it('without git on PATH the build fails with one line naming the source', async () => {
    const path = process.env['PATH'];
    const empty = mkdtempSync(join(tmpdir(), 'stratum-nogit-'));
    process.env['PATH'] = empty;
    try {
      await expect(buildWith(`FROM scratch\nADD ${url}#v1 /src\n`)).rejects.toThrow(
        `ADD ${url}#v1: git sources need the git command, which is not on PATH (Debian: apt-get install git)`,
      );
    } finally {
      process.env['PATH'] = path;
      rmSync(empty, { recursive: true });
    }
  });

  it('a missing ref is a clear error', async () => {
    await expect(buildWith(`FROM scratch\nADD ${url}#nope /src\n`)).rejects.toThrow(
      `ADD ${url}#nope: the repository has no ref nope`,
    );
  });
});
