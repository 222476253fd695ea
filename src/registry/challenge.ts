/**
 * `WWW-Authenticate` challenges (RFC 7235) as registries send them:
 * `Bearer realm="https://auth.example/token",service="registry",scope="repository:a:pull"` or
 * `Basic realm="Registry Realm"`.
 */
export type Challenge =
  | { readonly kind: 'basic'; readonly realm?: string }
  | {
      readonly kind: 'bearer';
      readonly realm: string;
      readonly service?: string;
      readonly scope?: string;
      readonly error?: string;
    };

/** Parses every challenge in the header; unknown schemes are skipped. */
export function parseChallenges(header: string | readonly string[] | undefined): Challenge[] {
  if (header === undefined) return [];
  const values = typeof header === 'string' ? [header] : header;
  const out: Challenge[] = [];
  for (const value of values) {
    // Split into "Scheme params" groups: a scheme is a token followed by a space and not by '='.
    const pattern =
      /([A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]*)\s+((?:[^",]+=(?:"(?:[^"\\]|\\.)*"|[^,]*)\s*,?\s*)*)/g;
    for (const match of value.matchAll(pattern)) {
      const scheme = match[1]!.toLowerCase();
      const params = parseParams(match[2] ?? '');
      if (scheme === 'basic') {
        out.push(
          params['realm'] !== undefined ? { kind: 'basic', realm: params['realm'] } : { kind: 'basic' },
        );
      } else if (scheme === 'bearer' && params['realm'] !== undefined) {
        out.push({
          kind: 'bearer',
          realm: params['realm'],
          ...(params['service'] !== undefined ? { service: params['service'] } : {}),
          ...(params['scope'] !== undefined ? { scope: params['scope'] } : {}),
          ...(params['error'] !== undefined ? { error: params['error'] } : {}),
        });
      }
    }
  }
  return out;
}

function parseParams(text: string): Record<string, string> {
  const params: Record<string, string> = {};
  for (const match of text.matchAll(/([^\s",=]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))/g)) {
    const key = match[1]!.toLowerCase();
    const quoted = match[2];
    params[key] = quoted !== undefined ? quoted.replace(/\\(.)/g, '$1') : (match[3] ?? '');
  }
  return params;
}

/** `repository:name:pull,push` scopes, merged so each repository appears once with all its actions. */
export function mergeScopes(scopes: readonly string[]): string[] {
  const byResource = new Map<string, Set<string>>();
  for (const scope of scopes) {
    for (const single of scope.split(' ')) {
      if (single === '') continue;
      const lastColon = single.lastIndexOf(':');
      if (lastColon === -1) {
        byResource.set(single, byResource.get(single) ?? new Set());
        continue;
      }
      const resource = single.slice(0, lastColon);
      const actions = byResource.get(resource) ?? new Set<string>();
      for (const action of single.slice(lastColon + 1).split(',')) if (action !== '') actions.add(action);
      byResource.set(resource, actions);
    }
  }
  return [...byResource.entries()]
    .map(([resource, actions]) =>
      actions.size > 0 ? `${resource}:${[...actions].sort().join(',')}` : resource,
    )
    .sort();
}

/** True when every action of every scope in `needed` is granted by `granted`. */
export function scopesCover(granted: readonly string[], needed: readonly string[]): boolean {
  const have = new Map<string, Set<string>>();
  for (const scope of mergeScopes(granted)) {
    const lastColon = scope.lastIndexOf(':');
    have.set(scope.slice(0, lastColon), new Set(scope.slice(lastColon + 1).split(',')));
  }
  for (const scope of mergeScopes(needed)) {
    const lastColon = scope.lastIndexOf(':');
    const actions = have.get(scope.slice(0, lastColon));
    if (actions === undefined) return false;
    for (const action of scope.slice(lastColon + 1).split(',')) if (!actions.has(action)) return false;
  }
  return true;
}
