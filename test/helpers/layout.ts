import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** The blob paths of the layers of an OCI layout's first manifest, bottom first. */
export function layerBlobPaths(layout: string): string[] {
  const blob = (digest: string): string => join(layout, 'blobs/sha256', digest.slice('sha256:'.length));
  const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8')) as {
    manifests: { digest: string }[];
  };
  const manifest = JSON.parse(readFileSync(blob(index.manifests[0]!.digest), 'utf8')) as {
    layers: { digest: string }[];
  };
  return manifest.layers.map((layer) => blob(layer.digest));
}

/** The parsed image config of an OCI layout's first manifest. */
export function imageConfig(layout: string): Record<string, unknown> {
  const blob = (digest: string): string => join(layout, 'blobs/sha256', digest.slice('sha256:'.length));
  const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8')) as {
    manifests: { digest: string }[];
  };
  const manifest = JSON.parse(readFileSync(blob(index.manifests[0]!.digest), 'utf8')) as {
    config: { digest: string };
  };
  return JSON.parse(readFileSync(blob(manifest.config.digest), 'utf8')) as Record<string, unknown>;
}

/** Each layer's entries as `tar tv` shows them, without times: type+mode, owner, size, name. */
export function layerListings(layout: string): string[][] {
  return layerBlobPaths(layout).map((blob) =>
    execFileSync('tar', ['--numeric-owner', '-tvzf', blob], { encoding: 'utf8' })
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => {
        const [mode, owner, size, , , ...name] = line.split(/\s+/);
        return `${mode} ${owner} ${size} ${name.join(' ')}`;
      }),
  );
}
