import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clip, displayLine, spread, textWidth } from '../../src/cli/terminal-text.js';
import { makeBusyboxRootfs, writeBaseImage } from '../helpers/base-image.js';
import { isRoot, requireTool } from '../helpers/system.js';

const BIN = resolve(import.meta.dirname, '../../bin/stratum.js');
const REPO = resolve(import.meta.dirname, '../..');
const COLUMNS = 60;
const ROWS = 30;

/**
 * A minimal terminal: autowrap at the last column, CR, LF, cursor up (CSI n A, clamped to the
 * visible screen), clear to end of screen (CSI J) and of line (CSI K); colours and cursor
 * visibility are ignored. Enough to replay what the live display writes and read the screen a
 * user is left with (scrollback included). Lines that wrapped are recorded: a wrapped line in a
 * redrawn frame is what used to leave a copy of itself behind at every redraw.
 */
class Terminal {
  readonly lines: string[][] = [[]];
  readonly wrapped: string[] = [];
  private row = 0;
  private col = 0;

  constructor(
    private readonly columns: number,
    private readonly rows: number,
  ) {}

  write(data: string): void {
    const escape = /^\x1b\[([0-9;?]*)([A-Za-z])/; // eslint-disable-line no-control-regex
    for (let i = 0; i < data.length;) {
      const char = data[i]!;
      if (char === '\x1b') {
        const match = escape.exec(data.slice(i));
        if (match === null) throw new Error(`unexpected escape at ${JSON.stringify(data.slice(i, i + 10))}`);
        this.control(match[2]!, match[1]!);
        i += match[0].length;
        continue;
      }
      if (char === '\r') this.col = 0;
      else if (char === '\n') this.down();
      else {
        if (this.col >= this.columns) {
          this.wrapped.push(this.lines[this.row]!.join(''));
          this.down();
          this.col = 0;
        }
        this.lines[this.row]![this.col++] = char;
      }
      i += char.length;
    }
  }

  screen(): string[] {
    return this.lines.map((line) => line.join('').trimEnd());
  }

  private down(): void {
    this.row++;
    while (this.lines.length <= this.row) this.lines.push([]);
  }

  private control(command: string, parameter: string): void {
    const n = parameter === '' ? 1 : Number(parameter);
    if (command === 'A') {
      const top = Math.max(0, this.lines.length - this.rows);
      this.row = Math.max(top, this.row - n);
    } else if (command === 'J') {
      this.lines[this.row]!.length = Math.min(this.lines[this.row]!.length, this.col);
      this.lines.length = this.row + 1;
    } else if (command === 'K') {
      if (parameter === '2') this.lines[this.row] = [];
      else this.lines[this.row]!.length = Math.min(this.lines[this.row]!.length, this.col);
    }
    // m (colours), h/l (cursor visibility): nothing to model.
  }
}

describe('terminal text', () => {
  it('clips to a width, counting wide characters as two columns, and marks the cut', () => {
    expect(clip('abcdef', 6)).toBe('abcdef');
    expect(clip('abcdefg', 6)).toBe('abcde…');
    expect(textWidth('日本語')).toBe(6);
    expect(clip('日本語です', 6)).toBe('日本…');
    expect(textWidth(clip('日本語です', 6))).toBeLessThanOrEqual(6);
  });
  it('spreads a label and a time on one line, the time always visible', () => {
    expect(spread('=> [a 1/2] RUN make', '1.2s', 30)).toBe('=> [a 1/2] RUN make       1.2s');
    const long = spread(`=> [a 1/2] RUN ${'x'.repeat(80)}`, '12.3s', 30);
    expect(long).toHaveLength(30);
    expect(long.endsWith(' 12.3s')).toBe(true);
  });
  it('makes step output safe to redraw: no escapes, only what follows the last CR, no tabs', () => {
    expect(displayLine('\x1b[31mred\x1b[0m')).toBe('red');
    expect(displayLine(' 10%\r 50%\r100% done')).toBe('100% done');
    expect(displayLine('a\tb\x07')).toBe('a  b');
  });
});

const runnable = isRoot && requireTool('script', 'bsdutils');

describe.skipIf(!runnable)(`--progress auto in a real pseudo-terminal of ${COLUMNS} columns`, () => {
  let dir: string;
  let baseRef: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'stratum-live-'));
    const rootfs = join(dir, 'base-rootfs');
    mkdirSync(rootfs);
    makeBusyboxRootfs(rootfs);
    baseRef = `oci:${writeBaseImage(rootfs, join(dir, 'base'), 'stratum-test/live:1').layout}:1`;
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  /** Runs stratum under script(1): stdout and stderr are a pty of COLUMNS x ROWS. */
  const inPty = (args: readonly string[]): { status: number | null; output: string } => {
    const quoted = [process.execPath, BIN, ...args].map((arg) => `'${arg.replace(/'/g, `'\\''`)}'`);
    const command = `stty cols ${COLUMNS} rows ${ROWS}; exec ${quoted.join(' ')}`;
    const result = spawnSync('script', ['-q', '-e', '-c', command, '/dev/null'], {
      cwd: REPO,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, TERM: 'xterm' },
    });
    return { status: result.status, output: result.stdout };
  };

  it('shows both stages running side by side with their output, every line within the width, and leaves one collapsed line per step and a total', () => {
    const ctx = join(dir, 'two-stages');
    mkdirSync(ctx);
    writeFileSync(
      join(ctx, 'Dockerfile'),
      [
        `FROM ${baseRef} AS a-stage-whose-name-is-long-enough-to-need-clipping`,
        'RUN for i in 1 2 3 4 5 6 7 8; do echo "left line $i, long enough to be wider than sixty columns of terminal"; sleep 0.25; done',
        `FROM ${baseRef} AS right`,
        'RUN for i in 1 2 3 4 5 6 7 8; do echo "right line $i"; sleep 0.25; done && echo done > /r',
        `FROM ${baseRef}`,
        'COPY --from=a-stage-whose-name-is-long-enough-to-need-clipping /etc/passwd /l',
        'COPY --from=right /r /r',
        '',
      ].join('\n'),
    );
    const out = join(dir, 'out');
    const { status, output } = inPty([
      'build',
      ctx,
      '--no-cache',
      '--network',
      'none',
      '--cache-dir',
      join(dir, 'cache'),
      '--output',
      `oci:${out}:1`,
    ]);
    expect(status, output).toBe(0);

    // Every frame the display drew (the text between two redraws) fits the terminal; only the
    // final image line, printed once above the frame and never redrawn, may be wider.
    // eslint-disable-next-line no-control-regex
    const frames = output.split(/\r\x1b\[\d+A\x1b\[J/);
    expect(frames.length).toBeGreaterThan(5);
    const frameLines = frames
      .slice(0, -1)
      .flatMap((frame) => frame.split('\r\n'))
      .filter((line) => !/^=> oci:.* sha256:[0-9a-f]{64}$/.test(line));
    for (const line of frameLines) expect(textWidth(line), line).toBeLessThanOrEqual(COLUMNS);
    // At some moment both RUN steps were on screen, each with its own latest output under it.
    const both = frames.find(
      (frame) => frame.includes(' => [a-stage-whose-name') && frame.includes(' => [right 1/1] RUN'),
    );
    expect(both, 'a frame with both stages running').toBeDefined();
    expect(frames.some((frame) => /=> \[right 1\/1\] RUN[^\n]*\r\n {4}right line \d/.test(frame))).toBe(true);
    expect(frames.some((frame) => /\r\n {4}left line \d, long enough[^\r\n]*…\r\n/.test(frame))).toBe(true);

    // The screen a user is left with.
    const terminal = new Terminal(COLUMNS, ROWS);
    terminal.write(output);
    const screen = terminal.screen().filter((line) => line !== '');
    // Only final lines that are never redrawn may wrap: the image line and the digest on stdout.
    for (const line of terminal.wrapped) expect(line).toMatch(/sha256:[0-9a-f]{0,64}$/);
    const stepLines = screen.filter((line) => line.startsWith('=> ['));
    expect(stepLines).toHaveLength(4);
    expect(new Set(stepLines).size).toBe(4);
    for (const line of stepLines) {
      expect(line.length).toBeLessThanOrEqual(COLUMNS);
      expect(line).toMatch(/ \d+\.\ds$/);
    }
    expect(
      stepLines.some((line) => line.startsWith('=> [a-stage-whose-name-is-long') && line.includes('…')),
    ).toBe(true);
    // Finished steps are collapsed: no frame header, running step or output tail is left.
    expect(screen.filter((line) => line.startsWith('[+] Building'))).toEqual([]);
    expect(screen.filter((line) => line.startsWith(' => ') || line.startsWith('    '))).toEqual([]);
    expect(screen.filter((line) => /^\[\+\] Built in \d+\.\ds \(4 ran, 0 cached\)$/.test(line))).toHaveLength(
      1,
    );
    // The digest on stdout comes last (71 characters: it wraps onto a second line at 60).
    expect(screen.slice(-2).join('')).toMatch(/^sha256:[0-9a-f]{64}$/);
  });

  it('a failed step keeps its last output lines under an ERROR line', () => {
    const ctx = join(dir, 'failing');
    mkdirSync(ctx);
    writeFileSync(
      join(ctx, 'Dockerfile'),
      `FROM ${baseRef}\nRUN echo "about to fail"; echo "the reason" >&2; exit 3\n`,
    );
    const { status, output } = inPty(['build', ctx, '--network', 'none', '--cache-dir', join(dir, 'cache')]);
    expect(status).toBe(1);
    const terminal = new Terminal(COLUMNS, ROWS);
    terminal.write(output);
    const screen = terminal.screen().filter((line) => line !== '');
    const error = screen.findIndex((line) => line.startsWith('=> ERROR [0 1/1] RUN echo'));
    expect(error, screen.join('\n')).toBeGreaterThanOrEqual(0);
    expect(screen.slice(error + 1, error + 3)).toEqual(['    about to fail', '    the reason']);
    expect(
      screen.filter((line) => /^\[\+\] Stopped after \d+\.\ds \(0 ran, 0 cached, 1 failed\)$/.test(line)),
    ).toHaveLength(1);
  });
});

describe('--progress outside a terminal', () => {
  it('auto is plain when stderr is not a terminal; json events carry a timestamp', () => {
    const dir = mkdtempSync(join(tmpdir(), 'stratum-progress-'));
    try {
      const run = (progress: string): SpawnSyncReturns<string> =>
        spawnSync(
          process.execPath,
          [BIN, 'build', 'examples/hello', '--progress', progress, '--cache-dir', join(dir, 'cache')],
          { cwd: REPO, encoding: 'utf8' },
        );
      const auto = run('auto');
      expect(auto.status, auto.stderr).toBe(0);
      expect(auto.stderr).toMatch(/^#1 \[0 1\/\d\] COPY hello.txt/m);
      expect(auto.stderr).not.toContain('\x1b');
      const json = run('json');
      expect(json.status, json.stderr).toBe(0);
      const events = json.stderr
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => JSON.parse(line) as { time: string; kind: string });
      expect(events.length).toBeGreaterThan(2);
      for (const event of events) {
        expect(event.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
        expect(Math.abs(Date.parse(event.time) - Date.now())).toBeLessThan(10 * 60_000);
      }
      expect(events.map((event) => event.kind)).toContain('step-end');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
