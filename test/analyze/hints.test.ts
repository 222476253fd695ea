import { describe, expect, it } from 'vitest';
import { dockerfileHints, historyKeyword } from '../../src/analyze/hints.js';
import { secretReason } from '../../src/analyze/secrets.js';
import { parseDockerfile } from '../../src/parser/parse.js';

describe('historyKeyword: BuildKit and classic builder created_by', () => {
  it.each([
    ['RUN /bin/sh -c make # buildkit', 'RUN'],
    ['RUN |1 V=2 /bin/sh -c make # buildkit', 'RUN'],
    ['COPY . /app # buildkit', 'COPY'],
    ['/bin/sh -c make', 'RUN'],
    ['|1 V=2 /bin/sh -c make', 'RUN'],
    ['/bin/sh -c #(nop) COPY dir:0a1b in /app ', 'COPY'],
    ['/bin/sh -c #(nop)  ENV A=1', 'ENV'],
    ['busybox base for stratum tests', undefined],
  ])('%s → %s', (createdBy, keyword) => {
    expect(historyKeyword(createdBy)).toBe(keyword);
  });
});

describe('Dockerfile hints', () => {
  it('put what changes least first: COPY of the whole context before a dependency install', () => {
    const text = 'FROM base\nWORKDIR /app\nCOPY . .\nRUN npm ci\nCMD ["node", "."]\n';
    const parsed = parseDockerfile(text);
    const hints = dockerfileHints(
      { file: 'Dockerfile', instructions: parsed.stages[0]!.instructions },
      [],
      [],
    );
    expect(hints).toEqual([
      expect.objectContaining({ kind: 'order-for-cache', file: 'Dockerfile', line: 3, relatedLine: 4 }),
    ]);
  });

  it('no order hint when only the manifests are copied before the install', () => {
    const text = 'FROM base\nCOPY package.json package-lock.json ./\nRUN npm ci\nCOPY . .\n';
    const parsed = parseDockerfile(text);
    expect(
      dockerfileHints({ file: 'Dockerfile', instructions: parsed.stages[0]!.instructions }, [], []),
    ).toEqual([]);
  });
});

describe('secretReason: names that look like secrets', () => {
  it.each([
    ['root/.ssh/id_rsa', 'SSH private key'],
    ['home/app/.ssh/id_ed25519', 'SSH private key'],
    ['app/.env', 'environment file'],
    ['app/.env.production', 'environment file'],
    ['etc/ssl/private/server.key', 'key or certificate file (.key)'],
    ['certs/client.pem', 'key or certificate file (.pem)'],
    ['root/.npmrc', 'npm registry credentials'],
    ['root/.netrc', 'netrc login credentials'],
    ['root/.aws/credentials', 'credentials file'],
    ['root/.docker/config.json', 'Docker registry credentials'],
    ['app/github_token.txt', 'name contains "token"'],
    ['app/client_secret.json', 'name contains "secret"'],
  ])('%s', (path, reason) => {
    expect(secretReason(path)).toBe(reason);
  });

  it.each([
    'etc/passwd',
    'etc/shadow',
    'root/.ssh/id_rsa.pub',
    'root/.ssh/known_hosts',
    'usr/bin/env',
    'app/main.js',
  ])('%s is not flagged', (path) => {
    expect(secretReason(path)).toBeUndefined();
  });
});
