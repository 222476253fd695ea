/**
 * `created_by` strings in BuildKit's form (dockerfile2llb's commitToHistory): the instruction in
 * upper case with its expanded arguments, and ` # buildkit` after instructions that change the
 * filesystem. Go's `%q` of a string slice prints `["a" "b"]`; `%v` prints `[a b]`.
 */
export function goQuotedList(values: readonly string[]): string {
  return `[${values.map((value) => JSON.stringify(value)).join(' ')}]`;
}

export function goPlainList(values: readonly string[]): string {
  return `[${values.join(' ')}]`;
}

/** `RUN |2 A=1 B=2 /bin/sh -c make`: the ARGs in scope prefix the command, as BuildKit writes. */
export function runCreatedBy(argv: readonly string[], args: readonly (readonly [string, string])[]): string {
  const prefix = args.length > 0 ? [`|${args.length}`, ...args.map(([key, value]) => `${key}=${value}`)] : [];
  return `RUN ${[...prefix, ...argv].join(' ')} # buildkit`;
}

export function withLayerMarker(text: string): string {
  return `${text} # buildkit`;
}
