import { StratumError } from '../../errors.js';
import { isTarArchive } from './archive.js';
import { displayUrl, downloadUrl, isUrl } from './download.js';
import { parseGitSource } from './git-url.js';
import {
  finishPlan,
  normalizeDest,
  selectionContext,
  selectLocalSource,
  type CopyRequest,
} from './select.js';
import type { CopyPlan } from './types.js';

/**
 * ADD = COPY plus: local tar archives (by content) are extracted into the destination unless
 * `--unpack=false`, http(s) URLs are downloaded and extracted only with `--unpack=true`
 * (BuildKit's convert_copy.go). Git sources are fetched by the engine (git-fetch.ts) and never
 * reach planAdd.
 */
export interface AddRequest extends Omit<CopyRequest, 'instruction'> {
  /** `--checksum=sha256:...` (URL sources only). */
  readonly checksum?: string;
  /** `--unpack`: undefined extracts local archives only; true also downloads; false nothing. */
  readonly unpack?: boolean;
  /** Where downloads are written (the engine's build temp directory; it removes it). */
  readonly tmpDir: string;
  /** Told of each URL downloaded (without credentials) and the digest of what came. */
  readonly onDownload?: (url: string, digest: `sha256:${string}`) => void;
}

export async function planAdd(request: AddRequest): Promise<CopyPlan> {
  for (const src of request.sources) {
    if (parseGitSource(src) !== undefined) {
      throw new StratumError(
        'BUILD_FAILED',
        `ADD ${displayUrl(src)}: a git source is fetched by the build, not planned here`,
      );
    }
  }
  const hasUrl = request.sources.some(isUrl);
  if (request.checksum !== undefined && !hasUrl) {
    throw new StratumError('BUILD_FAILED', `ADD --checksum: checksum can only be given for http(s) sources`);
  }
  const ctx = selectionContext(
    { ...request, instruction: 'ADD' },
    request.unpack === false ? {} : { isArchive: isTarArchive },
  );
  const destination = normalizeDest(request.dest, request.workdir);
  const selected = [];
  for (const [index, src] of request.sources.entries()) {
    if (!isUrl(src)) {
      selected.push(...(await selectLocalSource(ctx, src, index)));
      continue;
    }
    const download = await downloadUrl(src, request.tmpDir, {
      ...(request.checksum !== undefined ? { checksum: request.checksum } : {}),
      ...(request.signal ? { signal: request.signal } : {}),
    });
    request.onDownload?.(download.url, download.digest);
    if (download.fileName === '' && destination.destIsDir) {
      throw new StratumError(
        'BUILD_FAILED',
        `ADD ${download.url}: cannot determine a file name from the URL; name the destination file`,
      );
    }
    if (request.unpack === true && (await isTarArchive(download.path))) {
      selected.push({
        isFile: false,
        entries: [
          {
            sourcePath: download.path,
            sourceName: download.url,
            destRelPath: '',
            type: 'archive' as const,
            mode: 0o600,
            size: download.size,
            mtimeMs: download.mtimeMs,
            sourceIndex: index,
          },
        ],
      });
      continue;
    }
    selected.push({
      isFile: true,
      entries: [
        {
          sourcePath: download.path,
          sourceName: download.url,
          destRelPath: download.fileName === '' ? '__unnamed__' : download.fileName,
          type: 'file' as const,
          mode: 0o600,
          size: download.size,
          mtimeMs: download.mtimeMs,
          sourceIndex: index,
        },
      ],
    });
  }
  return finishPlan('ADD', destination, selected, ctx.parents);
}
