import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import type { Socket } from 'node:net';
import { StratumError, errnoCode } from '../errors.js';

/**
 * The system calls Node cannot make (mknod, lsetxattr, lgetxattr, mount, umount2), made by one
 * long-lived Perl process per stratum process: a layer's whiteouts and opaque directories, an
 * upperdir's opaque flags, mounts and unmounts. Never a process per file, nor per step: spawning
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
 *   chown PATH UID GID MODE  lchown PATH (ENOENT and unmapped ids ignored), then chmod MODE
 *                            (octal; -1: none)
 *   rmtree PATH              rm -rf PATH (rootless: an upperdir holds files of subordinate ids
 *                            that only the namespace's root may remove)
 */
const program = String.raw`
my ($NR_mknodat, $NR_lsetxattr, $NR_lgetxattr, $NR_mount, $NR_umount2, $NR_fchownat) = map { 0 + $_ } @ARGV;
$| = 1;
$/ = "\0";
my @w;
while (defined(my $word = <STDIN>)) {
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
    } elsif ($op eq 'chown') {
      my ($p, $u, $g, $m) = splice(@$batch, 0, 4);
      # fchownat(AT_FDCWD, p, u, g, AT_SYMLINK_NOFOLLOW). Gone since (ENOENT), or an id this
      # namespace does not map (EINVAL): the entry stays as it is.
      if (syscall($NR_fchownat, -100, $p, 0 + $u, 0 + $g, 0x100) != 0) {
        next if $! == 2 || $! == 22;
        fail("chown $p");
      }
      # chown clears setuid/setgid: the mode goes on again.
      chmod(oct($m), $p) or fail("chmod $p") if $m ne '-1';
    } elsif ($op eq 'rmtree') {
      remove_tree(shift @$batch);
    } else {
      $! = 22;
      fail("unknown operation $op");
    }
  }
  return $out;
}
sub remove_tree {
  my ($p) = @_;
  if (-l $p || !-d _) {
    unlink($p) or $! == 2 or fail("remove $p");
    return;
  }
  opendir(my $dir, $p) or fail("list $p");
  my @names = grep { $_ ne '.' && $_ ne '..' } readdir($dir);
  closedir($dir);
  remove_tree("$p/$_") for @names;
  rmdir($p) or $! == 2 or fail("remove $p");
}
`;

/** mknodat, lsetxattr, lgetxattr, mount, umount2, fchownat */
const syscallTables: Readonly<Partial<Record<NodeJS.Architecture, readonly number[]>>> = {
  x64: [259, 189, 192, 165, 166, 260],
  arm64: [33, 6, 9, 40, 39, 54],
  riscv64: [33, 6, 9, 40, 39, 54],
  loong64: [33, 6, 9, 40, 39, 54],
};

export type HelperOp =
  | { readonly op: 'wh'; readonly path: string }
  | { readonly op: 'opq'; readonly path: string; readonly name: string }
  | { readonly op: 'getopq'; readonly path: string; readonly name: string }
  | { readonly op: 'mount'; readonly cwd: string; readonly target: string; readonly data: string }
  | { readonly op: 'umount'; readonly target: string }
  | { readonly op: 'rmtree'; readonly path: string }
  /** lchown as root of the helper's namespace; `mode` (or -1) goes on again after it. */
  | {
      readonly op: 'chown';
      readonly path: string;
      readonly uid: number;
      readonly gid: number;
      readonly mode: number;
    };

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
      case 'rmtree':
        words.push('rmtree', op.path);
        break;
      case 'chown':
        words.push(
          'chown',
          op.path,
          String(op.uid),
          String(op.gid),
          op.mode < 0 ? '-1' : op.mode.toString(8),
        );
        break;
    }
  }
  words.push('.');
  return Buffer.from(words.map((word) => `${word}\0`).join(''), 'utf8');
}

/** The host-namespace helper of this stratum process, started on first use. */
let shared: HelperProcess | undefined;

/**
 * Runs a batch in the host's namespaces; returns the answers of the `getopq` operations, in
 * order. Whiteouts and `user.*` xattrs need no privilege (a 0/0 device is the one device an
 * unprivileged user may make), so rootless extraction uses this one too; only its mounts need a
 * namespace of their own (`startOverlayHelper`).
 */
export async function runOverlayHelper(ops: readonly HelperOp[]): Promise<string[]> {
  if (ops.length === 0) return [];
  if (shared === undefined || shared.dead) shared = new HelperProcess(syscallNumbers(), []);
  return shared.run(ops);
}

/** A helper process of its own, running under `wrapper` (e.g. `unshare --user --mount --`). */
export interface OverlayHelperProcess {
  /** Its PID: `/proc/PID/root/...` reaches its mounts from outside its mount namespace. */
  readonly pid: number;
  run(ops: readonly HelperOp[]): Promise<string[]>;
  /** Ends it (closing stdin); a namespace it alone held goes with it, mounts and all. */
  close(): void;
}

export function startOverlayHelper(wrapper: readonly string[]): OverlayHelperProcess {
  const helper = new HelperProcess(syscallNumbers(), wrapper);
  const pid = helper.pid;
  if (pid === undefined)
    throw new StratumError('UNSUPPORTED', `overlay helper: ${wrapper[0] ?? 'perl'} did not start`);
  return {
    pid,
    run: async (ops) => (ops.length === 0 ? [] : helper.run(ops)),
    close: () => {
      helper.close();
    },
  };
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

  constructor(numbers: readonly number[], wrapper: readonly string[]) {
    const argv = [...wrapper, 'perl', '-e', program, ...numbers.map(String)];
    this.child = spawn(argv[0]!, argv.slice(1), {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
    });
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
          ? new StratumError(
              'UNSUPPORTED',
              `the overlay snapshotter needs ${this.child.spawnfile} (Debian package ${this.child.spawnfile === 'perl' ? 'perl-base' : 'util-linux'})`,
            )
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
