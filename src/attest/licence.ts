import { createRequire } from 'node:module';
import parse from 'spdx-expression-parse';

/**
 * A declared licence as an SPDX licence expression, which is all SPDX's licenseDeclared takes:
 * - a valid expression stays as it is;
 * - an SPDX identifier in another case (`mit`, Debian's `BSD-3-clause`) takes the list's case;
 * - the GNU family's short names as Debian and older metadata write them (`GPL-2`, `GPL-2+`,
 *   `LGPL-2.1+`) become `-only` / `-or-later`; Debian's `Expat` is MIT (the same text);
 * - anything else becomes a `LicenseRef-` whose text is the declaration, so nothing is guessed
 *   and nothing is lost (SPDX 2.3 §10). No fuzzy correction: a wrong licence in an SBOM is worse
 *   than an unknown one (spdx-correct, tried first, turned `GPL-2+` into `GPL-2.0-only`).
 * A list joined with ` AND ` (Debian copyright files name several) is taken part by part, each
 * licence once.
 */
export interface SpdxLicence {
  readonly expression: string;
  /** The declaration, when the expression is not it word for word. */
  readonly declared?: string;
  /** `LicenseRef-` identifiers made here, with the text each stands for. */
  readonly references: readonly { readonly licenseId: string; readonly extractedText: string }[];
}

const require = createRequire(import.meta.url);
let byLowerCase: ReadonlyMap<string, string> | undefined;

/** SPDX's identifiers by their lower case: read when an SBOM first needs them (~1.5 ms of every start-up otherwise). */
function licenceIds(): ReadonlyMap<string, string> {
  byLowerCase ??= new Map((require('spdx-license-ids') as string[]).map((id) => [id.toLowerCase(), id]));
  return byLowerCase;
}
const ALIASES: Readonly<Record<string, string>> = {
  expat: 'MIT',
  'public-domain': 'LicenseRef-public-domain',
};

function isValid(expression: string): boolean {
  try {
    parse(expression);
    return true;
  } catch {
    return false;
  }
}

function licenceRef(text: string): string {
  return `LicenseRef-${text.replace(/[^A-Za-z0-9.-]+/g, '-').replace(/^-+|-+$/g, '') || 'unknown'}`;
}

function known(text: string): string | undefined {
  const lower = text.toLowerCase();
  const alias = ALIASES[lower];
  if (alias !== undefined) return alias;
  const id = licenceIds().get(lower);
  if (id !== undefined) return id;
  // GPL-2, GPL-2+, LGPL-2.1+, AGPL-3, GFDL-1.3+ (Debian's and PyPI's spellings).
  const gnu = /^(a?gpl|lgpl|gfdl)-?(\d)(?:\.(\d))?(\+)?$/i.exec(text);
  if (gnu !== null) {
    const candidate = `${gnu[1]!.toUpperCase()}-${gnu[2]}.${gnu[3] ?? '0'}-${gnu[4] === undefined ? 'only' : 'or-later'}`;
    return licenceIds().get(candidate.toLowerCase());
  }
  return undefined;
}

export function spdxLicence(declared: string): SpdxLicence {
  const text = declared.trim();
  if (isValid(text)) return { expression: text, references: [] };
  const references = new Map<string, string>();
  const expressions: string[] = [];
  for (const part of text.split(/\s+and\s+/i)) {
    const trimmed = part.trim();
    if (trimmed === '') continue;
    let expression = known(trimmed) ?? (isValid(trimmed) ? trimmed : undefined);
    if (expression === undefined) {
      expression = licenceRef(trimmed);
      references.set(expression, trimmed);
    } else if (expression.startsWith('LicenseRef-')) references.set(expression, trimmed);
    if (/\s/.test(expression)) expression = `(${expression})`;
    if (!expressions.includes(expression)) expressions.push(expression);
  }
  return {
    expression: expressions.length === 0 ? 'NOASSERTION' : expressions.join(' AND '),
    declared: text,
    references: [...references.entries()].map(([licenseId, extractedText]) => ({ licenseId, extractedText })),
  };
}
