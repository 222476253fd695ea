/**
 * Which checks run and whether they fail the build: BuildKit's `# check=` directive and
 * `BUILDKIT_DOCKERFILE_CHECK` build arg, same syntax (linter.ParseLintOptions):
 * `skip=Rule1,Rule2|all;error=true|false;experimental=Rule|all`, at most three `;` parts.
 * The build arg replaces the directive as a whole (dockerui config), and a `# check=` comment
 * right above an instruction adds its settings for that instruction only
 * (linter.WithMergedConfigFromComments).
 */

export interface CheckConfig {
  readonly skipAll: boolean;
  readonly skip: ReadonlySet<string>;
  readonly experimentalAll: boolean;
  readonly experimental: ReadonlySet<string>;
  /** `error=true`: a broken rule fails the build. */
  readonly error: boolean;
}

export const DEFAULT_CHECK_CONFIG: CheckConfig = {
  skipAll: false,
  skip: new Set(),
  experimentalAll: false,
  experimental: new Set(),
  error: false,
};

/** Go's strconv.ParseBool. */
function parseGoBool(text: string): boolean | undefined {
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(text)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(text)) return false;
  return undefined;
}

/** Parses a check option string; a malformed one is `{ error: message }` in BuildKit's words. */
export function parseCheckConfig(text: string): CheckConfig | { readonly invalid: string } {
  const trimmed = text.trim();
  if (trimmed === '') return DEFAULT_CHECK_CONFIG;
  // Go's strings.SplitN(s, ";", 3): the third part keeps any further semicolons.
  const all = trimmed.split(';');
  const parts = all.length > 3 ? [all[0]!, all[1]!, all.slice(2).join(';')] : all;
  let skipAll = false;
  let experimentalAll = false;
  let error = false;
  let skip: string[] = [];
  let experimental: string[] = [];
  for (const part of parts) {
    const eq = part.indexOf('=');
    if (eq < 0) return { invalid: `invalid check option "${part}"` };
    const key = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    switch (key) {
      case 'skip':
        if (value === 'all') skipAll = true;
        else skip = value.split(',').map((rule) => rule.trim());
        break;
      case 'experimental':
        if (value === 'all') experimentalAll = true;
        else experimental = value.split(',').map((rule) => rule.trim());
        break;
      case 'error': {
        const parsed = parseGoBool(value);
        if (parsed === undefined)
          return {
            invalid: `failed to parse check option "${part}": strconv.ParseBool: parsing "${value}": invalid syntax`,
          };
        error = parsed;
        break;
      }
      default:
        return { invalid: `invalid check option "${key}"` };
    }
  }
  return { skipAll, skip: new Set(skip), experimentalAll, experimental: new Set(experimental), error };
}

/** Settings from a `# check=` comment merged in (what it adds; `error` stays the file's). */
export function mergeCheckConfig(base: CheckConfig, extra: CheckConfig): CheckConfig {
  return {
    skipAll: base.skipAll || extra.skipAll,
    skip: new Set([...base.skip, ...extra.skip]),
    experimentalAll: base.experimentalAll || extra.experimentalAll,
    experimental: new Set([...base.experimental, ...extra.experimental]),
    error: base.error,
  };
}

/** The first `check=` among an instruction's comments, as BuildKit's DirectiveParser reads it. */
export function configFromComments(base: CheckConfig, comments: readonly string[] | undefined): CheckConfig {
  for (const comment of comments ?? []) {
    const match = /^\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$/.exec(comment);
    if (match === null || match[1]!.toLowerCase() !== 'check') continue;
    const parsed = parseCheckConfig(match[2]!.split(' ')[0]!);
    return 'invalid' in parsed ? base : mergeCheckConfig(base, parsed);
  }
  return base;
}

/** Whether a rule runs under a configuration (linter.Run). */
export function ruleEnabled(config: CheckConfig, rule: { name: string; experimental?: boolean }): boolean {
  if (rule.experimental === true) return config.experimentalAll || config.experimental.has(rule.name);
  return !config.skipAll && !config.skip.has(rule.name);
}
