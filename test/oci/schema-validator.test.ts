import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Ajv } from 'ajv';
import { describe, expect, it } from 'vitest';
import { sha256Digest } from '../../src/oci/digest.js';
import { documentProblems, type DocumentKind } from '../../src/oci/validate.js';
import { corpusPath, requireCorpus } from '../helpers/corpora.js';

/**
 * The runtime validator (src/oci/validate.ts) against the image-spec corpus: it must give every
 * fixture its upstream verdict, and on the documents a plain schema engine can judge it must
 * agree with Ajv running the schemas themselves (converted from draft-04: `id` → `$id`).
 */

const corpus = corpusPath('image-spec-schema');
const present = requireCorpus('image-spec-schema');

interface Fixture {
  readonly file: string;
  readonly kind: string;
  readonly expectValid: boolean;
  readonly schema: string;
  readonly comment: string;
  readonly compatMap?: Readonly<Record<string, string>>;
  readonly sha256OfRawBytes?: string;
}

const fixtures = present
  ? (JSON.parse(readFileSync(join(corpus, 'fixtures/index.json'), 'utf8')) as { fixtures: Fixture[] })
      .fixtures
  : [];

const KIND_BY_SCHEMA: Readonly<Record<string, DocumentKind>> = {
  'content-descriptor.json': 'descriptor',
  'image-manifest-schema.json': 'manifest',
  'image-index-schema.json': 'index',
  'config-schema.json': 'config',
  'image-layout-schema.json': 'layout',
};

/** The document as upstream validates it: compat fixtures get OCI media types first. */
function documentOf(fixture: Fixture): unknown {
  let text = readFileSync(join(corpus, fixture.file), 'utf8');
  for (const [from, to] of Object.entries(fixture.compatMap ?? {})) text = text.split(from).join(to);
  return JSON.parse(text) as unknown;
}

function parses(fixture: Fixture): boolean {
  try {
    JSON.parse(readFileSync(join(corpus, fixture.file), 'utf8'));
    return true;
  } catch {
    return false;
  }
}

function verdict(fixture: Fixture): boolean {
  if (!parses(fixture)) return false;
  return documentProblems(KIND_BY_SCHEMA[fixture.schema]!, documentOf(fixture)).length === 0;
}

/** The four rules upstream checks outside the JSON schemas (see the corpus README). */
const OUTSIDE_SCHEMA = new Set([
  'fixtures/descriptor/016-fail.json',
  'fixtures/descriptor/018-fail.json',
  'fixtures/descriptor/029-fail.json',
  'fixtures/config/010-fail.json',
]);

function ajvFor(): Ajv {
  const ajv = new Ajv({ strict: false, allErrors: true, validateFormats: false });
  const convert = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(convert);
    if (typeof value !== 'object' || value === null) return value;
    const out: Record<string, unknown> = {};
    for (const [key, inner] of Object.entries(value)) {
      // draft-04 `id`s inside the schemas would re-base their relative $refs; the files are
      // registered by file name below instead (as upstream's Go loader maps them).
      if (key === '$schema' || (key === 'id' && typeof inner === 'string')) continue;
      out[key] = convert(inner);
    }
    return out;
  };
  for (const file of Object.keys(KIND_BY_SCHEMA).concat(['defs.json', 'defs-descriptor.json'])) {
    const schema = convert(JSON.parse(readFileSync(join(corpus, 'schema', file), 'utf8'))) as Record<
      string,
      unknown
    >;
    // Sub-schema ids are absolute URLs; give each file its file-name URL so relative $refs resolve.
    schema['$id'] = `https://opencontainers.org/schema/image/${file}`;
    ajv.addSchema(schema);
  }
  return ajv;
}

describe.skipIf(!present)('image-spec schemas: stratum validator', () => {
  it('the corpus has the 82 documents its README lists', () => {
    expect(fixtures).toHaveLength(82);
  });

  it.each(fixtures.map((fixture) => [fixture.file, fixture] as const))(
    '%s gets its upstream verdict',
    (_file, fixture) => {
      expect(verdict(fixture), fixture.comment).toBe(fixture.expectValid);
    },
  );

  it('agrees with Ajv running the schemas on every verdict the schemas alone decide', () => {
    const ajv = ajvFor();
    const disagreements: string[] = [];
    for (const fixture of fixtures) {
      if (!parses(fixture)) continue;
      const validate = ajv.getSchema(`https://opencontainers.org/schema/image/${fixture.schema}`)!;
      const ajvValid = validate(documentOf(fixture));
      const ours = verdict(fixture);
      if (OUTSIDE_SCHEMA.has(fixture.file)) {
        // The schema alone accepts these; only the extra rules reject them.
        expect(ajvValid, fixture.file).toBe(true);
        expect(ours, fixture.file).toBe(false);
      } else if (ajvValid !== ours) disagreements.push(fixture.file);
    }
    expect(disagreements).toEqual([]);
  });

  it('compat documents keep the digest of their exact bytes', () => {
    const compat = fixtures.filter((fixture) => fixture.sha256OfRawBytes !== undefined);
    expect(compat).toHaveLength(4);
    for (const fixture of compat) {
      expect(sha256Digest(readFileSync(join(corpus, fixture.file))), fixture.file).toBe(
        fixture.sha256OfRawBytes,
      );
    }
  });
});
