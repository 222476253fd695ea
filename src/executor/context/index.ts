/**
 * The build context and COPY/ADD file operations: .dockerignore, source selection, destination
 * rules, applying onto a rootfs, ADD archives and URLs, and the content digest for cache keys.
 * See README.md in this folder.
 */
export type { CopyEntry, CopyPlan, EntryType, Owner, SourceRoot } from './types.js';
export {
  compileIgnore,
  isIgnored,
  loadDockerignore,
  parseDockerignore,
  type IgnoreFile,
  type IgnoreMatcher,
  type IgnorePattern,
} from './dockerignore.js';
export { compileGlob, globMatch, hasWildcards, GlobSyntaxError } from './glob.js';
export { cleanPath, resolveInRoot, type RootResolution } from './paths.js';
export { describeTarget, readContextFile, readContextDockerfile, type ContextFile } from './context-file.js';
export { normalizeDest, planCopy, type CopyRequest, type Destination, type SelectOptions } from './select.js';
export { planAdd, type AddRequest } from './add.js';
export { parseGitSource, displayGitSource, redactCredentials, type GitSource } from './git-url.js';
export { resolveGitRef, checkoutGit, type ResolvedGitRef, type GitRunOptions } from './git-fetch.js';
export { HeldContents } from './held-contents.js';
export { applyCopy, mkdirInRoot, type ApplyOptions, type ApplyResult } from './apply.js';
export { applyChmod, chmodText, parseChmod, type ChmodSpec } from './chmod.js';
export { compressionOf, extractArchive, isTarArchive, isTarHeader, type Compression } from './archive.js';
export { downloadUrl, isGitSource, isUrl, urlFileName, type Download } from './download.js';
export {
  digestSources,
  explainSourceChanges,
  StatCache,
  type DigestOptions,
  type SourceFileDigest,
  type SourcesDigest,
} from './digest.js';
