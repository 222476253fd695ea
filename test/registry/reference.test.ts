import { describe, expect, it } from 'vitest';
import { mergeScopes, parseChallenges, scopesCover } from '../../src/registry/challenge.js';
import { Secrets, redact } from '../../src/registry/registry-error.js';
import {
  familiarReference,
  formatReference,
  isLoopbackRegistry,
  parseRegistryReference,
} from '../../src/registry/reference.js';

const digest = `sha256:${'a'.repeat(64)}`;

describe("Docker's reference normalisation (distribution/reference)", () => {
  it.each([
    ['busybox', { registry: 'docker.io', repository: 'library/busybox', tag: 'latest' }],
    ['docker.io/busybox:1.36', { registry: 'docker.io', repository: 'library/busybox', tag: '1.36' }],
    [
      'index.docker.io/library/busybox',
      { registry: 'docker.io', repository: 'library/busybox', tag: 'latest' },
    ],
    ['user/app', { registry: 'docker.io', repository: 'user/app', tag: 'latest' }],
    ['localhost/app', { registry: 'localhost', repository: 'app', tag: 'latest' }],
    ['localhost:5000/a/b/c:v1', { registry: 'localhost:5000', repository: 'a/b/c', tag: 'v1' }],
    ['127.0.0.1:5000/app:v1', { registry: '127.0.0.1:5000', repository: 'app', tag: 'v1' }],
    ['[::1]:5000/app', { registry: '[::1]:5000', repository: 'app', tag: 'latest' }],
    ['ghcr.io/o/r@' + digest, { registry: 'ghcr.io', repository: 'o/r', digest }],
    ['ghcr.io/o/r:t@' + digest, { registry: 'ghcr.io', repository: 'o/r', tag: 't', digest }],
    [
      'docker://quay.io/a_b/c-d__e.f:v1.0-rc_1',
      { registry: 'quay.io', repository: 'a_b/c-d__e.f', tag: 'v1.0-rc_1' },
    ],
    ['Registry/app', { registry: 'Registry', repository: 'app', tag: 'latest' }],
  ])('%s', (text, expected) => {
    expect(parseRegistryReference(text)).toEqual(expected);
  });

  it.each([
    ['', 'empty reference'],
    ['Busybox', 'repository name must be lowercase'],
    ['host:5000/App:v1', 'repository name must be lowercase'],
    ['a'.repeat(64), 'image ID'],
    ['app:-bad', 'invalid tag'],
    [`app:${'t'.repeat(129)}`, 'invalid tag'],
    ['app@sha256:abc', 'malformed digest'],
    [`app@sha256:${'A'.repeat(64)}`, '64 lowercase hexadecimal'],
    ['a//b', 'empty path component'],
    ['a/-b', 'invalid path component'],
    ['a/b_', 'invalid path component'],
    ['host_x.io:5000/app', 'invalid registry host'],
    [`host.io/${'a'.repeat(250)}`, 'longer than 255'],
  ])('rejects %s with the reason (%s)', (text, reason) => {
    expect(() => parseRegistryReference(text)).toThrow(reason);
  });

  it('formats full and familiar forms', () => {
    const ref = parseRegistryReference('busybox');
    expect(formatReference(ref)).toBe('docker.io/library/busybox:latest');
    expect(familiarReference(ref)).toBe('busybox:latest');
    expect(familiarReference(parseRegistryReference('127.0.0.1:5000/x/y@' + digest))).toBe(
      `127.0.0.1:5000/x/y@${digest}`,
    );
  });

  it('treats localhost, 127.0.0.0/8 and ::1 as loopback, like Docker, and nothing else', () => {
    expect(
      ['localhost:5000', '127.0.0.1', '127.9.8.7:1', '[::1]:5000', 'LOCALHOST'].every(isLoopbackRegistry),
    ).toBe(true);
    expect(
      ['10.0.0.1:5000', 'localhost.example.com', 'docker.io', '128.0.0.1'].some(isLoopbackRegistry),
    ).toBe(false);
  });
});

describe('WWW-Authenticate challenges and token scopes', () => {
  it('parses a Bearer challenge with quoted parameters, commas inside quotes included', () => {
    expect(
      parseChallenges(
        'Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push",error="insufficient_scope"',
      ),
    ).toEqual([
      {
        kind: 'bearer',
        realm: 'https://auth.example/token',
        service: 'registry.example',
        scope: 'repository:a/b:pull,push',
        error: 'insufficient_scope',
      },
    ]);
  });

  it('parses Basic and ignores unknown schemes', () => {
    expect(parseChallenges(['Negotiate abc', 'Basic realm="Registry Realm"'])).toEqual([
      { kind: 'basic', realm: 'Registry Realm' },
    ]);
  });

  it('merges scopes per repository and checks coverage', () => {
    expect(mergeScopes(['repository:a:pull', 'repository:a:push', 'repository:b:pull'])).toEqual([
      'repository:a:pull,push',
      'repository:b:pull',
    ]);
    expect(scopesCover(['repository:a:pull,push'], ['repository:a:pull'])).toBe(true);
    expect(scopesCover(['repository:a:pull'], ['repository:a:push'])).toBe(false);
    expect(scopesCover(['repository:a:pull,push'], ['repository:a:push', 'repository:src:pull'])).toBe(false);
  });
});

describe('redaction of secrets in messages', () => {
  it('blanks the secrets a client saw and anything shaped like an Authorization value, on one line', () => {
    const secrets = new Secrets();
    secrets.register('hunter2-secret');
    expect(secrets.redact('denied for hunter2-secret\nsee Bearer eyJhbGciOiJSUzI1NiJ9.abc')).toBe(
      'denied for <redacted> see Bearer <redacted>',
    );
  });

  it('keeps secrets per client: another client (or none) does not know them', () => {
    new Secrets().register('hunter3-secret');
    expect(redact('denied for hunter3-secret')).toBe('denied for hunter3-secret');
    expect(new Secrets().redact('denied for hunter3-secret')).toBe('denied for hunter3-secret');
  });
});
