// A ~N MB tree whose content compresses roughly like a userland (about 2.5:1 with gzip -6):
// words from a small vocabulary mixed with short runs of random bytes; 30% of the bytes in
// small files (1-64 KB, 100 per directory), the rest in 64 MB files. bench/layer-write.js and
// bench/compression.js both use it, so their figures are comparable.
import { randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, openSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** `bytes` of that content: the corpus files take slices of at varying offsets. */
export function makeCorpus(bytes) {
  const words = 'the layer tar file gzip sha256 digest stream root etc usr lib bin share doc include'.split(
    ' ',
  );
  const out = Buffer.allocUnsafe(bytes);
  let offset = 0;
  let seed = 12345;
  const rand = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff);
  while (offset < bytes) {
    if (rand() % 60 === 0) {
      const n = Math.min(bytes - offset, 8 + (rand() % 40));
      randomBytes(n).copy(out, offset);
      offset += n;
    } else {
      offset += out.write(`${words[rand() % words.length]} `, offset);
    }
  }
  return out;
}

/** Writes the tree under `tree`; returns its content bytes and file count. */
export function generateMixedTree(tree, megabytes) {
  const corpus = makeCorpus(16 * 1024 * 1024);
  const target = megabytes * 1024 * 1024;
  let written = 0;
  let files = 0;
  let cursor = 0;
  const slice = (size) => {
    if (cursor + size > corpus.length) cursor = (cursor * 7 + 4093) % (corpus.length - size);
    const part = corpus.subarray(cursor, cursor + size);
    cursor += size + 511;
    return part;
  };
  for (let d = 0; written < target * 0.3; d++) {
    const dir = join(tree, 'small', `d${d}`);
    mkdirSync(dir, { recursive: true });
    for (let f = 0; f < 100 && written < target * 0.3; f++) {
      const size = 1024 + ((d * 131 + f * 977) % (63 * 1024));
      writeFileSync(join(dir, `f${f}.txt`), slice(size));
      written += size;
      files++;
    }
  }
  mkdirSync(join(tree, 'large'), { recursive: true });
  for (let i = 0; written < target; i++) {
    const size = Math.min(target - written, 64 * 1024 * 1024);
    const fd = openSync(join(tree, 'large', `blob${i}.bin`), 'w');
    for (let done = 0; done < size;) {
      const chunk = slice(Math.min(4 * 1024 * 1024, size - done));
      writeFileSync(fd, chunk);
      done += chunk.length;
    }
    closeSync(fd);
    written += size;
    files++;
  }
  return { bytes: written, files };
}
