import { readFileSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { Command, Option } from 'commander';
import {
  StratumError,
  buildImage,
  describeTarget,
  type BuildEvent,
  type BuildImageOptions,
  isStratumError,
  formatWarningSummary,
  parseAddHosts,
  parseCallFlag,
  parseAllow,
  parseAnnotations,
  parseAttestationFlags,
  parseBuildContexts,
  requireByteSize,
  parseCompression,
  parseKeyValues,
  parseSecretFlags,
  parseSshFlags,
  parseUlimits,
  readContextDockerfile,
  runCall,
} from '../api/cli.js';
import { progressRenderer, type ProgressMode } from './progress.js';
import { abortOnSignals } from './signals.js';
import { collect, insecureRegistryOption } from './registry-flags.js';
import { watchBuild } from './watch.js';

/** `-t NAME`, and `-t=NAME` as Docker's flag parser also reads it. */
function collectTag(value: string, previous: string[]): string[] {
  return [...previous, value.startsWith('=') ? value.slice(1) : value];
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

/**
 * buildx's boolean flags also take a value (`--pull=false`, `--push=true`), which commander
 * reads as an unknown option: `=true` becomes the bare flag, `=false` the default (no flag).
 */
const BUILDX_BOOLEAN_FLAGS = ['--pull', '--push', '--load', '--no-cache', '--quiet'];

export function withBooleanFlagValues(args: readonly string[]): string[] {
  const out: string[] = [];
  for (const [i, arg] of args.entries()) {
    if (arg === '--') return [...out, ...args.slice(i)];
    const eq = arg.indexOf('=');
    const flag = eq < 0 ? arg : arg.slice(0, eq);
    if (eq < 0 || !BUILDX_BOOLEAN_FLAGS.includes(flag)) {
      out.push(arg);
      continue;
    }
    const value = arg.slice(eq + 1).toLowerCase();
    if (value === 'true' || value === '1') out.push(flag);
    else if (value !== 'false' && value !== '0')
      throw new StratumError('USAGE', `${arg}: expected ${flag}=true or ${flag}=false`);
  }
  return out;
}

class BuildCommand extends Command {
  override parseOptions(argv: string[]): ReturnType<Command['parseOptions']> {
    return super.parseOptions(withBooleanFlagValues(argv));
  }
}

export function registerBuild(program: Command): void {
  const command = new BuildCommand('build');
  program.addCommand(command);
  command
    .description('build an image from a Dockerfile, without a daemon')
    .argument(
      '[context]',
      'build context directory; - reads a tar (or a Dockerfile) from standard input',
      '.',
    )
    .option('-f, --file <file>', 'Dockerfile (default: CONTEXT/Dockerfile; - reads standard input)')
    .option('-t, --tag <name>', 'name the image in the local store (repeatable)', collectTag, [])
    .option('--build-arg <k=v>', 'set a build argument (repeatable)', collect, [])
    .option('--target <stage>', 'build this stage (and what it needs)')
    .option(
      '-o, --output <dest>',
      "write to a transport (oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE[:TAG], docker://REF, docker-daemon:NAME) or in BuildKit's form: type=local,dest=DIR | type=tar,dest=FILE|- | type=oci,dest=FILE | type=docker[,dest=FILE][,name=N] | type=image,name=REF[,push=true] | type=registry,ref=REF (repeatable)",
      collect,
      [],
    )
    .option('--load', 'load the image into the Docker daemon (as type=docker), named by each -t')
    .option('-q, --quiet', 'print nothing but the image digest on standard output')
    .option('--iidfile <file>', 'write the image ID to FILE')
    .option('--metadata-file <file>', "write BuildKit's build result metadata (JSON) to FILE")
    .option('--label <k=v>', "set a label on the image's config (repeatable)", collect, [])
    .option(
      '--annotation <[manifest:]k=v>',
      "set an annotation on the image's manifest (repeatable)",
      collect,
      [],
    )
    .addOption(
      new Option(
        '--network <mode>',
        'network for RUN: default (a private namespace per step, outbound through pasta), host, none',
      )
        .choices(['default', 'host', 'none'])
        .default('default'),
    )
    .addOption(
      new Option('--progress <mode>', 'progress output')
        .choices(['auto', 'plain', 'json', 'quiet'])
        .default('auto'),
    )
    .option('--no-cache', 'do not use the layer cache')
    .option('--no-cache-filter <stage>', 'do not use the cache for this stage (repeatable)', collect, [])
    .option(
      '--secret <id=ID,src=PATH|env=VAR>',
      'expose a secret file or variable to RUN --mount=type=secret (repeatable)',
      collect,
      [],
    )
    .option(
      '--ssh <default|ID=SOCKET>',
      'forward an ssh agent socket to RUN --mount=type=ssh (repeatable)',
      collect,
      [],
    )
    .option(
      '--allow <entitlement>',
      'grant what a Dockerfile may not take by itself: network.host (RUN --network=host), security.insecure (RUN --security=insecure) (repeatable)',
      collect,
      [],
    )
    .addOption(
      new Option(
        '--isolation <mode>',
        "how RUN is isolated: namespaces (Docker's default spec), proot (containers where no namespace can be made), auto: the strongest available (default $STRATUM_ISOLATION, else auto)",
      ).choices(['auto', 'namespaces', 'proot']),
    )
    .option('--add-host <host:ip>', "add a line to RUN's /etc/hosts (repeatable)", collect, [])
    .option('--shm-size <size>', "size of RUN's /dev/shm (default 64m)")
    .option(
      '--ulimit <name=soft[:hard]>',
      'resource limit for RUN, e.g. nofile=1024:2048 (repeatable)',
      collect,
      [],
    )
    .option(
      '--build-context <name=value>',
      'NAME for FROM / COPY --from / RUN --mount from=: a DIR, docker-image://REF or oci-layout://DIR[:TAG] (repeatable)',
      collect,
      [],
    )
    .option(
      '--pull',
      'always check the registry for a newer base: base images named without a transport come from their registry even when stored locally (--pull=true|false as buildx; false is the default)',
    )
    .option('--explain', "show each step's cache key and why it hit or missed")
    .option('--cache-dir <dir>', 'layer cache directory (default: the user cache directory)')
    .addOption(
      new Option(
        '--snapshotter <name>',
        'how steps see their rootfs (default: $STRATUM_SNAPSHOTTER, else auto)',
      ).choices(['overlay', 'scan', 'auto']),
    )
    .option(
      '--platform <os/arch[,...]>',
      'target platform(s), e.g. linux/arm64 or linux/amd64,linux/arm64 (an image index); RUN uses QEMU for other architectures',
    )
    .option('--push', 'push the image to the registry named by each -t')
    .option(
      '--cache-from <registry:REF|type=local,src=DIR>',
      'read layer cache entries from a registry or an OCI layout directory (repeatable)',
      collect,
      [],
    )
    .option(
      '--cache-to <registry:REF|type=local,dest=DIR>',
      "write this build's cache entries to a registry or an OCI layout directory (repeatable)",
      collect,
      [],
    )
    .option(
      '--compression <algo[,level=N]>',
      'layer compression: gzip (default, level 6), zstd (level 3; needs Node.js 22.15+) or uncompressed',
    )
    .addOption(insecureRegistryOption().default([]))
    .option(
      '--provenance <true|false|mode=min|max[,version=v1]>',
      "attach SLSA provenance (BuildKit's attestation storage; true is mode=max, version v0.2 unless version=v1); none by default",
    )
    .option(
      '--sbom <true|false>',
      'attach an SPDX 2.3 SBOM of the image (BUILDKIT_SBOM_SCAN_CONTEXT / _STAGE build args scan more)',
    )
    .option(
      '--attest <type=provenance|sbom,...>',
      'attach an attestation, as buildx: type=provenance[,mode=min|max][,version=v0.2|v1][,builder-id=ID] or type=sbom; disabled=true turns one off (repeatable)',
      collect,
      [],
    )
    .option(
      '--sign-key <file>',
      'sign the provenance with this PEM key (ECDSA P-256 or Ed25519) as DSSE envelopes, stored where cosign looks (the sha256-DIGEST.att tag); check with stratum verify-attestation',
    )
    .option(
      '--call <name[,format=json]>',
      "what to do instead of building: check (BuildKit's build checks), outline (the build args, secrets and ssh a target uses), targets (the stages); build is the default",
    )
    .option('--check', 'shorthand for --call=check: run the build checks, build nothing, exit 1 on a warning')
    .addOption(
      new Option('--format <format>', 'output of --call: text (as buildx prints it) or json').choices([
        'text',
        'json',
      ]),
    )
    .option(
      '--watch',
      'stay running: rebuild on every change of the context, the Dockerfile or .dockerignore, writing every output each time (Ctrl-C stops)',
    )
    .action(async (contextArg: string, opts: BuildFlags) => {
      const call = parseCallFlag(opts.check === true ? 'check' : (opts.call ?? 'build'), opts.format);
      const fromStdin = contextArg === '-';
      const contextDir = resolve(fromStdin ? '.' : contextArg);
      if (!fromStdin) {
        const contextStat = await stat(contextDir).catch(() => undefined);
        if (contextStat === undefined || !contextStat.isDirectory()) {
          throw new StratumError('USAGE', `build context ${contextArg}: not a directory`);
        }
      }
      if (fromStdin && opts.file === '-')
        throw new StratumError(
          'USAGE',
          'the context and the Dockerfile cannot both come from standard input',
        );
      let dockerfilePath: string | undefined;
      let dockerfile: Buffer | undefined;
      if (opts.file === '-') {
        dockerfile = readFileSync(0);
      } else if (fromStdin) {
        // Inside the context tar (buildImage reads it once the tar is unpacked).
        dockerfilePath = opts.file;
      } else {
        dockerfilePath = opts.file === undefined ? join(contextDir, 'Dockerfile') : resolve(opts.file);
        // Its symlinks resolve inside the context when it is the context's (context-file.ts).
        const read = await readContextDockerfile(
          contextDir,
          opts.file === undefined ? undefined : dockerfilePath,
        );
        const named = opts.file ?? join(contextArg, 'Dockerfile');
        if (read.content === undefined) {
          throw new StratumError(
            'NOT_FOUND',
            `${named}: no such Dockerfile ${describeTarget(read.inRoot, relative(contextDir, dockerfilePath))}`.trimEnd(),
          );
        }
        dockerfile = read.content;
      }
      if (call.name !== 'build') {
        if (opts.watch === true)
          throw new StratumError('USAGE', `--watch builds; --call ${call.name} builds nothing`);
        if (dockerfile === undefined)
          throw new StratumError(
            'USAGE',
            `--call ${call.name}: needs a context directory or -f FILE, not a context on standard input`,
          );
        const answer = await runCall(call, {
          dockerfile,
          file: opts.file === undefined || opts.file === '-' ? 'Dockerfile' : opts.file,
          contextDir,
          ...(dockerfilePath === undefined ? {} : { dockerfilePath }),
          buildArgs: parseBuildArgs(opts.buildArg),
          ...(opts.target === undefined ? {} : { target: opts.target }),
          ...(opts.platform === undefined ? {} : { platform: opts.platform }),
        });
        process.stdout.write(answer.text);
        process.exitCode = answer.exitCode;
        return;
      }
      // Every flag parsed before any work: a usage error costs no build (and no watch).
      const options = {
        contextDir,
        ...(dockerfile === undefined ? {} : { dockerfile }),
        ...(dockerfilePath === undefined ? {} : { dockerfilePath }),
        ...(fromStdin ? { contextArchive: process.stdin } : {}),
        buildArgs: parseBuildArgs(opts.buildArg),
        ...(opts.target === undefined ? {} : { target: opts.target }),
        ...(opts.platform === undefined ? {} : { platform: opts.platform }),
        network: opts.network,
        noCache: !opts.cache,
        noCacheFilter: opts.noCacheFilter,
        secretSources: parseSecretFlags(opts.secret),
        labels: parseKeyValues('--label', opts.label),
        annotations: parseAnnotations(opts.annotation),
        load: opts.load === true,
        buildContexts: parseBuildContexts(opts.buildContext),
        attestations: parseAttestationFlags({
          ...(opts.provenance === undefined ? {} : { provenance: opts.provenance }),
          ...(opts.sbom === undefined ? {} : { sbom: opts.sbom }),
          attest: opts.attest,
        }),
        ...(opts.signKey === undefined ? {} : { signKey: resolve(opts.signKey) }),
        pull: opts.pull === true,
        ssh: parseSshFlags(opts.ssh),
        allow: parseAllow(opts.allow),
        ...(opts.isolation === undefined ? {} : { isolation: opts.isolation }),
        extraHosts: parseAddHosts(opts.addHost),
        ...(opts.shmSize === undefined ? {} : { shmSize: requireByteSize('--shm-size', opts.shmSize) }),
        ulimits: parseUlimits(opts.ulimit),
        ...(opts.iidfile === undefined ? {} : { iidFile: opts.iidfile }),
        ...(opts.metadataFile === undefined ? {} : { metadataFile: opts.metadataFile }),
        ...(opts.compression === undefined ? {} : { compression: parseCompression(opts.compression) }),
        ...(opts.cacheDir === undefined ? {} : { cacheDir: resolve(opts.cacheDir) }),
        ...(opts.snapshotter === undefined ? {} : { snapshotter: opts.snapshotter }),
        explain: opts.explain === true,
        tags: opts.tag,
        outputs: opts.output,
        insecureRegistries: opts.insecureRegistry,
        push: opts.push === true,
        cacheFrom: opts.cacheFrom,
        cacheTo: opts.cacheTo,
        ...(process.env['SOURCE_DATE_EPOCH']
          ? { sourceDateEpoch: Number(process.env['SOURCE_DATE_EPOCH']) }
          : {}),
      } satisfies BuildImageOptions;
      if (opts.watch === true) {
        if (fromStdin || opts.file === '-')
          throw new StratumError(
            'USAGE',
            '--watch watches a context directory and a Dockerfile file, not standard input',
          );
        await watchBuild(options, {
          progress: opts.quiet === true ? 'quiet' : opts.progress,
          quiet: opts.quiet === true,
          explain: opts.explain === true,
        });
        return;
      }
      const controller = new AbortController();
      const stopListening = abortOnSignals(controller, 'build');
      const render = progressRenderer(opts.quiet === true ? 'quiet' : opts.progress, opts.explain === true);
      // Each destination as it is written: an interrupted build names those it had finished.
      const written: string[] = [];
      const onEvent = (event: BuildEvent): void => {
        if (event.kind === 'image') written.push(event.destination);
        render(event);
      };
      try {
        const result = await buildImage({ ...options, onEvent, signal: controller.signal });
        render.finish();
        // buildx's summary of the check warnings, after the progress (none in quiet mode).
        if (opts.quiet !== true && opts.progress !== 'quiet' && opts.progress !== 'json')
          process.stderr.write(formatWarningSummary(result.checkWarnings));
        if (result.written.length === 0 && opts.quiet !== true) {
          process.stderr.write('warning: no -t or --output given: the image was built but not saved\n');
        }
        // With a tar on standard output, the digest would corrupt it.
        if (!result.wroteStdout) process.stdout.write(`${result.digest}\n`);
      } catch (error) {
        if (controller.signal.aborted) throw interrupted(controller.signal.reason, written);
        // A failed RUN's last output, once: here only when the progress display did not show it.
        if (isStratumError(error) && error.output !== undefined && !render.showsOutput) {
          for (const line of error.output) process.stderr.write(`  | ${line}\n`);
        }
        throw error;
      } finally {
        render.finish(false);
        stopListening();
      }
    });
}

/** `build interrupted by SIGTERM`, and exactly what had been written before it. */
function interrupted(reason: unknown, written: readonly string[]): StratumError {
  const what = reason instanceof Error ? reason.message : 'build interrupted';
  const unique = [...new Set(written)];
  return new StratumError(
    'ABORTED',
    unique.length === 0
      ? `${what}; nothing was written`
      : `${what} after writing ${unique.join(', ')}; nothing else was written`,
  );
}

interface BuildFlags {
  readonly file?: string;
  readonly tag: string[];
  readonly buildArg: string[];
  readonly target?: string;
  readonly output: string[];
  readonly network: 'default' | 'host' | 'none';
  readonly progress: ProgressMode;
  readonly cache: boolean;
  readonly noCacheFilter: string[];
  readonly secret: string[];
  readonly explain?: boolean;
  readonly cacheDir?: string;
  readonly snapshotter?: 'overlay' | 'scan' | 'auto';
  readonly platform?: string;
  readonly insecureRegistry: string[];
  readonly push?: boolean;
  readonly cacheFrom: string[];
  readonly cacheTo: string[];
  readonly compression?: string;
  readonly load?: boolean;
  readonly quiet?: boolean;
  readonly iidfile?: string;
  readonly metadataFile?: string;
  readonly label: string[];
  readonly ssh: string[];
  readonly addHost: string[];
  readonly allow: string[];
  readonly isolation?: 'auto' | 'namespaces' | 'proot';
  readonly shmSize?: string;
  readonly ulimit: string[];
  readonly buildContext: string[];
  readonly pull?: boolean;
  readonly annotation: string[];
  readonly provenance?: string;
  readonly sbom?: string;
  readonly attest: string[];
  readonly signKey?: string;
  readonly call?: string;
  readonly check?: boolean;
  readonly format?: 'text' | 'json';
  readonly watch?: boolean;
}
