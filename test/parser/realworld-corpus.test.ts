import { readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseDockerfile, parseDockerfileAst } from '../../src/parser/parse.js';
import { requireCorpus } from '../helpers/corpora.js';
import { corpora, dockerfilesUnder } from './corpus.js';

/**
 * Files upstream itself treats as invalid for BuildKit (relative to shared/corpora), each
 * with the error we must report and the reason.
 */
const expectedInvalid: Record<string, { message: RegExp; reason: string }> = {
  'imagebuilder/dockerclient/testdata/Dockerfile.badhealthcheck': {
    message: /^HEALTHCHECK requires at least one argument$/,
    reason: 'imagebuilder negative case: HEALTHCHECK with no arguments',
  },
  'imagebuilder/dockerclient/testdata/Dockerfile.unknown': {
    message: /^unknown instruction "HEALTH"/,
    reason: 'imagebuilder negative case: unknown instructions HEALTH and UNRECOGNIZED',
  },
  'imagebuilder/dockerclient/testdata/Dockerfile.target': {
    message: /^invalid name for build stage: "\$\{TARGET3\}"/,
    reason:
      'stage name from an ARG (AS ${TARGET3}) is a buildah/imagebuilder extension; BuildKit rejects it (moby/buildkit#2618)',
  },
  'imagebuilder/dockerfile/parser/testfiles-negative/env_no_value/Dockerfile': {
    message: /^ENV must have two arguments$/,
    reason: 'upstream must-fail parser case',
  },
  'imagebuilder/dockerfile/parser/testfiles-negative/shykes-nested-json/Dockerfile': {
    message: /^when using JSON array syntax/,
    reason: 'upstream must-fail parser case',
  },
  'imagebuilder/dockerfile/parser/testfiles/escape-nonewline/Dockerfile': {
    message: /^invalid escape token '``'/,
    reason: "imagebuilder's older fork accepts `# escape = ``` (two backticks); BuildKit allows only ` or \\",
  },
  'imagebuilder/dockerfile/parser/testfiles/long-text/Dockerfile': {
    message: /^dockerfile line greater than max allowed size of 65535$/,
    reason: "a 145 KB line: imagebuilder's fork reads it, BuildKit's scanner stops at 64 KiB",
  },
};

/** imagebuilder's parser corpus is AST-level (like buildkit/testfiles): unknown flags and CMD before FROM are fine there. */
const astOnly = (rel: string): boolean => rel.startsWith('imagebuilder/dockerfile/parser/');

const realworldCorpora = ['realworld', 'kaniko', 'imagebuilder'];
const present = realworldCorpora.every((dir) => requireCorpus(dir));

describe.skipIf(!present)(
  'real-world corpora: every Dockerfile parses except the ones upstream marks invalid',
  () => {
    const files = (present ? realworldCorpora : []).flatMap((dir) => [
      ...dockerfilesUnder(join(corpora, dir)),
    ]);

    it('parses them all', () => {
      let parsed = 0;
      const failures: string[] = [];
      const seenInvalid = new Set<string>();
      for (const path of files) {
        const rel = relative(corpora, path);
        const source = readFileSync(path);
        const result = astOnly(rel)
          ? parseDockerfileAst(source, { file: rel })
          : parseDockerfile(source, { file: rel });
        const errors = result.diagnostics.filter((d) => d.severity === 'error');
        const invalid = expectedInvalid[rel];
        if (invalid !== undefined) {
          seenInvalid.add(rel);
          expect(errors.length, rel).toBeGreaterThan(0);
          expect(errors[0]!.message, rel).toMatch(invalid.message);
          continue;
        }
        if (errors.length > 0)
          failures.push(`${rel}:${errors[0]!.line}:${errors[0]!.column}: ${errors[0]!.message}`);
        else parsed++;
      }
      console.log(
        `corpus: ${files.length} Dockerfiles, ${parsed} parsed without error, ${seenInvalid.size} upstream-invalid rejected as expected`,
      );
      expect(failures).toEqual([]);
      expect([...seenInvalid].sort()).toEqual(Object.keys(expectedInvalid).sort());
      expect(files.length).toBeGreaterThan(400);
    });
  },
);
