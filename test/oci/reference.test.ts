import { describe, expect, it } from 'vitest';
import { StratumError } from '../../src/errors.js';
import { formatImageReference, normalizeImageName, parseImageReference } from '../../src/oci/reference.js';

describe("image references in skopeo's transport syntax", () => {
  it('splits oci:, oci-archive: and docker-archive: at the first colon (paths cannot hold one)', () => {
    expect(parseImageReference('oci:/tmp/x:latest')).toEqual({
      transport: 'oci',
      path: '/tmp/x',
      tag: 'latest',
    });
    expect(parseImageReference('oci:relative/dir')).toEqual({ transport: 'oci', path: 'relative/dir' });
    expect(parseImageReference('oci-archive:/a.tar:v1.2')).toEqual({
      transport: 'oci-archive',
      path: '/a.tar',
      tag: 'v1.2',
    });
    expect(parseImageReference('docker-archive:/a.tar:team/app:1.0')).toEqual({
      transport: 'docker-archive',
      path: '/a.tar',
      tag: 'team/app:1.0',
    });
    expect(parseImageReference('docker-archive:/a.tar:@1')).toEqual({
      transport: 'docker-archive',
      path: '/a.tar',
      tag: '@1',
    });
  });

  it('reads docker:// and docker-daemon:', () => {
    expect(parseImageReference('docker://localhost:5000/app:1')).toEqual({
      transport: 'docker',
      reference: 'localhost:5000/app:1',
    });
    expect(parseImageReference('docker-daemon:busybox:latest')).toEqual({
      transport: 'docker-daemon',
      name: 'busybox:latest',
    });
  });

  it('treats anything else as a name in the local store, registry ports included', () => {
    expect(parseImageReference('myapp')).toEqual({ transport: 'store', name: 'myapp' });
    expect(parseImageReference('localhost:5000/team/app:1.0')).toEqual({
      transport: 'store',
      name: 'localhost:5000/team/app:1.0',
    });
  });

  it('refuses empty paths, empty tags, bad names and docker: without //, as usage errors', () => {
    for (const bad of [
      '',
      'oci:',
      'oci::tag',
      'oci:/x:',
      'docker:busybox',
      'docker://',
      'Upper/Case',
      'a b',
      'docker-archive:/x.tar:Bad Name',
    ]) {
      let caught: unknown;
      try {
        parseImageReference(bad);
      } catch (error) {
        caught = error;
      }
      expect(caught, bad).toBeInstanceOf(StratumError);
      expect((caught as StratumError).code, bad).toBe('USAGE');
    }
  });

  it('formats back to the same text', () => {
    for (const text of [
      'oci:/tmp/x:latest',
      'oci-archive:a.tar',
      'docker-archive:/a.tar:app:1',
      'docker://reg/app:1',
      'docker-daemon:app',
      'app:2',
    ]) {
      expect(formatImageReference(parseImageReference(text))).toBe(text);
    }
  });

  it('normalises a name without a tag to :latest, not confusing a registry port for a tag', () => {
    expect(normalizeImageName('app')).toBe('app:latest');
    expect(normalizeImageName('app:1')).toBe('app:1');
    expect(normalizeImageName('localhost:5000/app')).toBe('localhost:5000/app:latest');
    expect(normalizeImageName(`app@sha256:${'a'.repeat(64)}`)).toBe(`app@sha256:${'a'.repeat(64)}`);
  });
});
