import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import type { Socket } from 'node:net';
import { StratumError, errnoCode } from '../errors.js';
import { trace } from '../util/trace.js';
import { nameBytes } from '../util/file-names.js';

/**
 * The system calls Node cannot make (mknod, lsetxattr, lgetxattr, mount, umount2, utimensat with
 * exact nanoseconds), made by one long-lived Perl process per stratum process: a layer's
 * whiteouts and opaque directories, an upperdir's opaque flags, mounts and unmounts, the mtimes
 * the RUN sandbox gives back to directories. Never a process per file, nor per step: spawning
 * one cost ~10 ms of the main thread (fork of a 60 MB process) plus Perl's start-up, several
 * times per step. Perl is Essential in Debian (perl-base) and the RUN sandbox already depends on
 * it (executor/sandbox/init.ts).
 *
 * A batch arrives on stdin as NUL-terminated words (no argv size limit, any byte in a path) and
 * ends with the word "."; the answer is NUL-terminated words ending with ".", or one word
 * "!message" naming the first operation that failed (the rest of that batch is skipped). The
 * process exits when stdin closes, so it never outlives stratum (a SIGKILL included).
 *
 *   wh PATH                  a whiteout: character device 0/0, mode 000 (overlay's form)
 *   opq PATH NAME            set the opaque xattr NAME=y on directory PATH
 *   getopq PATH NAME         answer "y" when PATH has NAME=y, else "n"
 *   mount CWD TARGET DATA    chdir(CWD), mount overlay on TARGET with option string DATA
 *   umount TARGET            unmount TARGET (lazily when busy)
 *   mtime PATH SEC NSEC      set PATH's mtime exactly (atime left alone, a symlink not followed)
 *   syncfs PATH              flush the filesystem holding PATH to disk (syncfs(2))
 *   flushmark PATH MARK      in a child nothing waits for: read the uptime, syncfs(PATH), then
 *                            write that uptime to MARK (by rename); the flush journal's
 *                            background flush (flush-journal.ts), without a fork of Node
 *   nsprobe FLAGS            answer "ok" when a child can unshare(FLAGS) and, with a new PID
 *                            namespace, fork its PID 1; else the error (the RUN sandbox's probe,
 *                            executor/sandbox/isolation.ts: a process instead of a spawn)
 */
const program = String.raw`
my ($NR_mknodat, $NR_lsetxattr, $NR_lgetxattr, $NR_mount, $NR_umount2, $NR_utimensat, $NR_unshare, $NR_syncfs) = map { 0 + $_ } @ARGV;
$| = 1;
$/ = "\0";
my @w;
while (defined(my $word = <STDIN>)) {
  # Background children (flushmark) that have ended; WNOHANG.
  1 while waitpid(-1, 1) > 0;
  chop $word;
  if ($word ne '.') { push @w, $word; next }
  my $out = eval { run_batch(\@w) };
  @w = ();
  chdir('/');
  print defined($out) ? "$out.\0" : "!$@\0";
}
sub fail { my $m = "$_[0]: $!"; $m =~ s/\0//g; die "$m\n" }
sub run_batch {
  my ($batch) = @_;
  my $out = '';
  while (@$batch) {
    my $op = shift @$batch;
    if ($op eq 'wh') {
      my $p = shift @$batch;
      # S_IFCHR | 0000, dev 0: the mode is given whole so the umask cannot matter.
      syscall($NR_mknodat, -100, $p, 0020000, 0) == 0 or fail("whiteout $p");
    } elsif ($op eq 'opq') {
      my ($p, $name) = splice(@$batch, 0, 2);
      my $v = 'y';
      syscall($NR_lsetxattr, $p, $name, $v, 1, 0) == 0 or fail("set $name on $p");
    } elsif ($op eq 'getopq') {
      my ($p, $name) = splice(@$batch, 0, 2);
      my $buf = "\0" x 8;
      my $n = syscall($NR_lgetxattr, $p, $name, $buf, 8);
      $out .= ($n == 1 && substr($buf, 0, 1) eq 'y') ? "y\0" : "n\0";
    } elsif ($op eq 'mount') {
      my ($cwd, $t, $data) = splice(@$batch, 0, 3);
      chdir($cwd) or fail("chdir $cwd");
      my ($src, $type) = ('overlay', 'overlay');
      syscall($NR_mount, $src, $t, $type, 0, $data) == 0 or fail("mount overlay on $t");
    } elsif ($op eq 'umount') {
      my $t = shift @$batch;
      if (syscall($NR_umount2, $t, 0) != 0) {
        # EBUSY: a process still has something open below; MNT_DETACH finishes when it lets go.
        syscall($NR_umount2, $t, 2) == 0 or fail("unmount $t");
      }
    } elsif ($op eq 'mtime') {
      my ($p, $sec, $nsec) = splice(@$batch, 0, 3);
      # atime UTIME_OMIT ((1 << 30) - 2), AT_FDCWD, AT_SYMLINK_NOFOLLOW (0x100).
      my $times = pack('q4', 0, (1 << 30) - 2, $sec, $nsec);
      syscall($NR_utimensat, -100, $p, $times, 0x100) == 0 or fail("set the mtime of $p");
    } elsif ($op eq 'syncfs') {
      my $p = shift @$batch;
      open(my $fh, '<', $p) or fail("open $p");
      syscall($NR_syncfs, fileno($fh)) == 0 or fail("sync the filesystem of $p");
      close($fh);
    } elsif ($op eq 'flushmark') {
      my ($p, $mark) = splice(@$batch, 0, 2);
      my $pid = fork();
      defined($pid) or fail('fork');
      if ($pid == 0) {
        # Off the helper's pipes: stratum would otherwise wait on them for the flush to end.
        open(STDIN, '<', '/dev/null');
        open(STDOUT, '>', '/dev/null');
        open(STDERR, '>', '/dev/null');
        my $up = '';
        if (open(my $u, '<', '/proc/uptime')) { ($up) = split(/ /, scalar(<$u>)); close($u) }
        exit(1) unless defined($up) && $up =~ /^\d+(\.\d+)?$/;
        open(my $fh, '<', $p) or exit(1);
        syscall($NR_syncfs, fileno($fh)) == 0 or exit(1);
        my $tmp = "$mark.tmp.$$";
        open(my $o, '>', $tmp) or exit(1);
        print $o "$up\n";
        close($o) or exit(1);
        rename($tmp, $mark) or exit(1);
        exit(0);
      }
    } elsif ($op eq 'nsprobe') {
      my $flags = 0 + shift @$batch;
      my $pid = fork();
      defined($pid) or fail('fork');
      if ($pid == 0) {
        # The child reports an errno as its exit code; stdout is unbuffered, so it prints nothing.
        exit(0 + $!) unless syscall($NR_unshare, $flags) == 0;
        my $init = fork();
        exit(0 + $!) unless defined($init);
        exit(0) if $init == 0;
        waitpid($init, 0);
        exit($? == 0 ? 0 : 125);
      }
      waitpid($pid, 0);
      my $code = $? & 127 ? 125 : $? >> 8;
      if ($code == 0) { $out .= "ok\0" } else { local $! = $code; my $m = "unshare: $!"; $m =~ s/\0//g; $out .= "$m\0" }
    } else {
      $! = 22;
      fail("unknown operation $op");
    }
  }
  return $out;
}
`;

/** mknodat, lsetxattr, lgetxattr, mount, umount2, utimensat, unshare, syncfs */
const syscallTables: Readonly<Partial<Record<NodeJS.Architecture, readonly number[]>>> = {
  x64: [259, 189, 192, 165, 166, 280, 272, 306],
  arm64: [33, 6, 9, 40, 39, 88, 97, 267],
  riscv64: [33, 6, 9, 40, 39, 88, 97, 267],
  loong64: [33, 6, 9, 40, 39, 88, 97, 267],
};

export type HelperOp =
  | { readonly op: 'wh'; readonly path: string }
  | { readonly op: 'opq'; readonly path: string; readonly name: string }
  | { readonly op: 'getopq'; readonly path: string; readonly name: string }
  | { readonly op: 'mount'; readonly cwd: string; readonly target: string; readonly data: string }
  | { readonly op: 'umount'; readonly target: string }
  | { readonly op: 'mtime'; readonly path: string; readonly mtimeNs: bigint }
  | { readonly op: 'syncfs'; readonly path: string }
  | { readonly op: 'flushmark'; readonly path: string; readonly mark: string }
  | { readonly op: 'nsprobe'; readonly flags: number };

function encode(ops: readonly HelperOp[]): Buffer {
  const words: string[] = [];
  for (const op of ops) {
    switch (op.op) {
      case 'wh':
        words.push('wh', op.path);
        break;
      case 'opq':
      case 'getopq':
        words.push(op.op, op.path, op.name);
        break;
      case 'mount':
        words.push('mount', op.cwd, op.target, op.data);
        break;
      case 'umount':
        words.push('umount', op.target);
        break;
      case 'syncfs':
        words.push('syncfs', op.path);
        break;
      case 'flushmark':
        words.push('flushmark', op.path, op.mark);
        break;
      case 'nsprobe':
        words.push('nsprobe', String(op.flags));
        break;
      case 'mtime': {
        // A timespec's nanoseconds are 0..999999999, also before 1970: round the seconds down.
        const remainder = op.mtimeNs % 1_000_000_000n;
        const nanoseconds = remainder < 0n ? remainder + 1_000_000_000n : remainder;
        words.push(
          'mtime',
          op.path,
          String((op.mtimeNs - nanoseconds) / 1_000_000_000n),
          String(nanoseconds),
        );
        break;
      }
    }
  }
  words.push('.');
  // Paths as their bytes: a name that is not UTF-8 is escaped in its string (oci/file-names.ts).
  return nameBytes(words.map((word) => `${word}\0`).join(''));
}

/** The helper of this stratum process, started on first use. */
let shared: HelperProcess | undefined;

/**
 * Runs a batch in this process's namespaces; returns the answers of the `getopq` and `nsprobe`
 * operations, in order. (Rootless, that is the user and mount namespace stratum runs itself in.)
 */
export async function runOverlayHelper(ops: readonly HelperOp[]): Promise<string[]> {
  if (ops.length === 0) return [];
  return helper().run(ops);
}

/**
 * Starts the helper ahead of its first batch, so that Perl's start-up (~20 ms) overlaps what
 * comes before that batch (the overlay snapshotter calls it once it is chosen, then prepares
 * the first mount's directories). A failure to start is the first batch's to report.
 */
export function startOverlayHelper(): void {
  try {
    helper();
  } catch {
    // An architecture without a system call table: the first batch says so.
  }
}

function helper(): HelperProcess {
  if (shared === undefined || shared.dead) shared = new HelperProcess(syscallNumbers());
  return shared;
}

function syscallNumbers(): readonly number[] {
  const numbers = syscallTables[process.arch];
  if (numbers === undefined) {
    throw new StratumError(
      'UNSUPPORTED',
      `the overlay snapshotter does not know ${process.arch}'s system calls`,
    );
  }
  return numbers;
}

interface PendingBatch {
  readonly resolve: (answers: string[]) => void;
  readonly reject: (error: Error) => void;
}

/**
 * One Perl process answering batches in order. It is unreferenced while idle, so an idle helper
 * never keeps stratum from exiting; when stratum exits its stdin closes and it ends too.
 */
class HelperProcess {
  dead = false;
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly waiting: PendingBatch[] = [];
  private answers: string[] = [];
  private partial = '';
  private stderr = '';

  constructor(numbers: readonly number[]) {
    trace('helper: spawning');
    this.child = spawn('perl', ['-e', program, ...numbers.map(String)], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
    });
    trace('helper: spawned');
    this.child.stdout.setEncoding('utf8');
    this.child.stdout.on('data', (chunk: string) => {
      this.onData(chunk);
    });
    this.child.stderr.on(
      'data',
      (chunk: Buffer) => (this.stderr = (this.stderr + chunk.toString('utf8')).slice(-2000)),
    );
    this.child.on('error', (error) => {
      this.die(
        errnoCode(error) === 'ENOENT'
          ? new StratumError('UNSUPPORTED', 'the overlay snapshotter needs perl (Debian package perl-base)')
          : error,
      );
    });
    this.child.on('close', (code, signal) => {
      const line = this.stderr.trim().split('\n').pop() ?? '';
      this.die(
        new StratumError('IO', `overlay helper: exited (${signal ?? code})${line === '' ? '' : `: ${line}`}`),
      );
    });
    this.child.stdin.on('error', () => undefined);
    this.setReferenced(false);
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  close(): void {
    this.child.stdin.end();
  }

  run(ops: readonly HelperOp[]): Promise<string[]> {
    return new Promise<string[]>((resolve, reject) => {
      if (this.dead) {
        reject(new StratumError('IO', 'overlay helper: exited'));
        return;
      }
      this.waiting.push({ resolve, reject });
      this.setReferenced(true);
      this.child.stdin.write(encode(ops));
    });
  }

  private onData(chunk: string): void {
    const words = (this.partial + chunk).split('\0');
    this.partial = words.pop() ?? '';
    for (const word of words) {
      if (word === '.' || word.startsWith('!')) {
        const answers = this.answers;
        this.answers = [];
        const batch = this.waiting.shift();
        if (this.waiting.length === 0) this.setReferenced(false);
        if (batch === undefined) continue;
        if (word === '.') batch.resolve(answers);
        else batch.reject(new StratumError('IO', `overlay helper: ${word.slice(1).trim()}`));
      } else this.answers.push(word);
    }
  }

  private die(error: Error): void {
    if (this.dead) return;
    this.dead = true;
    for (const batch of this.waiting.splice(0)) batch.reject(error);
  }

  /** Keeps the event loop alive only while a batch is waiting for its answer. */
  private setReferenced(referenced: boolean): void {
    // The pipes are sockets (net.Socket has ref/unref); the child handle is refed by itself.
    const handles: readonly { ref?: () => unknown; unref?: () => unknown }[] = [
      this.child,
      this.child.stdin as unknown as Socket,
      this.child.stdout as unknown as Socket,
      this.child.stderr as unknown as Socket,
    ];
    for (const handle of handles) {
      if (referenced) handle.ref?.();
      else handle.unref?.();
    }
  }
}
