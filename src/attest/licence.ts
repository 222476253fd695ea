import correct from 'spdx-correct';
import parse from 'spdx-expression-parse';

/**
 * A declared licence as an SPDX licence expression, which is all SPDX's licenseDeclared takes:
 * - a valid expression stays as it is;
 * - a common misspelling (`GPL-2`, `Apache 2.0`, Debian's `GPL-2+`) is corrected by
 *   spdx-correct (the corrector npm itself uses), and the text as declared is kept beside it;
 * - anything else becomes a `LicenseRef-` whose text is the declaration, so nothing is guessed
 *   and nothing is lost (SPDX 2.3 §10: other licensing information).
 * A list joined with ` AND ` (Debian copyright files name several) is taken part by part.
 */
export interface SpdxLicence {
  readonly expression: string;
  /** The declaration, when the expression is not it word for word. */
  readonly declared?: string;
  /** `LicenseRef-` identifiers made here, with the text each stands for. */
  readonly references: readonly { readonly licenseId: string; readonly extractedText: string }[];
}

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

function onePart(text: string): { expression: string; reference?: { licenseId: string; extractedText: string } } {
  if (isValid(text)) return { expression: text };
  const corrected = correct(text, { upgrade: true });
  if (corrected !== null && isValid(corrected)) return { expression: corrected };
  const licenseId = licenceRef(text);
  return { expression: licenseId, reference: { licenseId, extractedText: text } };
}

export function spdxLicence(declared: string): SpdxLicence {
  const text = declared.trim();
  if (isValid(text)) return { expression: text, references: [] };
  const parts = text.split(/\s+AND\s+/).map((part) => part.trim()).filter((part) => part !== '');
  const mapped = parts.map(onePart);
  const expression =
    mapped.length === 1 ? mapped[0]!.expression : mapped.map((part) => (/\s/.test(part.expression) ? `(${part.expression})` : part.expression)).join(' AND ');
  return {
    expression,
    declared: text,
    references: mapped.flatMap((part) => (part.reference === undefined ? [] : [part.reference])),
  };
}
