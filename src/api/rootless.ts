/**
 * What the CLI runs before anything else: the re-execution of stratum in a user namespace where
 * the host's root privileges are missing. It is its own entry so that the process which only
 * re-executes itself does not load the whole library first (that would double a rebuild's
 * start-up).
 */
export { runInUserNamespace } from '../executor/sandbox/rootless-reexec.js';
