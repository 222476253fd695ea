// What a cache miss after cached steps pays in stratum before its own work: the stage's rootfs
// is materialised by extracting every earlier layer into an empty directory. This times that
// with stratum's extractLayerAuto, one scanTree of the result, and GNU tar extracting the same
// blobs, in a process of its own.
//
//   node bench/lib/materialize.js oci:LAYOUT:TAG WORKDIR
//   prints {"layers":N,"entries":N,"extractMs":..,"scanMs":..,"tarMs":..}
//   (all layers but the last one, which is the step that missed)
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const materializeScript = fileURLToPath(import.meta.url);

if (process.argv[1] === materializeScript) {
  const [, , ref, dir] = process.argv;
  const lib = await import('../../dist/index.js');
  const image = await lib.openImage(ref);
  const layers = image.manifest.value.layers.slice(0, -1);
  const stratumDir = join(dir, 'stratum');
  mkdirSync(stratumDir, { recursive: true });
  let entries = 0;
  let started = performance.now();
  for (const layer of layers)
    entries += (await lib.extractLayerAuto(await image.openBlob(layer), stratumDir)).entries;
  const extractMs = performance.now() - started;
  started = performance.now();
  await lib.scanTree(stratumDir);
  const scanMs = performance.now() - started;
  const tarDir = join(dir, 'tar');
  mkdirSync(tarDir, { recursive: true });
  const layout = ref.slice('oci:'.length, ref.lastIndexOf(':'));
  started = performance.now();
  for (const layer of layers) {
    const blob = join(layout, 'blobs/sha256', layer.digest.slice('sha256:'.length));
    spawnSync('tar', ['-xzf', blob, '-C', tarDir, '--same-owner', '-p'], { stdio: 'ignore' });
  }
  const tarMs = performance.now() - started;
  await image.close();
  console.log(JSON.stringify({ layers: layers.length, entries, extractMs, scanMs, tarMs }));
}

/** Runs this script as a child with `env`; returns its figures. */
export function measureMaterialize(ref, dir, env) {
  const out = spawnSync('node', [materializeScript, ref, dir], { encoding: 'utf8', env });
  if (out.status !== 0) throw new Error(`materialize ${ref} failed:\n${out.stderr}`);
  return JSON.parse(out.stdout.trim().split('\n').pop());
}

export function describeMaterialize(m) {
  return `extracting the ${m.layers} earlier layers (${m.entries.toLocaleString('en')} entries) took ${(m.extractMs / 1000).toFixed(2)} s with stratum's extractLayerAuto (GNU tar on the same blobs: ${(m.tarMs / 1000).toFixed(2)} s); one scanTree of the result ${(m.scanMs / 1000).toFixed(2)} s`;
}
