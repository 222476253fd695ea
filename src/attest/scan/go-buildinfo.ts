/**
 * Go build info (what `go version -m BINARY` prints), read from an ELF executable's bytes as
 * they stream by, without holding the file: Go's linker writes a `.go.buildinfo` blob that
 * starts with the magic `\xff Go buildinf:`, then the pointer size and a flags byte; since
 * Go 1.18 (flags bit 2) the Go version and the module info follow as two varint-prefixed
 * strings at offset 32 (debug/buildinfo in Go's source). The module info is framed by 16-byte
 * sentinels and lists `path`, `mod`, `dep` and `=>` (replacement) lines, tab-separated.
 *
 * Older binaries (Go 1.17 and before) store pointers instead of strings; they are not read
 * (their build info is reported as absent). The magic also appears as a string constant inside
 * Go's own tools, so each occurrence is tried until one parses.
 */

const MAGIC = Buffer.from('\xff Go buildinf:', 'latin1');
const ELF = Buffer.from([0x7f, 0x45, 0x4c, 0x46]);
/** Bytes kept after each occurrence of the magic: the header and both strings fit in this. */
const WINDOW = 1 << 20;
const MAX_CANDIDATES = 4;

export interface GoModule {
  readonly path: string;
  readonly version: string;
  readonly sum?: string;
}

export interface GoBuildInfo {
  /** `go1.22.1` */
  readonly goVersion: string;
  /** The main package's import path. */
  readonly path?: string;
  readonly main?: GoModule;
  readonly deps: readonly GoModule[];
}

/** A push-fed reader for image-files.ts: `end()` returns the build info, or undefined. */
export function goBuildInfoReader(): { push(chunk: Uint8Array): void; end(): GoBuildInfo | undefined } {
  let head = Buffer.alloc(0);
  let isElf: boolean | undefined;
  let carry = Buffer.alloc(0);
  const candidates: { bytes: Buffer[]; size: number }[] = [];
  return {
    push(chunk) {
      let data = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      if (isElf === undefined) {
        head = Buffer.concat([head, data]);
        if (head.length < 4) return;
        isElf = head.subarray(0, 4).equals(ELF);
        data = head;
      }
      if (!isElf) return;
      // Windows still open take this chunk first.
      for (const candidate of candidates) {
        if (candidate.size >= WINDOW) continue;
        const part = data.subarray(0, WINDOW - candidate.size);
        candidate.bytes.push(Buffer.from(part));
        candidate.size += part.length;
      }
      if (candidates.length >= MAX_CANDIDATES) return;
      const searched = Buffer.concat([carry, data]);
      let at = searched.indexOf(MAGIC);
      while (at >= 0 && candidates.length < MAX_CANDIDATES) {
        // Bytes of `data` after the magic are already in the windows opened before; a new
        // window starts at the magic itself.
        const part = Buffer.from(searched.subarray(at, at + WINDOW));
        candidates.push({ bytes: [part], size: part.length });
        at = searched.indexOf(MAGIC, at + 1);
      }
      carry = Buffer.from(searched.subarray(Math.max(0, searched.length - (MAGIC.length - 1))));
    },
    end() {
      for (const candidate of candidates) {
        const info = parseBuildInfoBlob(Buffer.concat(candidate.bytes));
        if (info !== undefined) return info;
      }
      return undefined;
    },
  };
}

function readVarint(bytes: Buffer, offset: number): { value: number; next: number } | undefined {
  let value = 0;
  let shift = 0;
  for (let at = offset; at < bytes.length && shift < 35; at++) {
    const byte = bytes[at]!;
    value += (byte & 0x7f) * 2 ** shift;
    if ((byte & 0x80) === 0) return { value, next: at + 1 };
    shift += 7;
  }
  return undefined;
}

/** The blob from the magic on; undefined when it is not Go 1.18+ build info. */
export function parseBuildInfoBlob(blob: Buffer): GoBuildInfo | undefined {
  if (blob.length < 32 || !blob.subarray(0, MAGIC.length).equals(MAGIC)) return undefined;
  const pointerSize = blob[14];
  const flags = blob[15]!;
  if ((pointerSize !== 4 && pointerSize !== 8) || (flags & 2) === 0) return undefined;
  const versionLength = readVarint(blob, 32);
  if (versionLength === undefined) return undefined;
  const versionEnd = versionLength.next + versionLength.value;
  if (versionEnd > blob.length) return undefined;
  const goVersion = blob.subarray(versionLength.next, versionEnd).toString('utf8');
  if (!goVersion.startsWith('go')) return undefined;
  const modLength = readVarint(blob, versionEnd);
  if (modLength === undefined || modLength.next + modLength.value > blob.length) return undefined;
  let modinfo = blob.subarray(modLength.next, modLength.next + modLength.value);
  // The 16-byte binary sentinels around the module info (cmd/go/internal/modload), cut as bytes.
  if (modinfo.length >= 33 && modinfo[modinfo.length - 17] === 0x0a) modinfo = modinfo.subarray(16, -16);
  return { goVersion, ...parseModInfo(modinfo.toString('utf8')) };
}

export function parseModInfo(text: string): Omit<GoBuildInfo, 'goVersion'> {
  let path: string | undefined;
  let main: GoModule | undefined;
  const deps: GoModule[] = [];
  for (const line of text.split('\n')) {
    const [kind, modulePath, version, sum] = line.split('\t');
    if (kind === 'path' && modulePath !== undefined) path = modulePath;
    else if (kind === 'mod' && modulePath !== undefined)
      main = { path: modulePath, version: version ?? '', ...(sum ? { sum } : {}) };
    else if (kind === 'dep' && modulePath !== undefined)
      deps.push({ path: modulePath, version: version ?? '', ...(sum ? { sum } : {}) });
    else if (kind === '=>' && modulePath !== undefined && deps.length > 0) {
      // A replacement: the module actually linked is the replacement.
      deps[deps.length - 1] = { path: modulePath, version: version ?? '', ...(sum ? { sum } : {}) };
    }
  }
  return { ...(path === undefined ? {} : { path }), ...(main === undefined ? {} : { main }), deps };
}
