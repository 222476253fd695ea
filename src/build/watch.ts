// `stratum build --watch` as a library call: the context watched (src/watch/), each burst of
// changes rebuilt with buildImage in this one warm process, what the build writes never
// counted as a change.
import { collectGarbageNow } from '../util/idle-gc.js';
import { trace } from '../util/trace.js';
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { StratumError } from '../errors.js';
import { isIgnored, loadDockerignore, type IgnoreMatcher } from '../executor/context/index.js';
import { RebuildSession } from '../executor/rebuild-session.js';
import { parseImageReference } from '../oci/reference.js';
import { defaultDataDir } from '../transport/store/store.js';
import { defaultCacheDir } from '../util/cache-dir.js';
import { descriptorOf } from '../util/output-path.js';
import { TreeWatcher, runRebuildLoop } from '../watch/index.js';
import { buildImage, type BuildImageOptions, type BuildImageResult } from './build-image.js';
import { parseOutputs } from './output-spec.js';

export interface WatchBuildOptions extends Omit<
  BuildImageOptions,
  'dockerfile' | 'contextArchive' | 'signal'
> {
  /** The Dockerfile, read again for every build (default CONTEXT/Dockerfile). */
  readonly dockerfilePath?: string;
  /** Ends the loop: the build running stops and cleans up, then watchBuilds resolves. */
  readonly signal: AbortSignal;
  /**
   * A build begins, at the first change of a burst: its progress events follow, but it is
   * announced (onBuildStart) only once the burst is over, and may be aborted before that (a
   * change it must see, when it has read the Dockerfile or the context already).
   */
  readonly onBuildBegin?: () => void;
  /** A build is starting; `changed` names what triggered it (empty for the first build). */
  readonly onBuildStart?: (changed: readonly string[]) => void;
  /** A build ended: its result, or the error that failed it (not thrown: the loop goes on). */
  readonly onBuildEnd?: (outcome: WatchBuildOutcome) => void;
  /** Quiet time before a burst of changes is built (default 15 ms). */
  readonly quietMs?: number;
}

export type WatchBuildOutcome =
  | { readonly kind: 'built'; readonly result: BuildImageResult; readonly seconds: number }
  | { readonly kind: 'failed'; readonly error: unknown; readonly seconds: number };

/**
 * Builds, then rebuilds on every change of the context, the Dockerfile or an ignore file,
 * until `signal` aborts. A failed build is handed to onBuildEnd and the loop keeps watching.
 * Rejects only for what no rebuild can fix: a usage error in the options, a context that cannot
 * be watched.
 */
export async function watchBuilds(options: WatchBuildOptions): Promise<void> {
  const contextDir = resolve(options.contextDir);
  const dockerfilePath = resolve(options.dockerfilePath ?? join(contextDir, 'Dockerfile'));
  refuseStandardOutput(options);
  const excluded = writtenPaths(options, contextDir);
  const ignoreFiles = [`${dockerfilePath}.dockerignore`, join(contextDir, '.dockerignore')];
  const alwaysRelevant = new Set([dockerfilePath, ...ignoreFiles]);
  let matcher: IgnoreMatcher = (await loadDockerignore(contextDir, dockerfilePath)).matcher;
  let ignoreChanged = false;

  /** Relative to the context, slash-separated, as .dockerignore patterns see it; undefined outside. */
  const inContext = (path: string): string | undefined => {
    const rel = relative(contextDir, path);
    return rel === '' || rel.startsWith(`..${sep}`) || rel === '..' || isAbsolute(rel)
      ? undefined
      : rel.split(sep).join('/');
  };
  const isExcluded = (path: string): boolean => excluded.some((rule) => rule(path));
  const relevant = (path: string): boolean => {
    if (alwaysRelevant.has(path)) return true;
    if (isExcluded(path)) return false;
    const rel = inContext(path);
    return rel !== undefined && !isIgnored(matcher, rel);
  };
  const listeners = new Set<(path: string) => void>();
  // The overlay mounts, stat cache and explain record stay warm between builds.
  const session = new RebuildSession();
  const watcher = new TreeWatcher(contextDir, {
    skipDirectory: (dir) => {
      if (isExcluded(dir)) return true;
      const rel = inContext(dir);
      // With a `!` exception something below an excluded directory may count: watch it all.
      return rel !== undefined && !matcher.hasExceptions && isIgnored(matcher, rel);
    },
    onChange: (path) => {
      if (!relevant(path)) return;
      if (ignoreFiles.includes(path)) ignoreChanged = true;
      const shown = inContext(path) ?? path;
      for (const listener of listeners) listener(shown);
    },
  });
  try {
    // Watching starts before the first build, so a change made during it is built next.
    await watcher.start();
    watcher.watchFiles([dockerfilePath, ...ignoreFiles]);
    // The Dockerfile and ignore files are read before the burst is over: a change to one
    // starts the build again.
    const readEarly = new Set([...alwaysRelevant].map((path) => inContext(path) ?? path));
    await runRebuildLoop({
      signal: options.signal,
      ...(options.quietMs === undefined ? {} : { quietMs: options.quietMs }),
      subscribe: (listener) => {
        listeners.add(listener);
        return () => listeners.delete(listener);
      },
      restartOn: (shown) => readEarly.has(shown),
      build: async (settled, signal, readContext) => {
        if (ignoreChanged) {
          // A new .dockerignore changes what is watched as well as what is built.
          ignoreChanged = false;
          try {
            matcher = (await loadDockerignore(contextDir, dockerfilePath)).matcher;
            await watcher.resync();
          } catch {
            // A bad pattern: the build reads the file too and reports it.
          }
        }
        trace('watch: build start');
        options.onBuildBegin?.();
        const started = performance.now();
        const seconds = (): number => (performance.now() - started) / 1000;
        // Announced once the burst is over, with all it changed. The build may have read the
        // context already (readContext); it writes its outputs only then.
        const announced = settled.then((changed) => {
          if (signal.aborted) return;
          trace('watch: changes settled');
          options.onBuildStart?.(changed);
        });
        // The build's unmounts and removals run after its result is printed, before the next build.
        let cleanup: Promise<void> = Promise.resolve();
        try {
          const {
            onBuildBegin: _begin,
            onBuildStart: _start,
            onBuildEnd: _end,
            quietMs: _quiet,
            ...buildOptions
          } = options;
          const result = await buildImage({
            ...buildOptions,
            contextDir,
            dockerfilePath,
            signal,
            contextReady: readContext,
            outputsReady: announced,
            rebuildSession: session,
            cleanupLater: (later) => {
              later.catch(() => undefined); // awaited below
              cleanup = later;
            },
          });
          trace('watch: built');
          await announced;
          options.onBuildEnd?.({ kind: 'built', result, seconds: seconds() });
        } catch (error) {
          // A failure before the burst is over (the Dockerfile, say) is reported once it is,
          // unless a change to that file starts the build again meanwhile.
          await announced;
          if (signal.aborted) return;
          options.onBuildEnd?.({ kind: 'failed', error, seconds: seconds() });
        }
        try {
          await cleanup;
        } catch (error) {
          options.onBuildEnd?.({ kind: 'failed', error, seconds: seconds() });
        }
        // What the build left for later (the stat cache, the explain record), now that its
        // outputs are written; a failure to save a cache costs the next build time, no more.
        await session.flush().catch(() => undefined);
        // The heap is collected while nothing waits, not in the middle of the next rebuild.
        collectGarbageNow();
      },
    });
  } finally {
    watcher.close();
    await session.close();
  }
}

/** Standard output holds one build's bytes: a stream of rebuilds cannot go there. */
function refuseStandardOutput(options: WatchBuildOptions): void {
  const targets = parseOutputs(options.outputs ?? [], options.tags ?? [], options.load === true);
  for (const target of targets) {
    const toStdout =
      (target.kind === 'tar' && (target.file === undefined || descriptorOf(target.file) === 1)) ||
      (target.kind === 'image' && archivePath(target.reference) === '/dev/stdout');
    if (toStdout)
      throw new StratumError(
        'USAGE',
        '--watch writes every rebuild: an --output to standard output would concatenate them; name a file',
      );
  }
}

/** The path an archive or layout reference writes, or undefined (a registry, the store). */
function archivePath(reference: string): string | undefined {
  const parsed = parseImageReference(reference);
  return parsed.transport === 'oci' ||
    parsed.transport === 'oci-archive' ||
    parsed.transport === 'docker-archive'
    ? resolve(parsed.path)
    : undefined;
}

/**
 * What the build writes, as tests on a path: every output (a layout or a `type=local`
 * directory with all below it, a file with the temporary it is written to beside it,
 * `.NAME.tmp-…`, a directory with its staging beside it), the records (--iidfile, --metadata-file), the cache, temporary and data
 * directories. Inside the context they would otherwise make every build trigger the next.
 */
function writtenPaths(options: WatchBuildOptions, contextDir: string): ((path: string) => boolean)[] {
  const targets = parseOutputs(options.outputs ?? [], options.tags ?? [], options.load === true);
  const paths: string[] = [];
  for (const target of targets) {
    if (target.kind === 'local') paths.push(resolve(target.dir));
    else if (target.kind === 'tar' && target.file !== undefined) paths.push(resolve(target.file));
    else if (target.kind === 'image') {
      const path = archivePath(target.reference);
      if (path !== undefined) paths.push(path);
    }
  }
  if (options.iidFile !== undefined) paths.push(resolve(options.iidFile));
  if (options.metadataFile !== undefined) paths.push(resolve(options.metadataFile));
  const cacheDir = options.cacheDir ?? defaultCacheDir();
  paths.push(resolve(cacheDir), resolve(options.dataDir ?? defaultDataDir()));
  paths.push(resolve(options.tmpDir ?? process.env['STRATUM_TMPDIR'] ?? join(cacheDir, 'tmp')));
  const inside = paths.filter((path) => path === contextDir || path.startsWith(contextDir + sep));
  if (inside.includes(contextDir))
    throw new StratumError(
      'USAGE',
      `--watch: an output or the cache is the context directory ${contextDir} itself: every build would change what it builds; write it elsewhere`,
    );
  return inside.map((written) => {
    const beside = dirname(written);
    // The file's atomic-write temporary (`.NAME.tmp-…`), a type=local export's staging
    // directory (`.stratum-export-<pid>-…`): both this process's, beside the output.
    const temporaryPrefix = join(beside, `.${basename(written)}.tmp-`);
    const staging = new RegExp(`^\\.stratum-[a-z]+-${process.pid}-`);
    return (path: string) =>
      path === written ||
      path.startsWith(written + sep) ||
      path.startsWith(temporaryPrefix) ||
      (path.startsWith(beside + sep) && staging.test(path.slice(beside.length + 1).split(sep)[0] ?? ''));
  });
}
