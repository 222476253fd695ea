import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const REPO = resolve(import.meta.dirname, '..');
const BIN = join(REPO, 'bin/stratum.js');

/** `stratum ARGS --help`, whose options are what the command takes today. */
function help(command: readonly string[]): string {
  const result = spawnSync(process.execPath, [BIN, ...command, '--help'], { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`stratum ${command.join(' ')} --help: ${result.stderr}`);
  return result.stdout;
}

/** The long flags a help text lists (its option lines), without --help. */
function helpFlags(text: string): Set<string> {
  const flags = new Set<string>();
  for (const match of text.matchAll(/^\s+(?:-\w, )?(--[a-z][a-z-]*)/gm)) flags.add(match[1]!);
  flags.delete('--help');
  return flags;
}

const longFlags = (text: string): string[] =>
  [...text.matchAll(/(?<![\w-])(--[a-z][a-z-]*)/g)].map((m) => m[1]!);

/** The README's "Every flag" table: command → the cell of flags. */
function readmeFlagTable(): Map<string, string> {
  const readme = readFileSync(join(REPO, 'README.md'), 'utf8');
  const start = readme.indexOf('Every flag');
  const table = readme.slice(start, readme.indexOf('\n\n', readme.indexOf('| command | flags |', start)));
  const rows = new Map<string, string>();
  for (const line of table.split('\n')) {
    const match = /^\| `([^`]+)`(?: \/ `[^`]+`)? \| (.*) \|$/.exec(line);
    if (match !== null) rows.set(match[1]!, match[2]!);
  }
  return rows;
}

/**
 * Docs that say what the commands do are checked against the commands (issue 26: the README
 * said `--network` defaulted to host, docs named flags that no longer existed).
 */
describe('the README and docs match the commands', () => {
  const table = readmeFlagTable();

  it("the README's flag table lists every command's flags, and only flags the command has", () => {
    expect(table.size).toBeGreaterThanOrEqual(14);
    for (const [command, cell] of table) {
      const flags = helpFlags(help(command.split(' ')));
      const documented = new Set(longFlags(cell));
      expect({ command, missing: [...flags].filter((flag) => !documented.has(flag)) }).toEqual({
        command,
        missing: [],
      });
      expect({ command, unknown: [...documented].filter((flag) => !flags.has(flag)) }).toEqual({
        command,
        unknown: [],
      });
    }
  });

  it('every default the flag table states is the one --help states', () => {
    const build = help(['build']);
    const network = /--network <mode>.*default: "([a-z]+)"\)/.exec(build)?.[1];
    expect(table.get('build')).toContain(`\`--network default\\|host\\|none\` (default \`${network!}\``);
  });

  it('every stratum command line in README.md and docs/*.md uses flags the command has', () => {
    const files = ['README.md', ...readdirSync(join(REPO, 'docs')).map((name) => join('docs', name))];
    const commands = [
      'build',
      'images',
      'rmi',
      'inspect',
      'copy',
      'pull',
      'push',
      'login',
      'logout',
      'diff',
      'analyze',
      'du',
      'cache',
      'parse',
    ];
    const known = new Map<string, Set<string>>();
    const problems: string[] = [];
    for (const file of files) {
      const text = readFileSync(join(REPO, file), 'utf8');
      // Code blocks and inline code that start with `stratum COMMAND` (or `npx stratum`).
      const snippets = [...text.matchAll(/```[a-z]*\n([\s\S]*?)```/g)].map((m) =>
        m[1]!.replace(/\\\n\s*/g, ' '),
      );
      snippets.push(...[...text.matchAll(/`((?:npx )?stratum [^`]+)`/g)].map((m) => m[1]!));
      for (const snippet of snippets) {
        for (const line of snippet.split('\n')) {
          const match = /(?:^|\s|\()(?:npx )?stratum ((?:cache )?[a-z]+)(.*)$/.exec(line);
          if (match === null) continue;
          const command = match[1]!.trim();
          if (!commands.includes(command.split(' ')[0]!)) continue;
          if (command === 'cache') continue; // `stratum cache` alone names the group
          if (!known.has(command)) known.set(command, helpFlags(help(command.split(' '))));
          for (const flag of longFlags(match[2]!)) {
            if (!known.get(command)!.has(flag)) problems.push(`${file}: stratum ${command} ${flag}`);
          }
        }
      }
    }
    expect(problems).toEqual([]);
  });
});

describe('docs/api.md is the library API', () => {
  it('lists exactly the runtime exports of the package entry (package.json exports)', async () => {
    const manifest = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as {
      exports: { '.': { default: string } };
    };
    const entry = (await import(join(REPO, manifest.exports['.'].default))) as Record<string, unknown>;
    const exported = Object.keys(entry).sort();
    const page = readFileSync(join(REPO, 'docs/api.md'), 'utf8');
    // Names in the first column of the tables: `name`, `a`, `b`.
    const documented = [...page.matchAll(/^\| ((?:`\w+`(?:, )?)+) \|/gm)]
      .flatMap((match) => [...match[1]!.matchAll(/`(\w+)`/g)].map((name) => name[1]!))
      .sort();
    expect(documented).toEqual(exported);
    // The bound: a small API, not every internal.
    expect(exported.length).toBeLessThanOrEqual(60);
  });
});
