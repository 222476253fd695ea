import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve, dirname, sep } from 'node:path';
import { describe, expect, it } from 'vitest';

/** ARCHITECTURE.md's import table: what each src/ folder may import (besides src/errors.ts). */
const allowed: Record<string, readonly string[]> = {
  oci: [],
  parser: [],
  snapshot: ['oci'],
  executor: ['parser', 'snapshot', 'oci', 'oci-writer', 'push'],
  'oci-writer': ['oci'],
  push: ['oci'],
  analyze: ['oci', 'snapshot'],
  cli: ['index.ts'],
};

const srcRoot = resolve(import.meta.dirname, '..', 'src');

function* sourceFiles(dir: string): Generator<string> {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) yield* sourceFiles(path);
    else if (name.endsWith('.ts')) yield path;
  }
}

function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  return [...text.matchAll(/(?:from|import)\s*\(?\s*'(\.[^']+)'/g)].map((match) => match[1]!);
}

describe('ARCHITECTURE.md import rules', () => {
  it('each src/ folder imports only the folders it may', () => {
    const violations: string[] = [];
    for (const file of sourceFiles(srcRoot)) {
      const rel = relative(srcRoot, file);
      const folder = rel.split(sep)[0]!;
      const rules = allowed[folder];
      if (rules === undefined) continue; // src/index.ts and src/errors.ts
      for (const spec of importsOf(file)) {
        const target = relative(srcRoot, resolve(dirname(file), spec));
        const targetFolder = target.split(sep)[0]!;
        if (target.startsWith('..')) violations.push(`${rel} imports outside src: ${spec}`);
        else if (targetFolder === folder || targetFolder === 'errors.js') continue;
        else if (folder === 'cli' && targetFolder !== 'index.js')
          violations.push(`${rel} → ${target} (cli uses the public API, src/index.ts)`);
        else if (folder !== 'cli' && !rules.includes(targetFolder)) violations.push(`${rel} → ${target}`);
      }
    }
    expect(violations).toEqual([]);
  });
});
