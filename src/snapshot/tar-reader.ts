import tar, { type Extract } from 'tar-stream';
import { nameFromBinary } from '../util/file-names.js';

/**
 * tar-stream's extractor with names kept as bytes. By default it decodes every name as UTF-8, so
 * a layer entry `caf\xe9` (Latin-1, as Docker writes it in a PAX `path` record) comes out as
 * `caf\ufffd` and the file it names can never be made. Here names are read as one char per byte
 * (its `latin1` filename encoding, and PAX `path`/`linkpath` values the same way) and turned
 * into names once per entry: valid UTF-8 as usual, other bytes escaped (oci/file-names.ts).
 *
 * tar-stream has no option for PAX values, so two of its methods are wrapped on this one
 * instance (not on its prototype: other extractors keep their behaviour). test/snapshot/
 * tar-names.test.ts pins the result for ustar, PAX and GNU long names, so an upgrade that moves
 * them fails there.
 */

/** tar-stream's internals this module wraps (tar-stream 3.x extract.js). */
interface ExtractInternals {
  _header: { type: string; name: string; linkname: string | null } | null;
  _pax: Record<string, string> | null;
  _paxGlobal: Record<string, string> | null;
  _decodeLongHeader(buf: Buffer): void;
  _applyLongHeaders(): void;
}

/** PAX records whose values are names (bytes, not necessarily UTF-8). */
const NAME_KEYS = new Set(['path', 'linkpath']);

/** PAX records ("%d %s=%s\n"), name values as binary strings, the others as UTF-8. */
function decodePax(data: Buffer): Record<string, string> {
  const records: Record<string, string> = {};
  let position = 0;
  while (position < data.length) {
    const space = data.indexOf(0x20, position);
    if (space === -1) break;
    const length = Number.parseInt(data.toString('latin1', position, space), 10);
    if (!(length > 0) || position + length > data.length) break;
    const record = data.subarray(space + 1, position + length - 1);
    const equals = record.indexOf(0x3d);
    if (equals !== -1) {
      const key = record.toString('utf8', 0, equals);
      const value = record.subarray(equals + 1);
      records[key] = value.toString(NAME_KEYS.has(key) ? 'latin1' : 'utf8');
    }
    position += length;
  }
  return records;
}

export interface TarExtractOptions {
  /** Accept old (v7, pre-POSIX) headers, as ADD does. */
  readonly allowUnknownFormat?: boolean;
}

/** A tar-stream extractor whose entries' `name` and `linkname` keep their bytes. */
export function byteExactExtract(options: TarExtractOptions = {}): Extract {
  // filenameEncoding and allowUnknownFormat exist at run time; tar-stream's typings omit them.
  const extractOptions = {
    filenameEncoding: 'latin1',
    allowUnknownFormat: options.allowUnknownFormat ?? false,
  };
  const extract = tar.extract(extractOptions as unknown as Parameters<typeof tar.extract>[0]);
  const internals = extract as unknown as ExtractInternals;
  const decodeLongHeader = internals._decodeLongHeader.bind(extract);
  internals._decodeLongHeader = (buf: Buffer): void => {
    const type = internals._header?.type;
    if (type === 'pax-header') internals._pax = { ...internals._paxGlobal, ...decodePax(buf) };
    else if (type === 'pax-global-header') internals._paxGlobal = decodePax(buf);
    else decodeLongHeader(buf);
  };
  const applyLongHeaders = internals._applyLongHeaders.bind(extract);
  internals._applyLongHeaders = (): void => {
    applyLongHeaders();
    const header = internals._header;
    if (header === null) return;
    header.name = nameFromBinary(header.name);
    if (header.linkname !== null) header.linkname = nameFromBinary(header.linkname);
  };
  return extract;
}
