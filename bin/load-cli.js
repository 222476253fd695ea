'use strict';
// CommonJS (bin/package.json): an ES module entry costs Node's ES module loader, ~8 ms of
// every start-up.
//
// Loads the CLI: the bundle `npm run build` makes (dist/bundle/stratum.cjs, scripts/bundle.js),
// compiled with V8's code cache from an earlier run when there is one; dist/cli/main.js when
// there is no bundle (a dist/ that tsc alone wrote).
//
// The code cache is V8's compiled code of the bundle, kept per user in
// $XDG_CACHE_HOME/stratum-code-cache (default ~/.cache/stratum-code-cache), one file per
// command and bundle. It saves the compilation a start-up otherwise repeats (~25 ms of a
// one-shot build). A file is used only when it is ours and not writable by anyone else, its
// directory likewise, and its checksum matches; V8 then checks that it was made by this V8, with
// these flags, for this source, and refuses it otherwise. Anything wrong: the bundle is compiled
// as it is, and a good file is written for the next run. Deleting the directory is always safe.
const { createHash } = require('node:crypto');
const {
  closeSync,
  existsSync,
  fstatSync,
  lstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} = require('node:fs');
const { createRequire } = require('node:module');
const { homedir } = require('node:os');
const { dirname, join } = require('node:path');
const { pathToFileURL } = require('node:url');
const { Script } = require('node:vm');

const BUNDLE = join(__dirname, '..', 'dist', 'bundle', 'stratum.cjs');
const ROOTLESS_BUNDLE = join(__dirname, '..', 'dist', 'bundle', 'rootless.cjs');
const CHECKSUM_BYTES = 32;

/**
 * For `build` and `cache`: runs stratum again as root of a user namespace where this process
 * lacks the privileges (rootless, or a container's root; src/executor/sandbox/rootless-reexec.ts),
 * from its own small bundle, before the CLI's is loaded: this process then only waits, and
 * loading the whole CLI here cost a rootless or in-container build ~30 ms. Returns
 * `{ decided, code }`: code is the namespaced run's exit code, or undefined to run here; decided
 * is false where the check did not run here (no such bundle, or it failed: the CLI then makes
 * it again and reports any error as it reports others).
 */
async function runInUserNamespaceFirst(command, argv) {
  if ((command !== 'build' && command !== 'cache') || !existsSync(ROOTLESS_BUNDLE)) {
    return { decided: false, code: undefined };
  }
  try {
    const { runInUserNamespace } = require(ROOTLESS_BUNDLE);
    return { decided: true, code: await runInUserNamespace(process.argv[1], argv) };
  } catch {
    return { decided: false, code: undefined };
  }
}

/**
 * Returns the CLI's `main` and `saveCodeCache`, to call once the command has run: the compiled
 * code is then complete for that command (V8 compiles functions when first called).
 */
async function loadCli(command) {
  if (!existsSync(BUNDLE)) {
    const { main } = await import(pathToFileURL(join(__dirname, '..', 'dist', 'cli', 'main.js')).href);
    return { main, saveCodeCache: () => undefined };
  }
  const source = readFileSync(BUNDLE, 'latin1');
  const cacheFile = codeCacheFile(command);
  const cachedData = cacheFile === undefined ? undefined : readCodeCache(cacheFile);
  // The module wrapper of CommonJS, in strict mode as the ES modules it was made from.
  const script = new Script(
    `(function (exports, require, module, __filename, __dirname, __stratum_import_meta_url) {'use strict';${source}\n})`,
    { filename: BUNDLE, ...(cachedData === undefined ? {} : { cachedData }) },
  );
  const module = { exports: {} };
  script.runInThisContext()(
    module.exports,
    createRequire(BUNDLE),
    module,
    BUNDLE,
    dirname(BUNDLE),
    pathToFileURL(BUNDLE).href,
  );
  const fresh = cachedData === undefined || script.cachedDataRejected === true;
  return {
    main: module.exports.main,
    saveCodeCache: () => {
      if (fresh && cacheFile !== undefined) writeCodeCache(cacheFile, script.createCachedData());
    },
  };
}

/**
 * The cache file for this bundle, Node and command; undefined when no safe directory exists.
 * The bundle is known by its file's identity (`npm run build` writes a new file: another inode
 * and mtime) rather than by hashing 1 MB at every start; V8 refuses data made for a source of
 * another length in any case.
 */
function codeCacheFile(command) {
  const base = process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
  const dir = join(base, 'stratum-code-cache');
  try {
    // Two plain mkdirs, not a recursive one: Node's retries ENOENT forever under /proc
    // (XDG_CACHE_HOME=/proc/x spun at 100 % CPU, deaf to SIGTERM). No base's parent: no cache.
    for (const path of [base, dir]) {
      try {
        mkdirSync(path, { mode: 0o700 });
      } catch (error) {
        if (error.code !== 'EEXIST') throw error;
      }
    }
    if (!ownedAndPrivate(lstatSync(dir))) return undefined;
  } catch {
    return undefined;
  }
  let bundle;
  try {
    bundle = statSync(BUNDLE, { bigint: true });
  } catch {
    return undefined;
  }
  const key = createHash('sha256')
    .update(`${bundle.dev}:${bundle.ino}:${bundle.size}:${bundle.mtimeNs}:${bundle.ctimeNs}`)
    .update(`\0${process.version}\0${process.arch}`)
    .digest('hex')
    .slice(0, 32);
  const name = /^[a-z-]+$/.test(command ?? '') ? command : 'other';
  return join(dir, `${key}-${name}.bin`);
}

/** Only a file of ours that no one else may write is code we run. */
function ownedAndPrivate(stats) {
  return stats.uid === process.geteuid() && (stats.mode & 0o022) === 0;
}

/** The cached data (after its checksum), or undefined when missing, foreign or damaged. */
function readCodeCache(file) {
  let fd;
  try {
    fd = openSync(file, 'r');
    const stats = fstatSync(fd);
    if (!stats.isFile() || !ownedAndPrivate(stats)) return undefined;
    const content = readFileSync(fd);
    const data = content.subarray(CHECKSUM_BYTES);
    const sum = createHash('sha256').update(data).digest();
    // V8 checks versions, flags and the source, not the bytes: a damaged file must not reach it.
    return sum.equals(content.subarray(0, CHECKSUM_BYTES)) ? data : undefined;
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** Writes atomically (temporary file and rename), so no reader sees part of a file. */
function writeCodeCache(file, data) {
  const temporary = `${file}.tmp-${process.pid}`;
  try {
    writeFileSync(temporary, Buffer.concat([createHash('sha256').update(data).digest(), data]), {
      mode: 0o600,
      flag: 'wx',
    });
    renameSync(temporary, file);
  } catch {
    rmSync(temporary, { force: true });
    return;
  }
  removeOldCodeCaches(dirname(file));
}

/** Files kept in the directory: a few commands of a few installed versions. */
const KEEP_FILES = 16;

/**
 * Every `npm run build` and every upgrade makes new files (the key names the bundle's file), and
 * a developer's directory had grown to 343 MB of them: once a new file is written, only the
 * KEEP_FILES most recently written stay. A removed one that was still in use is written again
 * by its next run.
 */
function removeOldCodeCaches(dir) {
  try {
    const files = readdirSync(dir)
      .filter((name) => name.endsWith('.bin'))
      .map((name) => ({ path: join(dir, name), mtime: statSync(join(dir, name)).mtimeMs }))
      .sort((a, b) => b.mtime - a.mtime);
    for (const old of files.slice(KEEP_FILES)) rmSync(old.path, { force: true });
  } catch {
    // a cache: whatever fails here costs disk space, never a build
  }
}

module.exports = { loadCli, runInUserNamespaceFirst };
