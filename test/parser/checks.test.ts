import { describe, expect, it } from 'vitest';
import {
  RULES,
  checkDockerfile,
  formatCheckResult,
  formatOutline,
  formatTargets,
  listTargets,
  outlineTarget,
  parseCheckConfig,
  parseDockerfile,
  type CheckOptions,
} from '../../src/parser/index.js';

const platformArgs = new Map([
  ['TARGETPLATFORM', 'linux/amd64'],
  ['BUILDPLATFORM', 'linux/amd64'],
  ['TARGETARCH', 'amd64'],
]);

function check(text: string, options: Partial<CheckOptions> = {}) {
  const parsed = parseDockerfile(text);
  expect(parsed.diagnostics.filter((d) => d.severity === 'error')).toEqual([]);
  return checkDockerfile(parsed, { platformArgs, baseEnv: () => new Map([['PATH', '/bin']]), ...options });
}

/** One Dockerfile that breaks each rule (with BuildKit's message) and one that does not. */
const table: readonly (readonly [keyof typeof RULES, string, string, string])[] = [
  [
    'FromAsCasing',
    'FROM busybox as base\n',
    "'as' and 'FROM' keywords' casing do not match",
    'FROM busybox AS base\n',
  ],
  [
    'StageNameCasing',
    'FROM busybox AS Base\n',
    "Stage name 'Base' should be lowercase",
    'FROM busybox AS base\n',
  ],
  [
    'MaintainerDeprecated',
    'FROM busybox\nMAINTAINER me\n',
    'Maintainer instruction is deprecated in favor of using label',
    'FROM busybox\nLABEL org.opencontainers.image.authors=me\n',
  ],
  [
    'LegacyKeyValueFormat',
    'FROM busybox\nENV a b\n',
    '"ENV key=value" should be used instead of legacy "ENV key value" format',
    'FROM busybox\nENV a=b\n',
  ],
  [
    'JSONArgsRecommended',
    'FROM busybox\nCMD echo hi\n',
    'JSON arguments recommended for CMD to prevent unintended behavior related to OS signals',
    'FROM busybox\nCMD ["echo", "hi"]\n',
  ],
  [
    'WorkdirRelativePath',
    'FROM busybox\nWORKDIR app\n',
    'Relative workdir "app" can have unexpected results if the base image changes',
    'FROM busybox\nWORKDIR /app\nWORKDIR sub\n',
  ],
  [
    'SecretsUsedInArgOrEnv',
    'FROM busybox\nARG GITHUB_TOKEN\n',
    'Do not use ARG or ENV instructions for sensitive data (ARG "GITHUB_TOKEN")',
    'FROM busybox\nARG PUBLIC_KEY\nENV TOKENS=1\n',
  ],
  [
    'UndefinedVar',
    'FROM busybox\nENV NAME=x\nCOPY $NAMe /x\n',
    "Usage of undefined variable '$NAMe' (did you mean $NAME?)",
    'FROM busybox\nARG DIR\nCOPY $DIR $PATH /x\n',
  ],
  [
    'UndefinedArgInFrom',
    'ARG VERSION=1\nFROM busybox:${VERSIN}\n',
    "FROM argument 'VERSIN' is not declared (did you mean VERSION?)",
    'ARG VERSION=1\nFROM busybox:${VERSION}\n',
  ],
  [
    'ConsistentInstructionCasing',
    'FROM busybox\nRUN true\ncopy a /a\n',
    "Command 'copy' should match the case of the command majority (uppercase)",
    'from busybox\nrun true\n',
  ],
  [
    'DuplicateStageName',
    'FROM busybox AS a\nFROM busybox AS a\n',
    'Duplicate stage name "a", stage names should be unique',
    'FROM busybox AS a\nFROM busybox AS b\n',
  ],
  [
    'ReservedStageName',
    'FROM busybox AS scratch\n',
    'Stage name should not use the same name as reserved stage "scratch"',
    'FROM busybox AS scratchy\n',
  ],
  [
    'MultipleInstructionsDisallowed',
    'FROM busybox\nCMD ["a"]\nCMD ["b"]\n',
    'Multiple CMD instructions should not be used in the same stage because only the last one will be used',
    'FROM busybox AS a\nCMD ["a"]\nFROM a\nCMD ["b"]\n',
  ],
  [
    'NoEmptyContinuation',
    'FROM busybox\nRUN echo \\\n\n  hi\n',
    'Empty continuation line',
    'FROM busybox\nRUN echo \\\n  hi\n',
  ],
  [
    'RedundantTargetPlatform',
    'FROM --platform=$TARGETPLATFORM busybox\n',
    'Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default behavior',
    'FROM --platform=$BUILDPLATFORM busybox\n',
  ],
  [
    'InvalidDefaultArgInFrom',
    'ARG TAG\nFROM busybox:${TAG}\n',
    'Default value for ARG busybox:${TAG} results in empty or invalid base image name',
    'ARG TAG=1\nFROM busybox:${TAG}\n',
  ],
  [
    'FromPlatformFlagConstDisallowed',
    'FROM --platform=linux/arm64 busybox AS build\n',
    'FROM --platform flag should not use constant value "linux/arm64"',
    'FROM --platform=linux/arm64 busybox AS build-arm64\n',
  ],
  [
    'ExposeProtoCasing',
    'FROM busybox\nEXPOSE 80/TCP\n',
    "Defined protocol '80/TCP' in EXPOSE instruction should be lowercase",
    'FROM busybox\nEXPOSE 80/tcp\n',
  ],
  [
    'ExposeInvalidFormat',
    'FROM busybox\nEXPOSE 8080:80\n',
    "EXPOSE instruction should not define an IP address or host-port mapping, found '8080:80'",
    'FROM busybox\nEXPOSE 80\n',
  ],
];

describe("BuildKit's check rules", () => {
  it.each(table)('%s', (rule, broken, message, fine) => {
    const found = check(broken).filter((warning) => warning.rule === rule);
    expect(found.map((warning) => warning.message)).toEqual([message]);
    expect(found[0]!.url).toBe((RULES[rule] as { url?: string }).url);
    expect(check(fine).filter((warning) => warning.rule === rule)).toEqual([]);
  });

  it("InvalidDefaultArgInFrom takes stratum's transport references (oci:, docker-archive:, ...) as valid bases", () => {
    for (const base of [
      'oci:/tmp/base:1',
      'oci-archive:/tmp/b.tar',
      'docker-archive:/tmp/b.tar:x',
      'docker://registry:5000/a',
    ]) {
      expect(
        check(`ARG BASE=${base}\nFROM $BASE\n`).filter((w) => w.rule === 'InvalidDefaultArgInFrom'),
      ).toEqual([]);
    }
  });

  it('CopyIgnoredFile, quiet when the .dockerignore has exceptions', () => {
    const ignore = (patterns: string[]) => ({
      matches: (path: string) => path.startsWith('secret'),
      patterns,
    });
    const text = 'FROM busybox\nCOPY secret.txt app /x/\n';
    expect(check(text, { ignore: ignore(['secret*']) }).map((w) => w.message)).toEqual([
      'Attempting to Copy file "secret.txt" that is excluded by .dockerignore',
    ]);
    expect(check(text, { ignore: ignore(['secret*', '!secret.txt']) })).toEqual([]);
  });

  it('InvalidDefinitionDescription is experimental: only when asked for', () => {
    const text =
      '# check=experimental=InvalidDefinitionDescription\n# the builder\nFROM busybox AS build\n# build compiles\nFROM busybox AS build2\n';
    const parsed = parseDockerfile(text);
    const config = parseCheckConfig(parsed.directives[0]!.value);
    if ('invalid' in config) throw new Error(config.invalid);
    const found = checkDockerfile(parsed, { config }).filter(
      (w) => w.rule === 'InvalidDefinitionDescription',
    );
    expect(found.map((w) => [w.message, w.ranges[0]!.start])).toEqual([
      ['Comment for FROM should follow the format: `# build <description>`', 3],
      ['Comment for FROM should follow the format: `# build2 <description>`', 5],
    ]);
    expect(checkDockerfile(parsed).filter((w) => w.rule === 'InvalidDefinitionDescription')).toEqual([]);
  });

  it('# check=skip=… and skip=all, and a check= comment above one instruction', () => {
    const body = 'FROM busybox as base\nMAINTAINER me\n';
    const run = (directive: string) => {
      const parsed = parseDockerfile(directive + body);
      const config = parseCheckConfig(parsed.directives[0]?.value ?? '');
      if ('invalid' in config) throw new Error(config.invalid);
      return checkDockerfile(parsed, { config }).map((w) => w.rule);
    };
    expect(run('')).toEqual(['FromAsCasing', 'MaintainerDeprecated']);
    expect(run('# check=skip=FromAsCasing\n')).toEqual(['MaintainerDeprecated']);
    expect(run('# check=skip=all;error=true\n')).toEqual([]);
    const inline = checkDockerfile(
      parseDockerfile('FROM busybox\n# check=skip=MaintainerDeprecated\nMAINTAINER me\n'),
    );
    expect(inline).toEqual([]);
    expect(parseCheckConfig('skip')).toEqual({ invalid: 'invalid check option "skip"' });
    expect(parseCheckConfig('error=maybe')).toMatchObject({
      invalid: expect.stringContaining('failed to parse check option'),
    });
  });

  it("--check's text is buildx's", () => {
    const text = 'FROM busybox as base\nRUN true\n';
    const out = formatCheckResult(check(text), 'Dockerfile', text);
    expect(out).toBe(
      [
        'Check complete, 1 warning has been found!',
        '',
        'WARNING: FromAsCasing - https://docs.docker.com/go/dockerfile/rule/from-as-casing/',
        "'as' and 'FROM' keywords' casing do not match",
        'Dockerfile:1',
        '--------------------',
        '   1 | >>> FROM busybox as base',
        '   2 |     RUN true',
        '   3 |     ',
        '--------------------',
        '',
      ].join('\n'),
    );
    expect(formatCheckResult([], 'Dockerfile', text)).toBe('Check complete, no warnings found.\n');
  });
});

describe('--call=targets and --call=outline', () => {
  const text = [
    '# VERSION the busybox tag',
    'ARG VERSION=1.36',
    'ARG UNUSED=x',
    '# build compiles the app',
    'FROM busybox:${VERSION} AS build',
    '# MODE how to build',
    'ARG MODE=release',
    'RUN --mount=type=secret,id=npmrc,required=true --mount=type=ssh true',
    'FROM scratch AS release',
    'COPY --from=build /x /x',
    '',
  ].join('\n');
  const parsed = parseDockerfile(text);

  it('targets: every stage, descriptions from the comment above FROM, the last the default', () => {
    expect(listTargets(parsed)).toEqual([
      {
        name: 'build',
        description: 'compiles the app',
        base: 'busybox:${VERSION}',
        location: { ranges: [{ start: { line: 5 }, end: { line: 5 } }] },
      },
      {
        name: 'release',
        default: true,
        base: 'scratch',
        location: { ranges: [{ start: { line: 9 }, end: { line: 9 } }] },
      },
    ]);
    expect(formatTargets(listTargets(parsed))).toBe(
      'TARGET            DESCRIPTION\nbuild             compiles the app\nrelease (default) \n',
    );
  });

  it('outline: the args the target uses (meta args through FROM), secrets and ssh', () => {
    const outline = outlineTarget(parsed, { buildArgs: new Map([['MODE', 'debug']]) });
    expect(outline).toMatchObject({
      name: 'release',
      args: [
        { name: 'VERSION', value: '1.36', description: 'the busybox tag' },
        { name: 'MODE', value: 'debug', description: 'how to build' },
      ],
      secrets: [{ name: 'npmrc', required: true }],
      ssh: [{ name: 'default' }],
    });
    expect(formatOutline(outline)).toBe(
      [
        'TARGET: release',
        '',
        'BUILD ARG   VALUE   DESCRIPTION',
        'VERSION     1.36    the busybox tag',
        'MODE        debug   how to build',
        '',
        'SECRET   REQUIRED',
        'npmrc    true',
        '',
        'SSH       REQUIRED',
        'default   ',
        '',
        '',
      ].join('\n'),
    );
  });
});
