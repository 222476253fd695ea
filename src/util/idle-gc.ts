import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/**
 * A full garbage collection, run where nobody waits: `build --watch` between rebuilds. A warm
 * process's heap grows with every rebuild (zlib engines and layer buffers count as external
 * memory), and V8 then collected it in the middle of the next rebuild: a 28 ms mark-compact
 * during the last step's layer write, on the path from a save to the image. Collected while the
 * process waits for changes, the next rebuild starts with a clean heap.
 *
 * Node exposes `gc` only with --expose-gc; the flag set at run time gives it to contexts made
 * after it, which is how this takes it without a flag on the command line. Where that fails (a
 * runtime that refuses the flag), collecting is skipped: it only moves when V8 works.
 */
let collect: (() => void) | null | undefined;

export function collectGarbageNow(): void {
  if (collect === undefined) {
    try {
      setFlagsFromString('--expose-gc');
      const gc: unknown = runInNewContext('gc');
      collect = typeof gc === 'function' ? (gc as () => void) : null;
    } catch {
      collect = null;
    }
  }
  collect?.();
}
