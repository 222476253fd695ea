import type { Command } from 'commander';
import { registerParse } from './parse.js';
import { registerInspect } from './inspect.js';
import { registerCopy } from './copy.js';
import { registerPull } from './pull.js';
import { registerPush } from './push.js';
import { registerLogin } from './login.js';
import { registerBuild } from './build.js';
import { registerCache } from './cache.js';
import { registerImages } from './images.js';
import { registerDiff } from './diff.js';
import { registerAnalyze } from './analyze.js';
import { registerDu } from './du.js';

/** Each command lives in its own module and adds itself to the program. */
export type RegisterCommand = (program: Command) => void;

export const commands: readonly RegisterCommand[] = [
  registerParse,
  registerInspect,
  registerCopy,
  registerPull,
  registerPush,
  registerLogin,
  registerBuild,
  registerCache,
  registerImages,
  registerDiff,
  registerAnalyze,
  registerDu,
];
