import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** A file name's bytes from a Latin-1 spelling (`caf\xe9` is 4 bytes, the last 0xE9). */
export function latin1(name: string): Buffer {
  return Buffer.from(name, 'latin1');
}

/** A host path whose last part is `name`'s Latin-1 bytes (not UTF-8). */
export function latin1Path(dir: string, name: string): Buffer {
  return Buffer.concat([Buffer.from(`${dir}/`), latin1(name)]);
}

/**
 * A context (made here: git and editors mangle such names) holding names that are not UTF-8:
 * `caf\xe9.txt` (Latin-1), a tar with `x\xe9` and `dir\xff/y` inside (GNU tar writes them in the
 * ustar name field, no PAX), and a Dockerfile whose RUN steps make, read and delete such names.
 */
export function writeNonUtf8Context(context: string, base: string): void {
  mkdirSync(context, { recursive: true });
  writeFileSync(join(context, 'plain.txt'), 'plain\n');
  writeFileSync(latin1Path(context, 'caf\xe9.txt'), 'latin-1\n');
  const tree = join(context, '..', 'non-utf8-tree');
  mkdirSync(latin1Path(tree, 'dir\xff'), { recursive: true });
  writeFileSync(latin1Path(tree, 'x\xe9'), 'in a tar\n');
  writeFileSync(latin1Path(tree, 'dir\xff/y'), 'below\n');
  execFileSync('tar', ['--format=gnu', '--sort=name', '-C', tree, '-cf', join(context, 'names.tar'), '.']);
  writeFileSync(
    join(context, 'Dockerfile'),
    [
      `FROM ${base}`,
      'COPY . /d/',
      'COPY caf* /g/',
      'ADD names.tar /a/',
      // \351 is 0xE9 and \377 0xFF: printf makes the bytes, the shell passes them on as they are.
      `RUN printf hi > "/$(printf 'caf\\351')" && mkdir /dir && printf y > "/dir/$(printf 'x\\377y')" && ln -s "$(printf 'tgt\\351')" /lnk`,
      `RUN cat "/$(printf 'caf\\351')" "/g/$(printf 'caf\\351').txt" > /seen && rm "/d/$(printf 'caf\\351').txt"`,
      '',
    ].join('\n'),
  );
}
