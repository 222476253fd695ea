/** Watching a build context and scheduling rebuilds (`stratum build --watch`); see README.md. */
export { TreeWatcher, type TreeWatcherOptions } from './tree-watcher.js';
export { runRebuildLoop, DEFAULT_QUIET_MS, type RebuildLoopOptions } from './rebuild-loop.js';
