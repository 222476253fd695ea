// RUN. Over ~400 lines because a RUN's inputs are all keyed and mounted here in one pass: argv
// (SHELL, heredocs), Docker's environment, and every --mount kind (bind, cache, tmpfs, secret,
// ssh) with its key component; splitting the mounts out would split one key across modules.
import { trace } from '../util/trace.js';
import { execFile } from 'node:child_process';
import { importLayers } from './import-layers.js';
import { rootlessOwners } from './rootless-owners.js';
import { randomBytes, createHash } from 'node:crypto';
import { chmod, readFile, stat, writeFile } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { StratumError, errnoCode } from '../errors.js';
import { expandWord, parseMountSpec } from '../parser/index.js';
import { parseHeredocWord } from '../parser/heredoc.js';
import type { MountSpec, RunInstruction } from '../parser/index.js';
import { PROXY_ARGS } from './args.js';
import type { BuildSession } from './build-session.js';
import type { KeyComponent } from '../cache/key.js';
import { chainId } from '../oci/digest.js';
import {
  digestSources,
  mkdirInRoot,
  planCopy,
  resolveInRoot as resolveSourceInRoot,
  type SourceFileDigest,
} from './context/index.js';
import { runCreatedBy } from './history.js';
import { envKey, getEnv } from './image-state.js';
import type { StepRef } from './progress.js';
import { defaultPath, privateResolvConf, runInSandbox, type SandboxMount } from './sandbox/index.js';
import type { StepAction, StepEnv } from './step.js';
import { resolveUser } from './users.js';
import { acquireCacheMount } from './cache-mounts.js';

const OUTPUT_TAIL_LINES = 20;

/**
 * RUN: builds the argv (SHELL for the shell form, heredocs as BuildKit runs them), the
 * environment Docker gives a RUN, and the mounts; the key covers everything the command can see
 * except the rootfs itself (which the parent covers) and secrets' content.
 */
export async function runStep(
  build: BuildSession,
  env: StepEnv,
  instruction: RunInstruction,
  step: StepRef,
): Promise<StepAction> {
  const where = `${step.file}:${step.line}`;
  const config = env.state.config;
  const shell = config.Shell ?? ['/bin/sh', '-c'];
  const heredocScripts: { name: string; content: string }[] = [];
  let argv: string[];
  if (instruction.form === 'exec') {
    argv = [...instruction.command];
  } else {
    let script = instruction.command.join(' ');
    const heredocs = instruction.heredocs;
    if (heredocs.length > 0) {
      const only = heredocs[0]!;
      if (heredocs.length === 1 && parseHeredocWord(script.trim()) !== undefined) {
        if (only.content.startsWith('#!')) {
          // A script with its own interpreter: write it to a file and run that (BuildKit does the same).
          heredocScripts.push({ name: only.name, content: only.content });
          script = '';
        } else {
          script = only.content;
        }
      } else {
        script = heredocs.reduce((full, heredoc) => `${full}\n${heredoc.content}${heredoc.name}`, script);
      }
    }
    argv = heredocScripts.length > 0 ? [heredocPath(heredocScripts[0]!.name)] : [...shell, script];
  }
  if (argv.length === 0 || argv[0] === '')
    throw new StratumError('BUILD_FAILED', `${where}: RUN has no command`);

  // BuildKit's entitlements: a Dockerfile never takes more than the person running the build granted
  // (a CI job building a pull request's Dockerfile). The build's own --network host is that grant.
  if (instruction.network === 'host' && !build.allow.includes('network.host')) {
    throw new StratumError(
      'BUILD_FAILED',
      `${where}: RUN --network=host needs the network.host entitlement: pass --allow network.host to grant it`,
    );
  }
  const insecure = instruction.security === 'insecure';
  if (insecure && !build.allow.includes('security.insecure')) {
    throw new StratumError(
      'BUILD_FAILED',
      `${where}: RUN --security=insecure needs the security.insecure entitlement: pass --allow security.insecure to grant it`,
    );
  }
  const network = instruction.network === 'default' ? build.network : instruction.network;
  const mountSpecs = instruction.flags
    .filter((flag) => flag.startsWith('--mount='))
    .map((flag) =>
      parseMountSpec(
        flag.slice('--mount='.length),
        (value) => expandWord(value, env.lookup, { escapeChar: build.escapeChar, where }),
        where,
      ),
    );
  if (mountSpecs.length === 0 && instruction.mounts.length > 0) mountSpecs.push(...instruction.mounts);

  // ARGs in scope (not shadowed by ENV) reach the command's environment and the key; proxy ARGs
  // reach the environment only (Docker keeps them out of history and cache).
  const argsForEnv = env.args.filter(([name]) => getEnv(config.Env, name) === undefined);
  const proxyArgs: [string, string][] = [];
  for (const name of PROXY_ARGS) {
    const value = build.buildArgs.values.get(name);
    if (value !== undefined && !env.args.some(([declared]) => declared === name))
      proxyArgs.push([name, value]);
  }
  const user = config.User ?? '';
  // WORKDIR is kept as written (`/a/./b/../c`); the command runs in the cleaned path.
  const workdir = posix.resolve(
    config.WorkingDir === undefined || config.WorkingDir === '' ? '/' : config.WorkingDir,
  );

  // What each mount contributes to the key; a bind mount's is the digest of what it shows.
  const mountKeys = [];
  for (const mount of mountSpecs) mountKeys.push(await mountKey(mount, build, env, where));
  const mountFiles: Record<string, Readonly<Record<string, SourceFileDigest>>> = {};
  for (const mountKeyed of mountKeys)
    if (mountKeyed.files !== undefined) mountFiles[mountKeyed.component.name] = mountKeyed.files;

  const components: KeyComponent[] = [
    ...(config.Env ?? []).map((entry) => ({
      name: `env ${envKey(entry)}`,
      value: entry.slice(envKey(entry).length + 1),
    })),
    ...argsForEnv
      .filter(([name]) => !PROXY_ARGS.has(name))
      .map(([name, value]) => ({ name: `arg ${name}`, value })),
    { name: 'user', value: user === '' ? 'root (default)' : user },
    { name: 'workdir', value: workdir },
    { name: 'network', value: network },
    // Only when asked for, so other steps keep their keys.
    ...(insecure ? [{ name: 'security', value: 'insecure' }] : []),
    ...mountKeys.map((mountKeyed) => mountKeyed.component),
    // Only when given, so builds without them keep their keys.
    ...(build.extraHosts.length === 0
      ? []
      : [{ name: 'add-host', value: build.extraHosts.map(({ host, ip }) => `${host}=${ip}`).join(' ') }]),
    ...heredocScripts.map((script) => ({
      name: `heredoc ${script.name}`,
      value: createHash('sha256').update(script.content).digest('hex'),
    })),
  ];
  const createdBy = runCreatedBy(
    instruction.form === 'shell' ? [...shell, instruction.command.join(' ')] : argv,
    env.args.filter(([name]) => !PROXY_ARGS.has(name)),
  );

  return {
    components,
    createdBy,
    ...(Object.keys(mountFiles).length > 0 ? { mountFiles } : {}),
    // The ARGs are components of their own, so a changed value is named as such.
    instruction: `RUN ${JSON.stringify(argv)}`,
    execute: async (rootfs) => {
      const resolved = await resolveUser(rootfs, user);
      const hostname = randomBytes(6).toString('hex');
      const environment = [...(config.Env ?? [])];
      if (getEnv(environment, 'PATH') === undefined) environment.unshift(`PATH=${defaultPath}`);
      for (const [name, value] of [...argsForEnv, ...proxyArgs]) environment.push(`${name}=${value}`);
      if (getEnv(environment, 'HOSTNAME') === undefined) environment.push(`HOSTNAME=${hostname}`);
      if (getEnv(environment, 'HOME') === undefined) environment.push(`HOME=${resolved.home}`);

      // Docker creates the working directory when the container starts; it lands in this layer.
      await mkdirInRoot(rootfs, workdir);
      const scratch = await build.workspace.dir('run');
      // Cache mounts in use until the command ends (sharing=locked and private hold a lock).
      const releases: (() => Promise<void>)[] = [];
      const tail: string[] = [];
      let partial = '';
      let result: Awaited<ReturnType<typeof runInSandbox>>;
      try {
        const mounts = await sandboxMounts(build, env, mountSpecs, scratch, where, environment, releases);
        // BuildKit leaves the directories its mount points needed in the layer: a directory
        // mount's target, and the parents of a file mount's target (the file itself goes).
        for (const mount of mounts) {
          const isDirectory =
            mount.kind === 'tmpfs' || (mount.kind === 'bind' && (await isDirectoryPath(mount.source)));
          await mkdirInRoot(rootfs, isDirectory ? mount.target : posix.dirname(mount.target));
        }
        for (const script of heredocScripts) {
          const file = join(scratch, `heredoc-${script.name}`);
          await writeFile(file, script.content);
          await chmod(file, 0o755); // whatever stratum's own umask is
          mounts.push({ kind: 'bind', source: file, target: heredocPath(script.name), readonly: true });
        }
        // VOLUME is metadata only, as in BuildKit: what a RUN writes below a declared volume stays
        // in the image (moby's classic builder mounted an anonymous volume there and dropped it).

        // Under proot there is no network namespace: the default network is the container's own.
        const isolation = (await build.isolation()).mode;
        const stepNetwork = isolation === 'proot' && network === 'default' ? 'host' : network;
        result = await runInSandbox(
          {
            rootfs,
            argv,
            env: environment,
            cwd: workdir,
            uid: resolved.uid,
            gid: resolved.gid,
            additionalGids: resolved.additionalGids,
            hostname,
            network: stepNetwork,
            ...(insecure ? { insecure: true } : {}),
            mounts,
            etcHosts: `127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t${hostname}\n${build.extraHosts.map(({ host, ip }) => `${ip}\t${host}\n`).join('')}`,
            ...(build.shmSize === undefined ? {} : { shmSize: build.shmSize }),
            ulimits: build.ulimits,
            etcResolvConf:
              stepNetwork === 'host'
                ? await hostResolvConf()
                : stepNetwork === 'default'
                  ? privateResolvConf(await hostResolvConf())
                  : '',
            etcHostname: `${hostname}\n`,
          },
          {
            ...(build.signal ? { signal: build.signal } : {}),
            scratchParent: scratch,
            scratchDir: scratch,
            searchableRoot: build.workspace.root,
            isolation,
            onOutput: (chunk, stream) => {
              const text = chunk.toString('utf8');
              build.emit({ kind: 'step-output', step, stream, text });
              const lines = (partial + text).split('\n');
              partial = lines.pop() ?? '';
              tail.push(...lines);
              if (tail.length > OUTPUT_TAIL_LINES) tail.splice(0, tail.length - OUTPUT_TAIL_LINES);
            },
          },
        );
      } finally {
        for (const release of releases) await release();
      }
      if (partial !== '') tail.push(partial);
      if (result.exitCode !== 0) {
        const how =
          result.signal !== undefined ? `killed by ${result.signal}` : `exit code ${result.exitCode}`;
        // The output stays data, not message text: the progress display already showed it.
        throw new StratumError('BUILD_FAILED', `the command ${JSON.stringify(argv)} failed (${how})`, {
          output: tail.slice(-OUTPUT_TAIL_LINES),
        });
      }
    },
  };
}

async function isDirectoryPath(path: string): Promise<boolean> {
  return (await stat(path)).isDirectory();
}

function heredocPath(name: string): string {
  return `/.stratum-heredoc/${name.replace(/[^A-Za-z0-9_.-]/g, '_')}`;
}

function mountTarget(mount: MountSpec): string {
  switch (mount.type) {
    case 'secret':
    case 'ssh':
      return (
        mount.target ??
        `/run/${mount.type === 'secret' ? 'secrets' : 'buildkit/ssh_agent'}/${mount.id ?? 'default'}`
      );
    case 'bind':
    case 'cache':
    case 'tmpfs':
      return mount.target;
  }
}

/** The key component of one mount, and for a context bind mount the files it shows. */
interface MountKey {
  readonly component: KeyComponent;
  readonly files?: Readonly<Record<string, SourceFileDigest>>;
}

/**
 * What of a mount goes into the key. A bind mount is keyed on what it shows, so changing the
 * mounted content misses the step: from the context, the digest of the selected path (content
 * and metadata, as for COPY sources); from a stage or image, that filesystem's identity (the
 * stage's final key and ChainID, the image's ChainID), as COPY --from is keyed, so a cached build
 * never materialises it. Cache mounts key on their id only (their content is deliberately
 * shared across builds, as in BuildKit) and secrets on their id only (never their content).
 */
async function mountKey(
  mount: MountSpec,
  build: BuildSession,
  env: StepEnv,
  where: string,
): Promise<MountKey> {
  const name = `mount ${mountTarget(mount)}`;
  switch (mount.type) {
    case 'cache':
      // Exported after the build (mounts=true) whether this step runs or hits.
      build.cacheMountTransfer.noteUsed({
        id: mount.id ?? mount.target,
        uid: mount.uid ?? 0,
        gid: mount.gid ?? 0,
        mode: mount.mode ?? 0o755,
      });
      return {
        component: {
          name,
          value: `cache id=${mount.id ?? mount.target} sharing=${mount.sharing} uid=${mount.uid ?? 0} gid=${mount.gid ?? 0} mode=${(mount.mode ?? 0o755).toString(8)}`,
        },
      };
    case 'secret':
      return {
        component: {
          name,
          value: `secret id=${mount.id ?? ''}${mount.env === undefined ? '' : ` env=${mount.env}`}`,
        },
      };
    case 'tmpfs':
      return { component: { name, value: `tmpfs size=${mount.size ?? 'default'}` } };
    case 'ssh':
      return { component: { name, value: `ssh id=${mount.id ?? 'default'}` } };
    case 'bind': {
      const source = mount.source ?? '/';
      const head = `bind source=${source} rw=${!mount.readOnly}`;
      if (mount.from !== undefined) {
        const identity = await sourceIdentity(build, env, mount.from, where);
        return { component: { name, value: `${head} from ${identity}` } };
      }
      await build.contextReady();
      const plan = await planCopy({
        sources: [source],
        dest: '/',
        root: { kind: 'context', dir: build.contextDir },
        ...(build.signal ? { signal: build.signal } : {}),
      }).catch((error: unknown) => {
        // planCopy speaks of COPY; here the missing path is a mount's source.
        if (error instanceof StratumError && error.code === 'NOT_FOUND')
          throw new StratumError(
            'NOT_FOUND',
            `--mount source ${source}: not found in the build context (or excluded by .dockerignore)`,
            { cause: error },
          );
        throw error;
      });
      const digest = await digestSources(plan, {
        statCache: build.statCache,
        ...(build.signal ? { signal: build.signal } : {}),
      });
      return { component: { name, value: `${head} context ${digest.digest}` }, files: digest.files };
    }
  }
}

async function sandboxMounts(
  build: BuildSession,
  env: StepEnv,
  specs: readonly MountSpec[],
  scratch: string,
  where: string,
  environment: string[],
  releases: (() => Promise<void>)[],
): Promise<SandboxMount[]> {
  const mounts: SandboxMount[] = [];
  let sshIndex = 0;
  for (const spec of specs) {
    switch (spec.type) {
      case 'tmpfs':
        mounts.push({
          kind: 'tmpfs',
          target: spec.target,
          ...(spec.size === undefined ? {} : { size: spec.size }),
        });
        break;
      case 'cache': {
        const identity = {
          id: spec.id ?? spec.target,
          uid: spec.uid ?? 0,
          gid: spec.gid ?? 0,
          mode: spec.mode ?? 0o755,
        };
        // An imported cache's contents for it, when this machine has none (cache-mount-transfer.ts).
        const fill = build.cacheMountTransfer.fill(identity, build.signal);
        const use = await acquireCacheMount(
          build.cacheMountsDir,
          { ...identity, sharing: spec.sharing },
          {
            ...(fill === undefined ? {} : { fill }),
            ...(build.signal ? { signal: build.signal } : {}),
            ...((await rootlessOwners()) === undefined ? {} : { rootless: (await rootlessOwners())! }),
          },
        );
        releases.push(use.release);
        mounts.push({ kind: 'bind', source: use.dir, target: spec.target, readonly: spec.readOnly });
        break;
      }
      case 'secret': {
        const id = spec.id ?? (spec.target !== undefined ? (spec.target.split('/').pop() ?? '') : '');
        const source = build.secrets.get(id);
        if (source === undefined) {
          if (spec.required)
            throw new StratumError(
              'BUILD_FAILED',
              `${where}: secret "${id}" is required but was not given (--secret id=${id},src=PATH)`,
            );
          break;
        }
        const content = typeof source === 'string' ? await readSecretFile(id, source, where) : source.value;
        if (spec.env !== undefined) {
          environment.push(`${spec.env}=${Buffer.from(content).toString('utf8').replace(/\n$/, '')}`);
          if (spec.target === undefined) break;
        }
        mounts.push({
          kind: 'secret',
          content,
          target: spec.target ?? `/run/secrets/${id}`,
          ...(spec.mode === undefined ? {} : { mode: spec.mode }),
          ...(spec.uid === undefined ? {} : { uid: spec.uid }),
          ...(spec.gid === undefined ? {} : { gid: spec.gid }),
        });
        break;
      }
      case 'bind': {
        const root =
          spec.from === undefined ? build.contextDir : await sourceRootfs(build, env, spec.from, where);
        const resolved = await resolveSourceInRoot(root, spec.source ?? '/', { followFinal: true });
        const hostPath = resolved.hostPath;
        // Named as written, in what the user named: never the directory it was unpacked in.
        if (spec.from !== undefined && !(await exists(hostPath)))
          throw new StratumError(
            'NOT_FOUND',
            `${where}: --mount source ${spec.source ?? '/'}: not found in ${fromName(build, env, spec.from)}`,
          );
        if (spec.readOnly) {
          mounts.push({ kind: 'bind', source: hostPath, target: spec.target, readonly: true });
        } else {
          // A read-write bind mount's writes are thrown away: give the step a copy.
          const copy = join(scratch, `bind-${mounts.length}`);
          await copyTree(hostPath, copy, false, `${where}: --mount source ${spec.source ?? '/'}`);
          mounts.push({ kind: 'bind', source: copy, target: spec.target, readonly: false });
        }
        break;
      }
      case 'ssh': {
        // The agent socket given with --ssh, bound into the step; SSH_AUTH_SOCK names it.
        const id = spec.id ?? 'default';
        const socket = build.ssh.get(id);
        if (socket === undefined) {
          if (spec.required)
            throw new StratumError(
              'BUILD_FAILED',
              `${where}: ssh agent "${id}" is required but was not given (--ssh ${id === 'default' ? 'default' : `${id}=SOCKET`})`,
            );
          break;
        }
        const target = spec.target ?? `/run/buildkit/ssh_agent.${sshIndex++}`;
        mounts.push({ kind: 'bind', source: socket, target, readonly: false });
        if (!environment.some((entry) => entry.startsWith('SSH_AUTH_SOCK=')))
          environment.push(`SSH_AUTH_SOCK=${target}`);
        break;
      }
    }
  }
  return mounts;
}

/**
 * What a `--from` source (COPY --from, RUN --mount from=) is, for the key: a stage's final key
 * and ChainID, or an image's ChainID once its reference is resolved (a tag that moves misses).
 */
export async function sourceIdentity(
  build: BuildSession,
  env: StepEnv,
  from: string,
  where: string,
): Promise<string> {
  const named = build.stageNames.get(from.toLowerCase());
  const index = named ?? (/^\d+$/.test(from) ? Number(from) : undefined);
  if (index !== undefined && index < env.stageIndex) {
    const result = build.stages.get(index);
    if (result === undefined) throw new StratumError('BUILD_FAILED', `${where}: stage ${from} was not built`);
    return `stage ${result.label} ${result.finalKey} ${chainId(result.state.layers.map((layer) => layer.diffId))}`;
  }
  const image = await build.resolveImage(from, build.signal);
  try {
    return `image ${from} ${chainId(image.config.value.rootfs.diff_ids)}`;
  } finally {
    await image.close();
  }
}

/** A `--from` source as the user knows it, for messages: `stage build` or `image alpine:3`. */
export function fromName(build: BuildSession, env: StepEnv, from: string): string {
  const named = build.stageNames.get(from.toLowerCase());
  const index = named ?? (/^\d+$/.test(from) ? Number(from) : undefined);
  return index !== undefined && index < env.stageIndex ? `stage ${from}` : `image ${from}`;
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (error) {
    if (errnoCode(error) === 'ENOENT' || errnoCode(error) === 'ENOTDIR') return false;
    throw error;
  }
}

/** The rootfs of a stage or image named by `--from`, for mounts and COPY --from. */
export async function sourceRootfs(
  build: BuildSession,
  env: StepEnv,
  from: string,
  where: string,
): Promise<string> {
  const named = build.stageNames.get(from.toLowerCase());
  const index = named ?? (/^\d+$/.test(from) ? Number(from) : undefined);
  if (index !== undefined && index < env.stageIndex) {
    const result = build.stages.get(index);
    if (result === undefined) throw new StratumError('BUILD_FAILED', `${where}: stage ${from} was not built`);
    trace('copy: source rootfs');
    const dir = await result.rootfs();
    trace('copy: source rootfs ready');
    return dir;
  }
  if (index !== undefined && named !== undefined) {
    throw new StratumError('BUILD_FAILED', `${where}: --from=${from} refers to a stage that comes later`);
  }
  const image = await build.resolveImage(from, build.signal);
  try {
    const layers = await importLayers(image, build.blobs, build.signal);
    const rootfs = build.snapshotter.rootfs(`from-${from}`, { keep: false });
    return await rootfs.view(layers, build.signal);
  } finally {
    await image.close();
  }
}

/**
 * A copy of a tree for a mount whose writes are thrown away. GNU cp, not fs.cp: a FIFO, a socket
 * or a device node in the tree is copied as what it is (fs.cp fails on a FIFO, as an internal
 * error naming the build's scratch directory). Owners are not kept (the step's writes are
 * discarded anyway); `what` names the tree as the user wrote it.
 */
async function copyTree(from: string, to: string, keepTimes: boolean, what: string): Promise<void> {
  const preserve = keepTimes ? 'mode,timestamps,links' : 'mode,links';
  await new Promise<void>((resolve, reject) => {
    execFile('cp', ['-R', '-P', `--preserve=${preserve}`, '--', from, to], (error) => {
      if (error === null) resolve();
      else
        reject(
          new StratumError(
            'BUILD_FAILED',
            `${what}: could not be copied for the step (cp: exit ${String(error.code)})`,
          ),
        );
    });
  });
}

async function hostResolvConf(): Promise<string> {
  try {
    return await readFile('/etc/resolv.conf', 'utf8');
  } catch {
    return '';
  }
}

/** A secret file is read when its step runs; its bytes go to the sandbox through a pipe, never to a copy on disk. */
async function readSecretFile(id: string, path: string, where: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (error) {
    throw new StratumError(
      'NOT_FOUND',
      `${where}: secret "${id}" (${path}) cannot be read: ${errnoCode(error) ?? String(error)}`,
      { cause: error },
    );
  }
}
