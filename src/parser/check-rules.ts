/**
 * BuildKit's Dockerfile check rules as plain data: name, description, documentation URL and the
 * message each one prints, word for word from moby/buildkit frontend/dockerfile/linter/ruleset.go
 * (master of 2026-08). The checks that find them are in checks.ts.
 */

export interface CheckRule<Args extends readonly string[] = readonly string[]> {
  readonly name: string;
  readonly description: string;
  /** `https://docs.docker.com/go/dockerfile/rule/<kebab-name>/`; BuildKit gives one rule none. */
  readonly url?: string;
  /** Runs only when `# check=experimental=NAME` (or `=all`) asks for it. */
  readonly experimental?: boolean;
  readonly format: (...args: Args) => string;
}

const docs = (kebab: string): string => `https://docs.docker.com/go/dockerfile/rule/${kebab}/`;
/** Go's %q for the plain strings these messages quote. */
const q = (text: string): string => JSON.stringify(text);

export const RULES = {
  StageNameCasing: {
    name: 'StageNameCasing',
    description: 'Stage names should be lowercase',
    url: docs('stage-name-casing'),
    format: (stageName: string) => `Stage name '${stageName}' should be lowercase`,
  },
  FromAsCasing: {
    name: 'FromAsCasing',
    description: "The 'as' keyword should match the case of the 'from' keyword",
    url: docs('from-as-casing'),
    format: (from: string, as: string) => `'${as}' and '${from}' keywords' casing do not match`,
  },
  NoEmptyContinuation: {
    name: 'NoEmptyContinuation',
    description: 'Empty continuation lines will become errors in a future release',
    url: docs('no-empty-continuation'),
    format: () => 'Empty continuation line',
  },
  ConsistentInstructionCasing: {
    name: 'ConsistentInstructionCasing',
    description: 'All commands within the Dockerfile should use the same casing (either upper or lower)',
    url: docs('consistent-instruction-casing'),
    format: (command: string, casing: string) =>
      `Command '${command}' should match the case of the command majority (${casing})`,
  },
  DuplicateStageName: {
    name: 'DuplicateStageName',
    description: 'Stage names should be unique',
    url: docs('duplicate-stage-name'),
    format: (stageName: string) => `Duplicate stage name ${q(stageName)}, stage names should be unique`,
  },
  ReservedStageName: {
    name: 'ReservedStageName',
    description: 'Reserved words should not be used as stage names',
    url: docs('reserved-stage-name'),
    format: (stageName: string) =>
      `Stage name should not use the same name as reserved stage ${q(stageName)}`,
  },
  JSONArgsRecommended: {
    name: 'JSONArgsRecommended',
    description:
      'JSON arguments recommended for ENTRYPOINT/CMD to prevent unintended behavior related to OS signals',
    url: docs('json-args-recommended'),
    format: (instruction: string) =>
      `JSON arguments recommended for ${instruction} to prevent unintended behavior related to OS signals`,
  },
  MaintainerDeprecated: {
    name: 'MaintainerDeprecated',
    description: 'The MAINTAINER instruction is deprecated, use a label instead to define an image author',
    url: docs('maintainer-deprecated'),
    format: () => 'Maintainer instruction is deprecated in favor of using label',
  },
  UndefinedArgInFrom: {
    name: 'UndefinedArgInFrom',
    description: 'FROM command must use declared ARGs',
    url: docs('undefined-arg-in-from'),
    format: (arg: string, suggestion: string) =>
      `FROM argument '${arg}' is not declared${suggestion === '' ? '' : ` (did you mean ${suggestion}?)`}`,
  },
  WorkdirRelativePath: {
    name: 'WorkdirRelativePath',
    description:
      'Relative workdir without an absolute workdir declared within the build can have unexpected results if the base image changes',
    url: docs('workdir-relative-path'),
    format: (workdir: string) =>
      `Relative workdir ${q(workdir)} can have unexpected results if the base image changes`,
  },
  UndefinedVar: {
    name: 'UndefinedVar',
    description: 'Variables should be defined before their use',
    url: docs('undefined-var'),
    format: (name: string, suggestion: string) =>
      `Usage of undefined variable '$${name}'${suggestion === '' ? '' : ` (did you mean $${suggestion}?)`}`,
  },
  MultipleInstructionsDisallowed: {
    name: 'MultipleInstructionsDisallowed',
    description: 'Multiple instructions of the same type should not be used in the same stage',
    url: docs('multiple-instructions-disallowed'),
    format: (instruction: string) =>
      `Multiple ${instruction} instructions should not be used in the same stage because only the last one will be used`,
  },
  LegacyKeyValueFormat: {
    name: 'LegacyKeyValueFormat',
    description: 'Legacy key/value format with whitespace separator should not be used',
    url: docs('legacy-key-value-format'),
    format: (instruction: string) =>
      `"${instruction} key=value" should be used instead of legacy "${instruction} key value" format`,
  },
  InvalidBaseImagePlatform: {
    name: 'InvalidBaseImagePlatform',
    description: 'Base image platform does not match expected target platform',
    format: (image: string, expected: string, actual: string) =>
      `Base image ${image} was pulled with platform ${q(actual)}, expected ${q(expected)} for current build`,
  },
  RedundantTargetPlatform: {
    name: 'RedundantTargetPlatform',
    description:
      'Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default behavior',
    url: docs('redundant-target-platform'),
    format: (platformVar: string) =>
      `Setting platform to predefined ${platformVar} in FROM is redundant as this is the default behavior`,
  },
  SecretsUsedInArgOrEnv: {
    name: 'SecretsUsedInArgOrEnv',
    description: 'Sensitive data should not be used in the ARG or ENV commands',
    url: docs('secrets-used-in-arg-or-env'),
    format: (instruction: string, key: string) =>
      `Do not use ARG or ENV instructions for sensitive data (${instruction} ${q(key)})`,
  },
  InvalidDefaultArgInFrom: {
    name: 'InvalidDefaultArgInFrom',
    description: 'Default value for global ARG results in an empty or invalid base image name',
    url: docs('invalid-default-arg-in-from'),
    format: (baseName: string) =>
      `Default value for ARG ${baseName} results in empty or invalid base image name`,
  },
  FromPlatformFlagConstDisallowed: {
    name: 'FromPlatformFlagConstDisallowed',
    description: 'FROM --platform flag should not use a constant value',
    url: docs('from-platform-flag-const-disallowed'),
    format: (platform: string) => `FROM --platform flag should not use constant value ${q(platform)}`,
  },
  CopyIgnoredFile: {
    name: 'CopyIgnoredFile',
    description: 'Attempting to Copy file that is excluded by .dockerignore',
    url: docs('copy-ignored-file'),
    format: (command: string, file: string) =>
      `Attempting to ${command} file ${q(file)} that is excluded by .dockerignore`,
  },
  InvalidDefinitionDescription: {
    name: 'InvalidDefinitionDescription',
    description:
      'Comment for build stage or argument should follow the format: `# <arg/stage name> <description>`. If this is not intended to be a description comment, add an empty line or comment between the instruction and the comment.',
    url: docs('invalid-definition-description'),
    experimental: true,
    format: (instruction: string, name: string) =>
      `Comment for ${instruction} should follow the format: \`# ${name} <description>\``,
  },
  ExposeProtoCasing: {
    name: 'ExposeProtoCasing',
    description: 'Protocol in EXPOSE instruction should be lowercase',
    url: docs('expose-proto-casing'),
    format: (port: string) => `Defined protocol '${port}' in EXPOSE instruction should be lowercase`,
  },
  ExposeInvalidFormat: {
    name: 'ExposeInvalidFormat',
    description:
      'IP address and host-port mapping should not be used in EXPOSE instruction. This will become an error in a future release',
    url: docs('expose-invalid-format'),
    format: (port: string) =>
      `EXPOSE instruction should not define an IP address or host-port mapping, found '${port}'`,
  },
} as const satisfies Record<string, CheckRule<never>>;

export type RuleName = keyof typeof RULES;
