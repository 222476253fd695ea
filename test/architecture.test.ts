import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve, dirname, sep } from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * The architecture guide's import rules, from import-rules.json (the one table ESLint reads too):
 * each src/ folder imports only itself, the leaf src/errors.ts and the folders listed for it;
 * top-level modules import what their entry says ("*" = every folder but cli); nothing imports
 * cli; and no module takes part in an import cycle (type-only imports included: a cycle of
 * types is still two modules that cannot be understood apart).
 */
interface ImportRules {
  readonly folders: Readonly<Record<string, readonly string[]>>;
  readonly about: Readonly<Record<string, string>>;
  readonly topLevel: Readonly<Record<string, readonly string[]>>;
}

const root = resolve(import.meta.dirname, '..');
const srcRoot = join(root, 'src');
const rules = JSON.parse(readFileSync(join(root, 'import-rules.json'), 'utf8')) as ImportRules;

function* sourceFiles(dir: string): Generator<string> {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) yield* sourceFiles(path);
    else if (name.endsWith('.ts')) yield path;
  }
}

/** Relative specifiers of every import and re-export, type-only ones included. */
function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  return [...text.matchAll(/(?:from|import)\s*\(?\s*'(\.[^']+)'/g)].map((match) => match[1]!);
}

/** The src/-relative .ts path a specifier names. */
function targetOf(file: string, spec: string): string {
  return relative(srcRoot, resolve(dirname(file), spec)).replace(/\.js$/, '.ts');
}

/** The unit a rule speaks of: a folder name, or a top-level module's file name. */
function unitOf(srcRelative: string): string {
  return srcRelative.split(sep)[0]!;
}

function allowedFor(unit: string): readonly string[] | undefined {
  return rules.folders[unit] ?? rules.topLevel[unit];
}

function isAllowed(unit: string, target: string): boolean {
  if (target === unit || target === 'errors.ts') return true;
  if (target === 'cli' || target === 'index.ts') return false;
  const allowed = allowedFor(unit) ?? [];
  return allowed.includes('*') || allowed.includes(target);
}

/** Strongly connected components with more than one module (Tarjan). */
function cycles(graph: ReadonlyMap<string, readonly string[]>): string[][] {
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (node: string): void => {
    index.set(node, next);
    low.set(node, next);
    next++;
    stack.push(node);
    onStack.add(node);
    for (const dep of graph.get(node) ?? []) {
      if (!graph.has(dep)) continue;
      if (!index.has(dep)) {
        visit(dep);
        low.set(node, Math.min(low.get(node)!, low.get(dep)!));
      } else if (onStack.has(dep)) low.set(node, Math.min(low.get(node)!, index.get(dep)!));
    }
    if (low.get(node) !== index.get(node)) return;
    const component: string[] = [];
    let member: string;
    do {
      member = stack.pop()!;
      onStack.delete(member);
      component.push(member);
    } while (member !== node);
    if (component.length > 1) found.push(component.sort());
  };
  for (const node of graph.keys()) if (!index.has(node)) visit(node);
  return found;
}

describe('architecture guide: import rules (import-rules.json)', () => {
  const files = [...sourceFiles(srcRoot)];

  it('every src/ folder and top-level module has an entry in import-rules.json', () => {
    const units = new Set(files.map((file) => unitOf(relative(srcRoot, file))));
    const missing = [...units].filter((unit) => allowedFor(unit) === undefined);
    expect(missing, 'add these to import-rules.json').toEqual([]);
  });

  it('src/ holds only folders besides index.ts and errors.ts, each described in one line', () => {
    const loose = readdirSync(srcRoot).filter(
      (name) => !statSync(join(srcRoot, name)).isDirectory() && !['index.ts', 'errors.ts'].includes(name),
    );
    expect(loose, 'move these into a folder').toEqual([]);
    const folders = readdirSync(srcRoot).filter((name) => statSync(join(srcRoot, name)).isDirectory());
    const undescribed = folders.filter(
      (name) => !(rules.about[name] ?? '').trim() || rules.about[name]!.includes('\n'),
    );
    expect(undescribed, 'describe these in import-rules.json "about"').toEqual([]);
  });

  it('each module imports only what its folder may', () => {
    const violations: string[] = [];
    for (const file of files) {
      const rel = relative(srcRoot, file);
      const unit = unitOf(rel);
      for (const spec of importsOf(file)) {
        const target = targetOf(file, spec);
        if (target.startsWith('..')) violations.push(`${rel} imports outside src: ${spec}`);
        else if (!isAllowed(unit, unitOf(target))) violations.push(`${rel} → ${target}`);
      }
    }
    expect(violations).toEqual([]);
  });

  it('no import cycles among src modules (type-only and dynamic imports count)', () => {
    const graph = new Map<string, string[]>();
    for (const file of files)
      graph.set(
        relative(srcRoot, file),
        importsOf(file).map((spec) => targetOf(file, spec)),
      );
    expect(cycles(graph)).toEqual([]);
  });

  it('the rules can fail: a folder importing one it may not is caught', () => {
    expect(isAllowed('oci', 'executor')).toBe(false);
    expect(isAllowed('snapshot', 'cli')).toBe(false);
    expect(isAllowed('build', 'cli')).toBe(false);
    expect(isAllowed('cli', 'executor')).toBe(false);
    expect(isAllowed('cli', 'index.ts')).toBe(false);
    expect(isAllowed('executor', 'snapshot')).toBe(true);
    expect(
      cycles(
        new Map([
          ['a', ['b']],
          ['b', ['a']],
          ['c', ['a']],
        ]),
      ),
    ).toEqual([['a', 'b']]);
  });
});
