import type { FoundPackage } from './package.js';
import { purl } from '../purl.js';

/**
 * Installed Python distributions: `NAME-VER.dist-info/METADATA` (wheels, pip) and
 * `NAME-VER.egg-info/PKG-INFO` or a lone `NAME-VER.egg-info` file (setuptools). The metadata is
 * RFC 822 headers (core metadata spec); the licence is `License-Expression` (metadata 2.4), else
 * `License`, else the `License ::` classifiers.
 */

export function isPythonMetadata(path: string): boolean {
  return (
    /(^|\/)[^/]+\.dist-info\/METADATA$/.test(path) ||
    /(^|\/)[^/]+\.egg-info\/PKG-INFO$/.test(path) ||
    /(^|\/)[^/]+\.egg-info$/.test(path)
  );
}

function headers(text: string): Map<string, string[]> {
  const fields = new Map<string, string[]>();
  let last: string | undefined;
  for (const line of text.split('\n')) {
    if (line.trim() === '') break; // the body (long description) starts after a blank line
    if ((line.startsWith(' ') || line.startsWith('\t')) && last !== undefined) continue;
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    last = line.slice(0, colon).toLowerCase();
    fields.set(last, [...(fields.get(last) ?? []), line.slice(colon + 1).trim()]);
  }
  return fields;
}

/** PEP 503 normalisation, as the pypi purl type wants it. */
export function normalisePythonName(name: string): string {
  return name.toLowerCase().replace(/[-_.]+/g, '-');
}

export function pythonPackage(
  content: Buffer,
  path: string,
  layer: number | undefined,
): FoundPackage | undefined {
  const fields = headers(content.toString('utf8'));
  const name = fields.get('name')?.[0];
  const version = fields.get('version')?.[0];
  if (name === undefined || version === undefined || name === '' || version === '') return undefined;
  const classifierLicences = (fields.get('classifier') ?? [])
    .filter((classifier) => classifier.startsWith('License ::'))
    .map((classifier) => classifier.split('::').pop()!.trim());
  const declared = fields.get('license-expression')?.[0] ?? fields.get('license')?.[0];
  const license =
    declared !== undefined && declared !== '' && declared !== 'UNKNOWN'
      ? declared
      : classifierLicences.length > 0
        ? classifierLicences.join(' AND ')
        : undefined;
  const homepage = fields.get('home-page')?.[0];
  const summary = fields.get('summary')?.[0];
  const author = fields.get('author')?.[0] ?? fields.get('author-email')?.[0];
  return {
    type: 'pypi',
    name,
    version,
    purl: purl('pypi', undefined, normalisePythonName(name), version, undefined),
    ...(license === undefined ? {} : { license }),
    location: path,
    sourceInfo: `acquired package info from installed python package manifest file: /${path}`,
    ...(layer === undefined ? {} : { layer }),
    ...(author ? { supplier: author } : {}),
    ...(homepage && homepage !== 'UNKNOWN' ? { homepage } : {}),
    ...(summary && summary !== 'UNKNOWN' ? { description: summary } : {}),
  };
}
