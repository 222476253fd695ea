import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeBusyboxRootfs, writeBaseImage } from '../helpers/base-image.js';
import { isRoot, requireTool } from '../helpers/system.js';
import { startRegistry, type RunningRegistry } from '../registry/harness.js';

const BIN = resolve(import.meta.dirname, '../../bin/stratum.js');

const enabled =
  isRoot &&
  requireTool('docker-registry', 'docker-registry') &&
  requireTool('skopeo', 'skopeo') &&
  requireTool('umoci', 'umoci');

interface Run {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly stdoutBytes: Buffer;
}

/**
 * `stratum build` flags as a buildx user types them, through the CLI in dist/, read back with
 * skopeo, umoci, tar and the real Docker daemon.
 */
describe.skipIf(!enabled)('stratum build: buildx-style flags, end to end', () => {
  let dir: string;
  let baseRef: string;
  let registry: RunningRegistry;
  const suffix = `i13a-${randomBytes(4).toString('hex')}`;
  const dockerTags: string[] = [];

  const run = (
    args: readonly string[],
    options: { input?: Buffer | string; env?: NodeJS.ProcessEnv } = {},
  ): Run => {
    const result = spawnSync(process.execPath, [BIN, ...args], {
      env: {
        ...process.env,
        STRATUM_DATA_DIR: join(dir, 'data'),
        STRATUM_CACHE_DIR: join(dir, 'cache'),
        ...options.env,
      },
      ...(options.input === undefined ? {} : { input: options.input }),
      maxBuffer: 64 * 1024 * 1024,
    });
    return {
      status: result.status,
      stdout: result.stdout.toString('utf8'),
      stderr: result.stderr.toString('utf8'),
      stdoutBytes: result.stdout,
    };
  };
  const context = (name: string, files: Record<string, string>): string => {
    const ctx = join(dir, name);
    for (const [path, content] of Object.entries(files)) {
      mkdirSync(join(ctx, path, '..'), { recursive: true });
      writeFileSync(join(ctx, path), content);
    }
    return ctx;
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'stratum-flags-'));
    const rootfs = join(dir, 'base-rootfs');
    mkdirSync(rootfs);
    makeBusyboxRootfs(rootfs);
    baseRef = `oci:${writeBaseImage(rootfs, join(dir, 'base'), 'stratum-test/busybox:1').layout}:1`;
    registry = await startRegistry();
  });
  afterAll(async () => {
    await registry.stop();
    for (const tag of dockerTags) spawnSync('/usr/bin/docker', ['rmi', '-f', tag], { stdio: 'ignore' });
    rmSync(dir, { recursive: true, force: true });
  });

  it('-o takes BuildKit forms, several at once: local, tar, oci, docker, image and registry', () => {
    const ctx = context('outputs', {
      Dockerfile: `FROM ${baseRef}\nRUN echo built > /built && rm /bin/vi\nCOPY app.txt /app/app.txt\n`,
      'app.txt': 'app\n',
    });
    const ref = `${registry.host}/flags/out:1`;
    const built = run([
      'build',
      ctx,
      '--network',
      'none',
      '--progress',
      'plain',
      '-o',
      `type=local,dest=${join(dir, 'fs')}`,
      '-o',
      `type=tar,dest=${join(dir, 'fs.tar')}`,
      '-o',
      `type=oci,dest=${join(dir, 'image.oci.tar')},name=flags:1`,
      '-o',
      `type=docker,dest=${join(dir, 'image.docker.tar')},name=flags/docker:1`,
      '-o',
      'type=image,name=flags/stored:1',
      '-o',
      `type=registry,ref=${ref}`,
    ]);
    expect(built.status, built.stderr).toBe(0);
    const digest = built.stdout.trim();
    expect(digest).toMatch(/^sha256:[0-9a-f]{64}$/);

    // local: the final filesystem, whiteouts applied, no image files.
    expect(readFileSync(join(dir, 'fs/built'), 'utf8')).toBe('built\n');
    expect(readFileSync(join(dir, 'fs/app/app.txt'), 'utf8')).toBe('app\n');
    expect(existsSync(join(dir, 'fs/bin/vi'))).toBe(false);
    expect(existsSync(join(dir, 'fs/bin/busybox'))).toBe(true);
    expect(
      readdirSync(join(dir, 'fs')).some((name) => name.startsWith('.wh.') || name === 'index.json'),
    ).toBe(false);

    // tar: the same tree as one tar, read by GNU tar.
    const listing = execFileSync('tar', ['-tf', join(dir, 'fs.tar')], { encoding: 'utf8' }).split('\n');
    expect(listing).toEqual(expect.arrayContaining(['built', 'app/app.txt', 'bin/busybox']));
    expect(listing.some((name) => name.includes('.wh.') || name === 'bin/vi')).toBe(false);

    // oci: an OCI archive that skopeo reads, with the same manifest digest.
    const oci = JSON.parse(
      execFileSync('skopeo', ['inspect', `oci-archive:${join(dir, 'image.oci.tar')}:flags:1`], {
        encoding: 'utf8',
      }),
    ) as { Digest: string };
    expect(oci.Digest).toBe(digest);
    // docker: a docker archive under the given name.
    const docker = JSON.parse(
      execFileSync('skopeo', ['inspect', `docker-archive:${join(dir, 'image.docker.tar')}`], {
        encoding: 'utf8',
      }),
    ) as { Layers: string[] };
    expect(docker.Layers).toHaveLength(3); // base, RUN, COPY
    const manifest = JSON.parse(
      execFileSync('tar', ['-xOf', join(dir, 'image.docker.tar'), 'manifest.json'], { encoding: 'utf8' }),
    ) as { RepoTags: string[] }[];
    expect(manifest[0]?.RepoTags).toEqual(['flags/docker:1']);
    // image: the local store; registry: pushed.
    expect(run(['images']).stdout).toMatch(/flags\/stored:1\s+/);
    const pushed = JSON.parse(
      execFileSync('skopeo', ['inspect', '--tls-verify=false', `docker://${ref}`], { encoding: 'utf8' }),
    ) as { Digest: string };
    expect(pushed.Digest).toBe(digest);
  });

  it('-o - and type=tar,dest=- write the filesystem tar to stdout and nothing else', () => {
    const ctx = context('stdout-tar', { Dockerfile: 'FROM scratch\nCOPY a.txt /a.txt\n', 'a.txt': 'a\n' });
    for (const output of ['-', 'type=tar,dest=-']) {
      const built = run(['build', ctx, '-o', output, '--progress', 'plain']);
      expect(built.status, built.stderr).toBe(0);
      const tarFile = join(dir, 'stdout.tar');
      writeFileSync(tarFile, built.stdoutBytes);
      expect(execFileSync('tar', ['-xOf', tarFile, 'a.txt'], { encoding: 'utf8' })).toBe('a\n');
    }
  });

  it('a bad -o is a usage error naming the bad key or type, before anything is built or written', () => {
    const ctx = context('bad-output', { Dockerfile: 'FROM scratch\nCOPY a.txt /a.txt\n', 'a.txt': 'a\n' });
    const cases: [string, RegExp][] = [
      [`type=local,dst=${join(dir, 'never')}`, /unknown key "dst" for type=local/],
      ['type=tarball,dest=x', /unknown type "tarball"/],
      ['type=local', /type=local needs dest=PATH/],
      ['type=image,push=maybe,name=x', /push=maybe is not true or false/],
      ['type=registry', /type=registry needs ref=REF/],
    ];
    for (const [output, message] of cases) {
      const built = run(['build', ctx, '-o', output, '-o', `type=local,dest=${join(dir, 'never')}`]);
      expect(built.status, output).toBe(2);
      expect(built.stderr).toMatch(message);
      expect(built.stderr.trim().split('\n')).toHaveLength(1);
    }
    expect(existsSync(join(dir, 'never'))).toBe(false);
  });

  it('--load puts the image into the Docker daemon, which runs it; --iidfile holds its image ID', () => {
    const tag = `stratum-${suffix}:load`;
    dockerTags.push(tag, `stratum-${suffix}:second`);
    const ctx = context('load', {
      Dockerfile: `FROM ${baseRef}\nRUN echo loaded-by-stratum > /msg\nCMD ["cat", "/msg"]\n`,
    });
    const iid = join(dir, 'load.iid');
    const built = run([
      'build',
      ctx,
      '--network',
      'none',
      '--load',
      '-t',
      tag,
      '-t',
      `stratum-${suffix}:second`,
      '--iidfile',
      iid,
      '-q',
    ]);
    expect(built.status, built.stderr).toBe(0);
    const out = execFileSync('/usr/bin/docker', ['run', '--rm', '--network', 'none', tag], {
      encoding: 'utf8',
    });
    expect(out).toBe('loaded-by-stratum\n');
    const imageId = execFileSync(
      '/usr/bin/docker',
      ['image', 'inspect', '-f', '{{.Id}}', `stratum-${suffix}:second`],
      {
        encoding: 'utf8',
      },
    ).trim();
    expect(readFileSync(iid, 'utf8')).toBe(imageId);

    // type=docker without dest is the same load; docker-daemon: is a writable transport too.
    const viaOutput = `stratum-${suffix}:output`;
    const viaTransport = `stratum-${suffix}:transport`;
    dockerTags.push(viaOutput, viaTransport);
    const again = run([
      'build',
      ctx,
      '--network',
      'none',
      '-q',
      '-o',
      `type=docker,name=${viaOutput}`,
      '-o',
      `docker-daemon:${viaTransport}`,
    ]);
    expect(again.status, again.stderr).toBe(0);
    for (const name of [viaOutput, viaTransport]) {
      expect(
        execFileSync('/usr/bin/docker', ['run', '--rm', '--network', 'none', name], { encoding: 'utf8' }),
      ).toBe('loaded-by-stratum\n');
    }
  });

  it('-q prints only the digest; --metadata-file has BuildKit keys; --label and --annotation land in the image', () => {
    const ctx = context('meta', { Dockerfile: `FROM ${baseRef}\nLABEL from=dockerfile\n` });
    const layout = join(dir, 'meta-oci');
    const metadata = join(dir, 'metadata.json');
    const built = run([
      'build',
      ctx,
      '-q',
      '-t=flags/meta:1',
      '-o',
      `oci:${layout}:meta`,
      '--metadata-file',
      metadata,
      '--label',
      'org.example.team=build',
      '--label',
      'from=flag',
      '--annotation',
      'org.opencontainers.image.title=meta',
      '--annotation',
      'manifest:org.example.note=hi',
    ]);
    expect(built.status, built.stderr).toBe(0);
    expect(built.stdout).toMatch(/^sha256:[0-9a-f]{64}\n$/);
    expect(built.stderr).toBe('');
    const digest = built.stdout.trim();
    const record = JSON.parse(readFileSync(metadata, 'utf8')) as Record<string, unknown>;
    expect(record['containerimage.digest']).toBe(digest);
    expect(record['image.name']).toBe('flags/meta:1');
    const raw = JSON.parse(
      execFileSync('skopeo', ['inspect', '--raw', `oci:${layout}:meta`], { encoding: 'utf8' }),
    ) as { config: { digest: string }; annotations: Record<string, string> };
    expect(record['containerimage.config.digest']).toBe(raw.config.digest);
    expect(record['containerimage.descriptor']).toMatchObject({
      digest,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
    });
    expect(raw.annotations).toEqual({ 'org.opencontainers.image.title': 'meta', 'org.example.note': 'hi' });
    // umoci reads the config: the flag's label overrides the Dockerfile's, as in BuildKit.
    const config = JSON.parse(
      execFileSync('umoci', ['stat', '--image', `${layout}:meta`, '--json'], { encoding: 'utf8' }),
    ) as {
      history: unknown[];
    };
    expect(config.history.length).toBeGreaterThan(0);
    const labels = (
      JSON.parse(execFileSync('skopeo', ['inspect', `oci:${layout}:meta`], { encoding: 'utf8' })) as {
        Labels: Record<string, string>;
      }
    ).Labels;
    expect(labels).toEqual({ from: 'flag', 'org.example.team': 'build' });
    expect(run(['images']).stdout).toMatch(/flags\/meta:1\s+/);

    const bad = run(['build', ctx, '--annotation', 'index:x=y']);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/"index:" annotations are not supported/);
  });

  it('--secret env=VAR reaches RUN --mount=type=secret; a missing source is refused before the build', () => {
    const ctx = context('secret', {
      Dockerfile: `FROM ${baseRef}\nRUN --mount=type=secret,id=token,env=TOKEN test "$TOKEN" = s3cret && echo ok > /ok\n`,
    });
    const layout = join(dir, 'secret-oci');
    const built = run(
      ['build', ctx, '--network', 'none', '--secret', 'id=token,env=I13A_TOKEN', '-o', `oci:${layout}`],
      {
        env: { I13A_TOKEN: 's3cret' },
      },
    );
    expect(built.status, built.stderr).toBe(0);

    const missingEnv = run([
      'build',
      ctx,
      '--secret',
      'id=token,env=I13A_UNSET_VARIABLE',
      '--progress',
      'plain',
    ]);
    expect(missingEnv.status).toBe(1); // a missing source is bad input, not a malformed flag
    expect(missingEnv.stderr).toMatch(/environment variable I13A_UNSET_VARIABLE is not set/);
    expect(missingEnv.stderr).not.toMatch(/\[0 1\/1\]/);
    const missingFile = run(['build', ctx, '--secret', `id=token,src=${join(dir, 'no-such-secret')}`]);
    expect(missingFile.status).toBe(1);
    expect(missingFile.stderr).toMatch(
      /--secret id=token: .*no-such-secret does not exist or cannot be read/,
    );
  });

  it('context - reads a tar (or a lone Dockerfile) from standard input, as docker build -', () => {
    const ctx = context('stdin', {
      Dockerfile: 'FROM scratch\nCOPY from-tar.txt /from-tar.txt\n',
      'from-tar.txt': 'tarred\n',
    });
    const tar = execFileSync('tar', ['-C', ctx, '-cf', '-', '.']);
    const built = run(['build', '-', '-o', `type=local,dest=${join(dir, 'stdin-fs')}`], { input: tar });
    expect(built.status, built.stderr).toBe(0);
    expect(readFileSync(join(dir, 'stdin-fs/from-tar.txt'), 'utf8')).toBe('tarred\n');

    const gz = execFileSync('tar', ['-C', ctx, '-czf', '-', '.']);
    expect(run(['build', '-', '-q'], { input: gz }).stdout).toBe(built.stdout);

    const lone = run(['build', '-', '-o', `oci:${join(dir, 'lone')}`], {
      input: 'FROM scratch\nLABEL only=dockerfile\n',
    });
    expect(lone.status, lone.stderr).toBe(0);
  });

  it('--add-host, --shm-size and --ulimit shape what RUN sees', () => {
    const ctx = context('run-options', {
      Dockerfile: `FROM ${baseRef}\nRUN grep db.internal /etc/hosts > /hosts && ulimit -n > /nofile && ulimit -Hn >> /nofile && df -k /dev/shm | tail -n 1 > /shm\n`,
    });
    const out = join(dir, 'run-options-fs');
    const built = run([
      'build',
      ctx,
      '--network',
      'none',
      '--add-host',
      'db.internal:10.1.2.3',
      '--shm-size',
      '128m',
      '--ulimit',
      'nofile=1000:2000',
      '-o',
      `type=local,dest=${out}`,
    ]);
    expect(built.status, built.stderr).toBe(0);
    expect(readFileSync(join(out, 'hosts'), 'utf8')).toBe('10.1.2.3\tdb.internal\n');
    expect(readFileSync(join(out, 'nofile'), 'utf8')).toBe('1000\n2000\n');
    expect(readFileSync(join(out, 'shm'), 'utf8')).toMatch(/\s131072\s/);
    expect(run(['build', ctx, '--ulimit', 'nofiles=1']).stderr).toMatch(/unknown limit "nofiles"/);
    expect(run(['build', ctx, '--add-host', 'nocolon']).status).toBe(2);
  });

  it.skipIf(!requireTool('ssh-agent', 'openssh-client'))(
    '--ssh default forwards the running ssh-agent to RUN --mount=type=ssh',
    () => {
      // The host's ssh-add (with its own loader and libraries, bound in) asks the forwarded agent.
      const agentDir = mkdtempSync(join(tmpdir(), 'stratum-ssh-'));
      const socket = join(agentDir, 'agent.sock');
      const agent = execFileSync('ssh-agent', ['-a', socket], { encoding: 'utf8' });
      const agentPid = /SSH_AGENT_PID=(\d+)/.exec(agent)?.[1];
      try {
        execFileSync('ssh-keygen', [
          '-q',
          '-t',
          'ed25519',
          '-N',
          '',
          '-C',
          'stratum-test-key',
          '-f',
          join(agentDir, 'key'),
        ]);
        execFileSync('ssh-add', [join(agentDir, 'key')], {
          env: { ...process.env, SSH_AUTH_SOCK: socket },
          stdio: 'ignore',
        });
        const ctx = context('ssh', { Dockerfile: '' });
        const tools = join(ctx, 'tools');
        mkdirSync(tools);
        const sshAdd = execFileSync('sh', ['-c', 'command -v ssh-add'], { encoding: 'utf8' }).trim();
        const libraries = execFileSync('ldd', [sshAdd], { encoding: 'utf8' })
          .split('\n')
          .map((line) => /(\/\S+)/.exec(line)?.[1])
          .filter((path): path is string => path !== undefined);
        for (const file of [sshAdd, ...libraries])
          execFileSync('cp', ['-L', file, join(tools, file.split('/').pop()!)]);
        const loader = libraries
          .find((path) => path.includes('ld-linux'))!
          .split('/')
          .pop()!;
        writeFileSync(
          join(ctx, 'Dockerfile'),
          `FROM ${baseRef}\nRUN --mount=type=bind,source=tools,target=/tools --mount=type=ssh /tools/${loader} --library-path /tools /tools/ssh-add -l > /agent-keys && echo "$SSH_AUTH_SOCK" > /sock\n`,
        );
        const out = join(dir, 'ssh-fs');
        const built = run(
          ['build', ctx, '--network', 'none', '--ssh', 'default', '-o', `type=local,dest=${out}`],
          {
            env: { SSH_AUTH_SOCK: socket },
          },
        );
        expect(built.status, built.stderr).toBe(0);
        expect(readFileSync(join(out, 'agent-keys'), 'utf8')).toMatch(
          /ED25519.*stratum-test-key|stratum-test-key.*ED25519/,
        );
        expect(readFileSync(join(out, 'sock'), 'utf8')).toBe('/run/buildkit/ssh_agent.0\n');

        // Without --ssh a required ssh mount fails naming the flag (optional ones are skipped, as in BuildKit).
        const requiring = context('ssh-required', {
          Dockerfile: `FROM ${baseRef}\nRUN --mount=type=ssh,required=true true\n`,
        });
        const without = run(['build', requiring, '--network', 'none']);
        expect(without.status).toBe(1);
        expect(without.stderr).toMatch(/ssh agent "default" is required but was not given \(--ssh default\)/);
      } finally {
        if (agentPid !== undefined) process.kill(Number(agentPid));
        rmSync(agentDir, { recursive: true, force: true });
      }
    },
  );

  it('--build-context NAME=DIR|oci-layout://|docker-image:// serves FROM, COPY --from and RUN --mount from=, keyed on content', () => {
    const files = join(dir, 'named-files');
    mkdirSync(files);
    writeFileSync(join(files, 'data.txt'), 'one\n');
    run([
      'build',
      context('named-base', { Dockerfile: `FROM ${baseRef}\nRUN echo stored > /stored\n` }),
      '--network',
      'none',
      '-q',
      '-t',
      'flags/named-base:1',
    ]);
    const ctx = context('named', {
      Dockerfile: [
        'FROM base',
        'COPY --from=files /data.txt /copied.txt',
        'RUN --mount=type=bind,from=files,target=/mnt cat /mnt/data.txt > /mounted.txt',
        'COPY --from=stored /stored /stored-copy',
        '',
      ].join('\n'),
    });
    const build = (filesDir: string, out: string): Run =>
      run([
        'build',
        ctx,
        '--network',
        'none',
        '--progress',
        'plain',
        '--build-context',
        `base=oci-layout://${baseRef.slice('oci:'.length)}`,
        '--build-context',
        `files=${filesDir}`,
        '--build-context',
        'stored=docker-image://flags/named-base:1',
        '-o',
        `type=local,dest=${out}`,
      ]);
    const first = build(files, join(dir, 'named-1'));
    expect(first.status, first.stderr).toBe(0);
    expect(readFileSync(join(dir, 'named-1/copied.txt'), 'utf8')).toBe('one\n');
    expect(readFileSync(join(dir, 'named-1/mounted.txt'), 'utf8')).toBe('one\n');
    expect(readFileSync(join(dir, 'named-1/stored-copy'), 'utf8')).toBe('stored\n');

    // The same content elsewhere: every step is a cache hit. Changed content: the steps rerun.
    const moved = join(dir, 'named-files-moved');
    execFileSync('cp', ['-a', files, moved]);
    const again = build(moved, join(dir, 'named-2'));
    expect(again.status, again.stderr).toBe(0);
    expect(again.stderr).not.toMatch(/^#\d+ DONE/m);
    writeFileSync(join(moved, 'data.txt'), 'two\n');
    const changed = build(moved, join(dir, 'named-3'));
    expect(changed.status, changed.stderr).toBe(0);
    expect(readFileSync(join(dir, 'named-3/mounted.txt'), 'utf8')).toBe('two\n');

    const missing = run(['build', ctx, '--build-context', `files=${join(dir, 'no-such-dir')}`]);
    expect(missing.status).toBe(2);
    expect(missing.stderr).toMatch(/--build-context files=.*no-such-dir: not a directory/);
  });

  it('--pull takes a name from its registry even when the local store has an image of that name', () => {
    const name = `${registry.host}/flags/pulled:1`;
    const remote = context('pull-remote', { Dockerfile: `FROM ${baseRef}\nRUN echo registry > /which\n` });
    const local = context('pull-local', { Dockerfile: `FROM ${baseRef}\nRUN echo store > /which\n` });
    expect(run(['build', remote, '--network', 'none', '-q', '-o', `docker://${name}`]).status).toBe(0);
    expect(run(['build', local, '--network', 'none', '-q', '-t', name]).status).toBe(0);
    const user = context('pull-user', { Dockerfile: `FROM ${name}\nRUN cp /which /seen\n` });
    const stored = run([
      'build',
      user,
      '--network',
      'none',
      '-o',
      `type=local,dest=${join(dir, 'pull-stored')}`,
    ]);
    expect(stored.status, stored.stderr).toBe(0);
    expect(readFileSync(join(dir, 'pull-stored/seen'), 'utf8')).toBe('store\n');
    const pulled = run([
      'build',
      user,
      '--network',
      'none',
      '--pull',
      '-o',
      `type=local,dest=${join(dir, 'pull-pulled')}`,
    ]);
    expect(pulled.status, pulled.stderr).toBe(0);
    expect(readFileSync(join(dir, 'pull-pulled/seen'), 'utf8')).toBe('registry\n');
  });
});
