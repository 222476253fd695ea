import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { rootlessOwners } from './rootless-owners.js';
import { StratumError } from '../errors.js';
import { expandWord } from '../parser/index.js';
import type { AddInstruction, CopyInstruction } from '../parser/index.js';
import type { BuildSession } from './build-session.js';
import type { KeyComponent } from '../cache/key.js';
import {
  applyCopy,
  checkoutGit,
  digestSources,
  displayGitSource,
  parseGitSource,
  planAdd,
  planCopy,
  resolveGitRef,
} from './context/index.js';
import type { CopyPlan, GitSource, Owner, SourceRoot } from './context/index.js';
import { HeldContents } from './context/index.js';
import { withLayerMarker } from './history.js';
import type { StepRef } from './progress.js';
import { fromName, sourceIdentity, sourceRootfs } from './run-step.js';
import type { StepAction, StepEnv } from './step.js';
import { resolveChown } from './users.js';

/**
 * COPY and ADD. Sources from the build context are selected and digested before the cache is
 * consulted (content, names, modes, owners; never mtimes). Sources from another stage or image
 * are keyed by that stage's final key or the image's digest instead, so a cached build never
 * has to materialise the other stage's filesystem.
 */
export async function copyStep(
  build: BuildSession,
  env: StepEnv,
  instruction: CopyInstruction | AddInstruction,
  step: StepRef,
): Promise<StepAction> {
  const where = `${step.file}:${step.line}`;
  const expand = (text: string): string =>
    expandWord(text, env.lookup, { escapeChar: build.escapeChar, where });
  const verb = instruction.kind === 'copy' ? 'COPY' : 'ADD';
  const expanded = instruction.sources.map(expand);
  // ADD's git sources are fetched at the resolved commit; the rest go through the context.
  const gitSources: { readonly index: number; readonly source: GitSource }[] = [];
  if (instruction.kind === 'add') {
    for (const [index, text] of expanded.entries()) {
      const source = parseGitSource(text);
      if (source !== undefined) gitSources.push({ index, source });
    }
  }
  const sources = expanded.filter((_, index) => !gitSources.some((git) => git.index === index));
  const dest = expand(instruction.destination);
  const chown = instruction.chown === undefined ? undefined : expand(instruction.chown);
  const chmod = instruction.chmod === undefined ? undefined : expand(instruction.chmod);
  const excludes = instruction.exclude.map(expand);
  const from =
    instruction.kind === 'copy' && instruction.from !== undefined ? expand(instruction.from) : undefined;
  const parents = instruction.kind === 'copy' && instruction.parents;
  const workdir =
    env.state.config.WorkingDir === undefined || env.state.config.WorkingDir === ''
      ? '/'
      : env.state.config.WorkingDir;
  if (
    chmod !== undefined &&
    !/^[0-7]{1,4}$/.test(chmod) &&
    !/^[ugoa]*[-+=][rwxXst]*(,[ugoa]*[-+=][rwxXst]*)*$/.test(chmod)
  ) {
    throw new StratumError(
      'BUILD_FAILED',
      `${where}: invalid chmod parameter: '${chmod}'. it should be octal string and between 0 and 07777`,
    );
  }

  const numericOwner = chown === undefined ? undefined : numericChown(chown);
  const createdBy = withLayerMarker(
    [
      verb,
      ...(parents ? ['--parents'] : []),
      ...(chown === undefined ? [] : [`--chown=${chown}`]),
      ...(chmod === undefined ? [] : [`--chmod=${chmod}`]),
      // Git sources without credentials: history never shows a password.
      ...expanded.map((text, index) => {
        const git = gitSources.find((entry) => entry.index === index);
        return git === undefined ? text : displayGitSource(git.source);
      }),
      ...instruction.inlineSources.map((inline) => `<<${inline.path}`),
      dest,
    ].join(' '),
  );
  const components: KeyComponent[] = [
    { name: 'workdir', value: workdir },
    ...(excludes.length > 0 ? [{ name: 'exclude', value: excludes.join(' ') }] : []),
    ...(instruction.link ? [{ name: 'link', value: 'true' }] : []),
  ];

  const makePlan = async (root: SourceRoot, sourceList: readonly string[]): Promise<CopyPlan> => {
    const common = {
      sources: sourceList,
      dest,
      workdir,
      root,
      excludes,
      parents,
      ...(build.signal ? { signal: build.signal } : {}),
    };
    if (instruction.kind === 'add') {
      return planAdd({
        ...common,
        ...(instruction.checksum === undefined || gitSources.length > 0
          ? {}
          : { checksum: expand(instruction.checksum) }),
        ...(instruction.unpack === undefined ? {} : { unpack: instruction.unpack }),
        tmpDir: await build.workspace.dir('add'),
        onDownload: (url, digest) => {
          build.emit({ kind: 'material', uri: url, digest: { sha256: digest.slice('sha256:'.length) } });
        },
      });
    }
    return planCopy({ ...common, instruction: 'COPY' });
  };

  const plans: (() => Promise<CopyPlan>)[] = [];
  let files: StepAction['files'];
  // The context's small files read for the key, kept for the copy that follows a miss.
  const contents = new HeldContents();

  if (instruction.inlineSources.length > 0) {
    const dir = await build.workspace.dir('heredoc');
    for (const inline of instruction.inlineSources) {
      const content = inline.expand
        ? expandWord(inline.content, env.lookup, {
            escapeChar: build.escapeChar,
            where,
            skipProcessQuotes: true,
          })
        : inline.content;
      await mkdir(join(dir, inline.path, '..'), { recursive: true });
      await writeFile(join(dir, inline.path), content, { mode: 0o644 });
    }
    const plan = await makePlan(
      { kind: 'rootfs', dir, name: 'the heredoc sources' },
      instruction.inlineSources.map((inline) => inline.path),
    );
    const digest = await digestSources(plan, {
      statCache: build.statCache,
      ...ownerOptions(numericOwner, chmod),
    });
    components.push({ name: 'inline sources', value: digest.digest });
    plans.push(() => Promise.resolve(plan));
  }

  if (sources.length > 0) {
    if (from === undefined) {
      await build.contextReady();
      const plan = await makePlan({ kind: 'context', dir: build.contextDir, ignore: build.ignore }, sources);
      const digest = await digestSources(plan, {
        statCache: build.statCache,
        ...ownerOptions(numericOwner, chmod),
        ...(build.signal ? { signal: build.signal } : {}),
        keepContents: contents,
      });
      components.push({ name: 'sources', value: digest.digest });
      files = digest.files;
      plans.push(() => Promise.resolve(plan));
    } else {
      components.push({ name: 'from', value: await sourceIdentity(build, env, from, where) });
      plans.push(async () =>
        makePlan(
          {
            kind: 'rootfs',
            dir: await sourceRootfs(build, env, from, where),
            name: fromName(build, env, from),
          },
          sources,
        ),
      );
    }
  }
  if (instruction.kind === 'add') {
    for (const { index, source: parsed } of gitSources) {
      const checksum = instruction.checksum === undefined ? undefined : expand(instruction.checksum);
      if (checksum !== undefined && parsed.checksum !== undefined && checksum !== parsed.checksum)
        throw new StratumError(
          'BUILD_FAILED',
          `${where}: checksum mismatch "${checksum}" != "${parsed.checksum}"`,
        );
      if (
        parsed.keepGitDir !== undefined &&
        instruction.flags.some((flag) => flag.startsWith('--keep-git-dir')) &&
        parsed.keepGitDir !== instruction.keepGitDir
      )
        throw new StratumError('BUILD_FAILED', `${where}: inconsistent keep-git-dir configuration`);
      const source: GitSource = checksum === undefined ? parsed : { ...parsed, checksum };
      const keepGitDir = parsed.keepGitDir ?? instruction.keepGitDir;
      const gitOptions = {
        ...(build.signal ? { signal: build.signal } : {}),
        ...(build.ssh.get('default') === undefined ? {} : { sshAuthSock: build.ssh.get('default')! }),
      };
      // Only the ref's resolution happens before the cache lookup: a hit fetches nothing.
      const resolved = await resolveGitRef(source, gitOptions);
      // BuildKit's provenance names a git source by its URL and the commit checked out.
      build.emit({ kind: 'material', uri: source.display, digest: { sha1: resolved.commit } });
      components.push({
        name: `git source ${index}`,
        value: [
          `${source.display}#${resolved.object}`,
          resolved.object === resolved.commit ? '' : `commit=${resolved.commit}`,
          source.subdir === '' ? '' : `subdir=${source.subdir}`,
          keepGitDir ? 'keep-git-dir' : '',
          source.submodules ? '' : 'no-submodules',
          source.mtime === 'commit' ? 'mtime=commit' : '',
        ]
          .filter((part) => part !== '')
          .join(' '),
      });
      plans.push(async () => {
        const dir = await checkoutGit(
          source,
          resolved,
          await build.workspace.dir('git'),
          keepGitDir,
          gitOptions,
        );
        const plan = await planCopy({
          sources: ['.'],
          dest,
          workdir,
          root: { kind: 'rootfs', dir, name: `git repository ${displayGitSource(source)}` },
          instruction: 'ADD',
          ...(build.signal ? { signal: build.signal } : {}),
        });
        // As BuildKit: a checkout's files belong to root unless --chown says otherwise.
        return { ...plan, entries: plan.entries.map(({ owner: _owner, ...entry }) => entry) };
      });
    }
  }
  if (chown !== undefined && numericOwner === undefined) components.push({ name: 'chown', value: chown });

  // --link, as BuildKit has it (MergeOp): the copy goes onto an empty directory that becomes a
  // layer of its own, whatever is below. There is no /etc/passwd to read a --chown name from:
  // BuildKit fails on one other than root (moby/buildkit#2987), with an opaque message.
  // BuildKit makes a plain copy when --chmod is given, and so does stratum.
  const independent = instruction.link && chmod === undefined;
  if (independent && chown !== undefined && numericOwner === undefined && !/^root(:root|:0)?$/.test(chown)) {
    throw new StratumError(
      'BUILD_FAILED',
      `${where}: ${verb} --link --chown=${chown}: a linked layer is made apart from the image, with no /etc/passwd or /etc/group to look names up in; use numeric ids (--chown=UID:GID) or drop --link`,
    );
  }
  return {
    components,
    createdBy,
    ...(files === undefined ? {} : { files }),
    ...(independent ? { independent } : {}),
    execute: async (rootfs, offline) => {
      const owner: Owner | undefined = chown === undefined ? undefined : await resolveChown(rootfs, chown);
      const rootless = await rootlessOwners();
      for (const makeOne of plans) {
        const plan = await makeOne();
        await applyCopy(plan, rootfs, {
          ...(rootless === undefined ? {} : { rootless }),
          ...(owner === undefined ? {} : { chown: owner }),
          ...(chmod === undefined ? {} : { chmod }),
          ...(build.signal ? { signal: build.signal } : {}),
          contents,
          // The mount goes at the end of a copy: only a step with one source can let it go.
          ...(offline !== undefined && plans.length === 1 ? { offline } : {}),
        });
      }
    },
  };
}

function numericChown(spec: string): Owner | undefined {
  const match = /^(\d+)(?::(\d+))?$/.exec(spec);
  if (match === null) return undefined;
  const uid = Number(match[1]);
  return { uid, gid: match[2] === undefined ? uid : Number(match[2]) };
}

function ownerOptions(
  owner: Owner | undefined,
  chmod: string | undefined,
): { chown?: Owner; chmod?: string } {
  return { ...(owner === undefined ? {} : { chown: owner }), ...(chmod === undefined ? {} : { chmod }) };
}
