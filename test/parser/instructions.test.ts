import { describe, expect, it } from 'vitest';
import { parseDockerfile } from '../../src/parser/parse.js';
import type { Instruction } from '../../src/parser/types.js';

function only(text: string): Instruction {
  const result = parseDockerfile(`FROM busybox\n${text}\n`);
  expect(result.diagnostics.filter((d) => d.severity === 'error')).toEqual([]);
  return result.stages[0]!.instructions[0]!;
}

function errorOf(text: string): { line: number; column: number; message: string; suggestion?: string } {
  const result = parseDockerfile(text);
  expect(result.ok).toBe(false);
  return result.diagnostics.find((d) => d.severity === 'error')!;
}

describe('typed instructions keep arguments unexpanded', () => {
  it('FROM with --platform and AS', () => {
    const result = parseDockerfile('ARG BASE=alpine\nFROM --platform=$BUILDPLATFORM ${BASE}:3 AS Builder\n');
    expect(result.metaArgs[0]!.declarations).toEqual([{ name: 'BASE', defaultValue: 'alpine' }]);
    expect(result.stages[0]).toMatchObject({
      index: 0,
      name: 'builder',
      from: { kind: 'from', image: '${BASE}:3', platform: '$BUILDPLATFORM', stageName: 'builder' },
    });
  });

  it('RUN shell and exec forms, mounts, network, security', () => {
    expect(only('RUN echo $HOME')).toMatchObject({ kind: 'run', form: 'shell', command: ['echo $HOME'] });
    expect(only('RUN ["echo", "$HOME"]')).toMatchObject({ form: 'exec', command: ['echo', '$HOME'] });
    const run = only(
      'RUN --mount=type=cache,target=/root/.cache,id=pip,sharing=locked --mount=type=secret,id=tok,env=TOKEN ' +
        '--mount=type=tmpfs,target=/t,size=64m --mount=type=ssh --mount=target=/src,from=build,rw --network=none --security=insecure make',
    );
    expect(run).toMatchObject({
      kind: 'run',
      network: 'none',
      security: 'insecure',
      mounts: [
        { type: 'cache', target: '/root/.cache', id: 'pip', sharing: 'locked', readOnly: false },
        { type: 'secret', id: 'tok', env: 'TOKEN', required: false, readOnly: true },
        { type: 'tmpfs', target: '/t', size: 64 * 1024 * 1024, readOnly: false },
        { type: 'ssh', required: false, readOnly: true },
        { type: 'bind', target: '/src', from: 'build', readOnly: false },
      ],
    });
  });

  it('invalid JSON falls back to the shell form', () => {
    expect(only("CMD ['single', 'quotes']")).toMatchObject({
      form: 'shell',
      command: ["['single', 'quotes']"],
    });
    expect(only('ENTRYPOINT ["unterminated"')).toMatchObject({ form: 'shell' });
  });

  it('ENV both forms, LABEL, ARG with several names', () => {
    expect(only('ENV A=1 B="two words"')).toMatchObject({
      pairs: [
        { key: 'A', value: '1', legacy: false },
        { key: 'B', value: '"two words"', legacy: false },
      ],
    });
    expect(only('ENV PATH /usr/bin:$PATH')).toMatchObject({
      pairs: [{ key: 'PATH', value: '/usr/bin:$PATH', legacy: true }],
    });
    expect(only('LABEL a=b "c d"=e')).toMatchObject({
      kind: 'label',
      pairs: [{ key: 'a' }, { key: '"c d"', value: 'e' }],
    });
    expect(only('ARG A B=2 C=')).toMatchObject({
      declarations: [{ name: 'A' }, { name: 'B', defaultValue: '2' }, { name: 'C', defaultValue: '' }],
    });
  });

  it('COPY and ADD flags', () => {
    expect(
      only(
        'COPY --from=build --chown=1:2 --chmod=755 --link --parents --exclude=*.md --exclude=.git a b /dst/',
      ),
    ).toMatchObject({
      kind: 'copy',
      sources: ['a', 'b'],
      destination: '/dst/',
      from: 'build',
      chown: '1:2',
      chmod: '755',
      link: true,
      parents: true,
      exclude: ['*.md', '.git'],
    });
    expect(
      only('ADD --checksum=sha256:abc --keep-git-dir=true --link=false https://x/y.tgz /y'),
    ).toMatchObject({
      kind: 'add',
      checksum: 'sha256:abc',
      keepGitDir: true,
      link: false,
      sources: ['https://x/y.tgz'],
    });
    expect(only('COPY ["a b", "/c d/"]')).toMatchObject({
      form: 'exec',
      sources: ['a b'],
      destination: '/c d/',
    });
  });

  it('HEALTHCHECK durations in nanoseconds, NONE, CMD forms', () => {
    expect(
      only(
        'HEALTHCHECK --interval=1m30s --timeout=500ms --start-period=2s --start-interval=1.5s --retries=3 CMD curl -f x',
      ),
    ).toMatchObject({
      test: ['CMD-SHELL', 'curl -f x'],
      interval: 90e9,
      timeout: 500e6,
      startPeriod: 2e9,
      startInterval: 1.5e9,
      retries: 3,
    });
    expect(only('HEALTHCHECK NONE')).toMatchObject({ test: ['NONE'] });
    expect(only('HEALTHCHECK CMD ["true"]')).toMatchObject({ test: ['CMD', 'true'] });
    expect(errorOf('FROM a\nHEALTHCHECK --interval=5 CMD x').message).toMatch(
      /invalid duration for --interval/,
    );
  });

  it('ONBUILD holds its trigger and the expression Docker stores', () => {
    expect(only('onbuild RUN --mount=type=cache,target=/c echo hi')).toMatchObject({
      kind: 'onbuild',
      expression: 'RUN --mount=type=cache,target=/c echo hi',
      trigger: { kind: 'run', command: ['echo hi'] },
    });
    expect(errorOf('FROM a\nONBUILD ONBUILD RUN x').message).toBe(
      "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
    );
    expect(errorOf('FROM a\nONBUILD MAINTAINER me').message).toBe(
      "MAINTAINER isn't allowed as an ONBUILD trigger",
    );
    expect(errorOf('FROM a\nONBUILD FROM b')).toMatchObject({
      line: 2,
      column: 9,
      message: "FROM isn't allowed as an ONBUILD trigger",
    });
  });

  it('the rest: SHELL, EXPOSE, VOLUME, USER, WORKDIR, STOPSIGNAL, MAINTAINER', () => {
    expect(only('SHELL ["/bin/bash", "-c"]')).toMatchObject({ shell: ['/bin/bash', '-c'] });
    expect(only('EXPOSE 80/tcp $PORT')).toMatchObject({ ports: ['80/tcp', '$PORT'] });
    expect(only('VOLUME /a /b')).toMatchObject({ volumes: ['/a', '/b'], form: 'shell' });
    expect(only('VOLUME ["/a"]')).toMatchObject({ volumes: ['/a'], form: 'exec' });
    expect(only('USER app:app')).toMatchObject({ user: 'app:app' });
    expect(only('WORKDIR /src/$APP')).toMatchObject({ path: '/src/$APP' });
    expect(only('STOPSIGNAL SIGKILL')).toMatchObject({ signal: 'SIGKILL' });
    expect(only('MAINTAINER me <me@x>')).toMatchObject({ maintainer: 'me <me@x>' });
  });

  it('records directives and the escape character', () => {
    const result = parseDockerfile(
      '# syntax=docker/dockerfile:1\n# escape=`\n# check=skip=all\nFROM a\nRUN echo `\n  hi\n',
    );
    expect(result.directives).toEqual([
      { name: 'syntax', value: 'docker/dockerfile:1', line: 1 },
      { name: 'escape', value: '`', line: 2 },
      { name: 'check', value: 'skip=all', line: 3 },
    ]);
    expect(result.escapeChar).toBe('`');
    expect(result.stages[0]!.instructions[0]).toMatchObject({
      command: ['echo   hi'],
      location: { line: 5, endLine: 6 },
    });
  });

  it('a directive after an instruction is a comment', () => {
    expect(parseDockerfile('FROM a\n# escape=`\n').directives).toEqual([]);
  });

  it('CRLF and a BOM parse like LF', () => {
    const result = parseDockerfile('\ufeffFROM a\r\nRUN echo \\\r\n  hi\r\n');
    expect(result.ok).toBe(true);
    expect(result.stages[0]!.instructions[0]).toMatchObject({ command: ['echo   hi'] });
    const bytes = new Uint8Array([0xef, 0xbb, 0xbf, ...Buffer.from('FROM a\r\n')]);
    expect(parseDockerfile(bytes).stages[0]!.from.image).toBe('a');
  });
});

describe('flag errors name the valid flags and the owner of a misplaced flag', () => {
  it('unknown flag with did-you-mean', () => {
    expect(errorOf('FROM a\nCOPY --chwon=1 a b')).toMatchObject({
      line: 2,
      column: 6,
      message:
        'unknown flag: --chwon (valid flags for COPY: --from, --chown, --chmod, --link, --parents, --exclude)',
      suggestion: 'did you mean --chown?',
    });
  });
  it('a flag on the wrong instruction', () => {
    expect(errorOf('FROM a\nRUN --from=x true').message).toBe(
      'unknown flag: --from (valid flags for RUN: --mount, --network, --security); --from belongs to COPY',
    );
    expect(errorOf('FROM a\nCMD --platform=linux/amd64 x').message).toMatch(
      /CMD takes no flags\); --platform belongs to FROM/,
    );
  });
  it('bad mount option values', () => {
    expect(errorOf('FROM a\nRUN --mount=type=bind,target=/x,uid=1 true').message).toMatch(
      /uid not allowed for "bind"/,
    );
    expect(errorOf('FROM a\nRUN --mount=type=cache,target=/x,sharing=all true').message).toMatch(
      /unsupported sharing value/,
    );
    expect(errorOf('FROM a\nRUN --network=bridge true').message).toMatch(/unsupported network mode "bridge"/);
  });
  it('two stages of the same name (case-insensitive) parse: current BuildKit warns (DuplicateStageName, checks.ts)', () => {
    const parsed = parseDockerfile('FROM a AS build\nRUN true\nFROM b AS Build\n');
    expect(parsed.ok).toBe(true);
    expect(parsed.stages.map((stage) => stage.name)).toEqual(['build', 'build']);
  });
});
