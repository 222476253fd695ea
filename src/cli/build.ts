import { readFileSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Command, Option } from 'commander';
import { StratumError } from '../errors.js';
import { buildImage } from '../index.js';
import { progressRenderer, type ProgressMode } from './progress.js';
import { abortOnSignals } from './signals.js';

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** `--build-arg K=V`; a bare `K` takes the value from the environment, as Docker does. */
function parseBuildArgs(values: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const value of values) {
    const eq = value.indexOf('=');
    if (eq === 0) throw new StratumError('USAGE', `--build-arg ${value}: the name is empty`);
    if (eq < 0) {
      const fromEnv = process.env[value];
      if (fromEnv !== undefined) out[value] = fromEnv;
    } else out[value.slice(0, eq)] = value.slice(eq + 1);
  }
  return out;
}

/** `--secret id=ID,src=PATH` (also `source=`, and `env=NAME` to read a variable). */
function parseSecrets(values: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const value of values) {
    const fields = new Map(
      value.split(',').map((field) => {
        const eq = field.indexOf('=');
        return eq < 0 ? [field, ''] : [field.slice(0, eq), field.slice(eq + 1)];
      }),
    );
    const id = fields.get('id');
    const src = fields.get('src') ?? fields.get('source');
    if (id === undefined || id === '' || src === undefined || src === '') {
      throw new StratumError('USAGE', `--secret ${value}: expected id=ID,src=PATH`);
    }
    out[id] = resolve(src);
  }
  return out;
}

export function registerBuild(program: Command): void {
  program
    .command('build')
    .description('build an image from a Dockerfile, without a daemon')
    .argument('[context]', 'build context directory', '.')
    .option('-f, --file <file>', 'Dockerfile (default: CONTEXT/Dockerfile; - reads standard input)')
    .option('-t, --tag <name>', 'name the image in the local store (repeatable)', collect, [])
    .option('--build-arg <k=v>', 'set a build argument (repeatable)', collect, [])
    .option('--target <stage>', 'build this stage (and what it needs)')
    .option(
      '-o, --output <dest>',
      'write to oci:DIR[:TAG], oci-archive:FILE[:TAG] or docker-archive:FILE[:TAG] (repeatable)',
      collect,
      [],
    )
    .addOption(
      new Option('--network <mode>', 'network for RUN').choices(['host', 'none', 'default']).default('host'),
    )
    .addOption(
      new Option('--progress <mode>', 'progress output')
        .choices(['auto', 'plain', 'json', 'quiet'])
        .default('auto'),
    )
    .option('--no-cache', 'do not use the layer cache')
    .option('--no-cache-filter <stage>', 'do not use the cache for this stage (repeatable)', collect, [])
    .option(
      '--secret <id=ID,src=PATH>',
      'expose a secret file to RUN --mount=type=secret (repeatable)',
      collect,
      [],
    )
    .option('--explain', "show each step's cache key and why it hit or missed")
    .option('--cache-dir <dir>', 'layer cache directory (default: the user cache directory)')
    .option('--platform <os/arch>', 'target platform (only the host platform is supported)')
    .option('--push', 'push the image to the registry named by each -t')
    .option(
      '--cache-from <registry:REF>',
      'read layer cache entries from a registry (repeatable)',
      collect,
      [],
    )
    .option(
      '--cache-to <registry:REF>',
      "write this build's cache entries to a registry (repeatable)",
      collect,
      [],
    )
    .option('--insecure-registry <host>', 'reach this registry over plain HTTP (repeatable)', collect, [])
    .action(async (contextArg: string, opts: BuildFlags) => {
      const contextDir = resolve(contextArg);
      const contextStat = await stat(contextDir).catch(() => undefined);
      if (contextStat === undefined || !contextStat.isDirectory()) {
        throw new StratumError('USAGE', `build context ${contextArg}: not a directory`);
      }
      let dockerfilePath: string | undefined;
      let dockerfile: Buffer;
      if (opts.file === '-') {
        dockerfile = readFileSync(0);
      } else {
        dockerfilePath = opts.file === undefined ? join(contextDir, 'Dockerfile') : resolve(opts.file);
        try {
          dockerfile = readFileSync(dockerfilePath);
        } catch {
          throw new StratumError(
            'NOT_FOUND',
            `${opts.file ?? join(contextArg, 'Dockerfile')}: no such Dockerfile`,
          );
        }
      }
      const controller = new AbortController();
      const stopListening = abortOnSignals(controller, 'build');
      const render = progressRenderer(opts.progress, opts.explain === true);
      try {
        const result = await buildImage({
          contextDir,
          dockerfile,
          ...(dockerfilePath === undefined ? {} : { dockerfilePath }),
          buildArgs: parseBuildArgs(opts.buildArg),
          ...(opts.target === undefined ? {} : { target: opts.target }),
          ...(opts.platform === undefined ? {} : { platform: opts.platform }),
          network: opts.network === 'none' ? 'none' : 'host',
          noCache: !opts.cache,
          noCacheFilter: opts.noCacheFilter,
          secrets: parseSecrets(opts.secret),
          ...(opts.cacheDir === undefined ? {} : { cacheDir: resolve(opts.cacheDir) }),
          explain: opts.explain === true,
          tags: opts.tag,
          outputs: opts.output,
          insecureRegistries: opts.insecureRegistry,
          push: opts.push === true,
          cacheFrom: opts.cacheFrom,
          cacheTo: opts.cacheTo,
          onEvent: render,
          signal: controller.signal,
          ...(process.env['SOURCE_DATE_EPOCH']
            ? { sourceDateEpoch: Number(process.env['SOURCE_DATE_EPOCH']) }
            : {}),
        });
        if (result.written.length === 0) {
          process.stderr.write('warning: no -t or --output given: the image was built but not saved\n');
        }
        process.stdout.write(`${result.digest}\n`);
      } catch (error) {
        if (controller.signal.aborted)
          throw new StratumError('ABORTED', 'build interrupted; nothing was written');
        throw error;
      } finally {
        stopListening();
      }
    });
}

interface BuildFlags {
  readonly file?: string;
  readonly tag: string[];
  readonly buildArg: string[];
  readonly target?: string;
  readonly output: string[];
  readonly network: string;
  readonly progress: ProgressMode;
  readonly cache: boolean;
  readonly noCacheFilter: string[];
  readonly secret: string[];
  readonly explain?: boolean;
  readonly cacheDir?: string;
  readonly platform?: string;
  readonly insecureRegistry: string[];
  readonly push?: boolean;
  readonly cacheFrom: string[];
  readonly cacheTo: string[];
}
