// The out-of-sample parity corpus: kaniko's integration Dockerfiles and imagebuilder's Docker
// conformance cases (../shared/corpora), each with what its build needs here (build args, a
// target) and how its base images are replaced, or why it is skipped. Nothing can be pulled, so
// every base image is one of two local images: a busybox (for busybox, alpine and other small
// bases whose point is not their content) or a debootstrapped Debian (for Debian, Ubuntu, CentOS
// and bases whose commands need a distro: useradd, groupadd, bash).
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** Which local image stands in for an upstream repository (its last path component). */
const STAND_INS = {
  busybox: 'busybox',
  alpine: 'busybox',
  base: 'busybox', // gcr.io/distroless/base: only files are copied into it
  'cloud-sdk': 'busybox', // only a COPY into /usr/bin
  fedora: 'busybox', // a stage no target needs
  debian: 'debian',
  ubuntu: 'debian',
  centos: 'debian',
  baseimage: 'debian', // phusion/baseimage, an Ubuntu
  golang: 'debian', // only WORKDIR, COPY and a shell
};

/** Registry prefixes dropped before the repository is looked up. */
const REGISTRY_PREFIXES = [
  'docker.io/library/',
  'docker.io/',
  'library/',
  'mirror.gcr.io/library/',
  'mirror.gcr.io/',
  'public.ecr.aws/docker/library/',
  'public.ecr.aws/',
  'gcr.io/',
];

export const LOCAL_PREFIX = 'stratum-corpus/';

/**
 * The local name of an upstream image reference (`busybox:1.31@sha256:…` becomes
 * `stratum-corpus/busybox:1.31`), or undefined when no local image stands in for it. A tag made
 * of build args is kept as it is (`alpine:${A}`); the digest goes (no local image has it).
 */
export function localRef(ref) {
  let rest = ref;
  for (const prefix of REGISTRY_PREFIXES) {
    if (rest.startsWith(prefix)) {
      rest = rest.slice(prefix.length);
      break;
    }
  }
  const at = rest.indexOf('@');
  const withoutDigest = at === -1 ? rest : rest.slice(0, at);
  const colon = withoutDigest.lastIndexOf(':');
  const repo = colon === -1 ? withoutDigest : withoutDigest.slice(0, colon);
  // No tag stays no tag: `ARG IMAGE=golang` may be followed by `FROM $IMAGE:$VERSION`.
  const tag = colon === -1 ? '' : withoutDigest.slice(colon);
  const name = repo.slice(repo.lastIndexOf('/') + 1);
  if (!(name in STAND_INS) || repo.includes('$')) return undefined;
  return `${LOCAL_PREFIX}${name}${tag}`;
}

/** busybox or debian: the local image a rewritten name points at. */
export function standInFor(localName) {
  const name = localName.slice(LOCAL_PREFIX.length, localName.lastIndexOf(':'));
  return STAND_INS[name];
}

/**
 * Rewrites the image references of a Dockerfile: the image of each FROM (also inside a
 * `${VAR:-image}` default), `--from=` values that are not stage names, and ARG defaults that
 * name an image. Returns { text, unknown } where unknown lists references nothing stands in for.
 */
export function rewriteDockerfile(text) {
  const stages = new Set();
  for (const match of text.matchAll(/^\s*from\s+.*?\s+as\s+(\S+)\s*$/gim)) stages.add(match[1].toLowerCase());
  const unknown = [];
  const swap = (ref) => {
    if (
      ref === 'scratch' ||
      ref.startsWith(LOCAL_PREFIX) ||
      stages.has(ref.toLowerCase()) ||
      /^\d+$/.test(ref)
    )
      return ref;
    if (/^\$\{\w+:?-/.test(ref)) {
      // ${VAR:-image}: the default is an image.
      return ref.replace(/(\$\{\w+:?-)([^}]+)\}/g, (_all, head, image) => `${head}${swap(image)}}`);
    }
    // A bare $VAR is rewritten where its ARG is.
    if (ref.startsWith('$')) return ref;
    const local = localRef(ref);
    if (local === undefined) unknown.push(ref);
    return local ?? ref;
  };
  const lines = text.split('\n').map((line) => {
    const from = /^(\s*from\s+(?:--\S+\s+)*)(\S+)(.*)$/i.exec(line);
    if (from !== null) return `${from[1]}${swap(from[2])}${from[3]}`;
    if (/^\s*(copy|add|run)\s/i.test(line))
      return line.replace(/(--from=)(\S+)/gi, (_all, flag, ref) => `${flag}${swap(ref)}`);
    const arg = /^(\s*arg\s+\w+=)(["']?)([^"'\s]+)(["']?\s*)$/i.exec(line);
    // Only values with a tag or a path: `ARG IMAGE=debian` may be one part of a name.
    if (arg !== null && /[:/]/.test(arg[3]) && looksLikeImage(arg[3]))
      return `${arg[1]}${arg[2]}${swap(arg[3])}${arg[4]}`;
    return line;
  });
  return { text: lines.join('\n'), unknown };
}

function looksLikeImage(value) {
  return (
    localRef(value) !== undefined || /^(mirror\.gcr\.io|docker\.io|public\.ecr\.aws|gcr\.io)\//.test(value)
  );
}

/** A build arg's value rewritten the same way when it names an image. */
export function rewriteArgValue(value) {
  return looksLikeImage(value) ? (localRef(value) ?? value) : value;
}

/** Local names a rewritten Dockerfile and its args use, plus the case's own extra tags. */
export function localNames(text, args, extra = []) {
  const names = new Set(extra);
  const haystack = [text, ...Object.values(args)].join('\n');
  for (const match of haystack.matchAll(/stratum-corpus\/([\w.-]+)(?::([\w.-]+))?/g)) {
    // A tag made of build args ($VERSION) is in the case's own tags.
    if (match[1] in STAND_INS) names.add(`${LOCAL_PREFIX}${match[1]}:${match[2] ?? 'latest'}`);
  }
  return [...names];
}

/**
 * Debian's busybox has no adduser applet (Alpine's has): the user is written as adduser would
 * write it, so what the case is about (COPY --chown to that user, USER, WORKDIR) still happens.
 */
const adduser = (name, uid) =>
  `echo '${name}:x:${uid}:${uid}::/home/${name}:/bin/sh' >> /etc/passwd && echo '${name}:x:${uid}:' >> /etc/group && mkdir -p /home/${name} && chown ${uid}:${uid} /home/${name}`;

const NETWORK = 'needs the internet (ADD of an https URL)';
const PACKAGES = (tool) => `installs packages with ${tool} (the network at RUN time)`;

/**
 * kaniko's integration/dockerfiles: context = integration/ (as upstream builds them), build args
 * from upstream's integration/images.go argsMap.
 */
const KANIKO = {
  Dockerfile_git_buildcontext: { skip: "needs kaniko's own git repository as the context (COPY LICENSE)" },
  Dockerfile_hardlink_base: { skip: PACKAGES('apk') },
  // Upstream's TestRelativePaths builds this one with integration/context as the context.
  Dockerfile_relative_copy: { contextSub: 'context' },
  Dockerfile_test_add: { skip: NETWORK },
  Dockerfile_test_add_404: { skip: NETWORK },
  Dockerfile_test_add_chown_intermediate_dirs: {
    replace: [['yes | adduser -u 1001 dev', adduser('dev', 1001)]],
  },
  Dockerfile_test_copy_chown_intermediate_dirs: {
    replace: [['yes | adduser -u 1001 dev', adduser('dev', 1001)]],
  },
  Dockerfile_test_add_dest_symlink_dir: {
    skip: "its point is phusion/baseimage's /etc/service, which no local image has",
  },
  Dockerfile_test_add_url_with_arg: { skip: NETWORK },
  Dockerfile_test_arg_multi_empty_val: {
    replace: [['FROM busybox${VARIANT}', `FROM ${LOCAL_PREFIX}busybox\${VARIANT}`]],
    tags: [`${LOCAL_PREFIX}busybox:1.31`],
  },
  Dockerfile_test_arg_secret: { args: { SSH_PRIVATE_KEY: 'not-a-real-key', SSH_PUBLIC_KEY: 'Pµbl1cK€Y' } },
  Dockerfile_test_arg_two_level: { tags: [`${LOCAL_PREFIX}alpine:3.9`] },
  Dockerfile_test_cache: { replace: [['date > /date', 'echo fixed-date > /date']] },
  Dockerfile_test_cache_oci: { replace: [['date > /date', 'echo fixed-date > /date']] },
  Dockerfile_test_cache_install: { skip: PACKAGES('apt-get') },
  Dockerfile_test_cache_install_oci: { skip: PACKAGES('apt-get') },
  Dockerfile_test_extraction: {
    skip: "needs gcr.io/kaniko-test/extraction-base-image (kaniko's own fixture)",
  },
  Dockerfile_test_hardlink: {
    skip: 'needs composer, php, jboss and kaniko hardlink-base images (their hard links)',
  },
  Dockerfile_test_issue_1039: { skip: PACKAGES('yum') },
  Dockerfile_test_issue_1837: { skip: PACKAGES('yum') },
  Dockerfile_test_issue_2049: { skip: PACKAGES('apt-get') },
  Dockerfile_test_issue_2066: { skip: PACKAGES('apt') },
  Dockerfile_test_issue_684: { skip: PACKAGES('apt-get') },
  Dockerfile_test_meta_arg: {
    replace: [['ARG REGISTRY=docker.io', 'ARG REGISTRY=stratum-corpus']],
    tags: [`${LOCAL_PREFIX}debian:9.11`],
  },
  Dockerfile_test_multistage: {
    args: { file: '/foo2' },
    replace: [['date > /date', 'echo fixed-date > /date']],
  },
  Dockerfile_test_onbuild: { args: { file: '/tmp/onbuild' }, baseFrom: 'Dockerfile_onbuild_base' },
  Dockerfile_test_parent_dir_perms: { skip: NETWORK },
  Dockerfile_test_replaced_hardlinks: {
    skip: 'needs jboss/base-jdk (its replaced hard links are the point)',
  },
  Dockerfile_test_run: { args: { file: '/file' } },
  Dockerfile_test_run_new: { args: { file: '/file' } },
  Dockerfile_test_run_redo: { args: { file: '/file' } },
  Dockerfile_test_scratch: {
    args: { image: 'scratch', hello: 'hello-value', file: 'context/foo', file3: 'context/b*' },
  },
  Dockerfile_test_target: { target: 'second' },
  Dockerfile_test_volume_4: { skip: "its point is rabbitmq's VOLUMEs in the base image" },
  Dockerfile_test_workdir: { args: { workdir: '/arg/workdir' } },
  'issue-1020': { skip: 'needs atomist/sdm-base and npm ci (the network at RUN time)' },
  'issue-2075': { skip: 'its context file top1 (an ELF binary) is not in the corpus' },
  'issue-57': { skip: NETWORK },
  'benchmark_fs/Dockerfile': { skip: 'needs the bash:4.4 image and make.sh, which is not in the corpus' },
};

/** imagebuilder's cases.json names and the extra testdata Dockerfiles no table names. */
const IMAGEBUILDER = {
  add: { skip: NETWORK },
  'nonroot-USER-before-WORKDIR-used': { replace: [['adduser -D buildtest', adduser('buildtest', 1001)]] },
  'nonroot-USER-before-WORKDIR-notused': { replace: [['adduser -D buildtest', adduser('buildtest', 1001)]] },
  'wildcard leading path': {
    skip: 'the same build as "wildcard" (only the spelling of the context path differs)',
  },
  'wildcard absolute path': {
    skip: 'the same build as "wildcard" (only the spelling of the context path differs)',
  },
  'multistage 1': { skip: 'copies /go/src out of the golang image (COPY --from=golang:1.25)' },
  'header-builtin': { skip: PACKAGES('microdnf') + ', and fedora-minimal images of two architectures' },
  'Dockerfile.mount': { skip: "needs imagebuilder's bind mount of /tmp/test (a Go-only field)" },
  'multistage/Dockerfile.ref': { skip: 'copies out of the nginx image (COPY --from=nginx)' },
  'multistage/Dockerfile.heading-arg': { tags: [`${LOCAL_PREFIX}golang:1.25`] },
  'multistage/Dockerfile.heading-redefine': { tags: [`${LOCAL_PREFIX}centos:latest`] },
};

/**
 * Every case of both corpora: { id, corpus, context, dockerfile, args, target, replace, tags,
 * baseFrom, skip }. Paths are absolute.
 */
export function corpusCases(corpora) {
  const cases = [];
  const kaniko = join(corpora, 'kaniko/integration');
  for (const name of readdirSync(join(kaniko, 'dockerfiles')).sort()) {
    if (name.endsWith('.dockerignore')) continue;
    const entry = KANIKO[name] ?? {};
    cases.push({
      id: `kaniko/${name}`,
      corpus: 'kaniko',
      context: entry.contextSub === undefined ? kaniko : join(kaniko, entry.contextSub),
      dockerfile: join(kaniko, 'dockerfiles', name),
      ...entry,
    });
  }
  for (const name of readdirSync(join(kaniko, 'dockerfiles-with-context')).sort()) {
    const context = join(kaniko, 'dockerfiles-with-context', name);
    cases.push({
      id: `kaniko/${name}`,
      corpus: 'kaniko',
      context,
      dockerfile: join(context, 'Dockerfile'),
      ...KANIKO[name],
    });
  }
  for (const file of [
    'testdata/Dockerfile.trivial',
    'testdata/exit-code-propagation/Dockerfile_exit_code_propagation',
    'benchmark_fs/Dockerfile',
  ]) {
    cases.push({
      id: `kaniko/${file}`,
      corpus: 'kaniko',
      context: join(kaniko, file, '..'),
      dockerfile: join(kaniko, file),
      ...KANIKO[file],
    });
  }

  const dockerclient = join(corpora, 'imagebuilder/dockerclient');
  const index = JSON.parse(readFileSync(join(corpora, 'imagebuilder/conformance-index/cases.json'), 'utf8'));
  const named = new Set();
  for (const entry of index.cases) {
    const name = entry.name ?? `case ${entry.index}`;
    const contextDir =
      typeof entry.contextDir === 'string'
        ? join(dockerclient, entry.contextDir)
        : entry.contextDir !== undefined
          ? join(dockerclient, 'testdata/wildcard')
          : undefined;
    // Upstream: with no contextDir, the Dockerfile's directory is the context.
    const dockerfile =
      contextDir === undefined
        ? join(dockerclient, entry.dockerfile)
        : join(contextDir, entry.dockerfile ?? 'Dockerfile');
    named.add(dockerfile);
    const args = Object.fromEntries(
      Object.entries(entry.args ?? {}).map(([k, v]) => [k, rewriteArgValue(v)]),
    );
    cases.push({
      id: `imagebuilder/${name}`,
      corpus: 'imagebuilder',
      context: contextDir ?? join(dockerfile, '..'),
      dockerfile,
      args,
      ...IMAGEBUILDER[name],
    });
  }
  const testdata = join(dockerclient, 'testdata');
  const extras = [];
  for (const entry of readdirSync(testdata, { withFileTypes: true })) {
    if (entry.isFile() && entry.name.startsWith('Dockerfile')) extras.push(entry.name);
    else if (entry.isDirectory())
      for (const sub of readdirSync(join(testdata, entry.name)))
        if (sub.startsWith('Dockerfile')) extras.push(`${entry.name}/${sub}`);
  }
  for (const rel of extras.sort()) {
    const dockerfile = join(testdata, rel);
    if (named.has(dockerfile) || !existsSync(dockerfile)) continue;
    cases.push({
      id: `imagebuilder/${rel}`,
      corpus: 'imagebuilder',
      context: join(dockerfile, '..'),
      dockerfile,
      ...IMAGEBUILDER[rel],
    });
  }
  return cases;
}
