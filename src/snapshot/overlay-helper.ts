import { spawn } from 'node:child_process';
import { StratumError, errnoCode } from '../errors.js';

/**
 * The system calls Node cannot make (mknod, lsetxattr, lgetxattr, mount, umount2), made by one
 * short Perl process per batch: a layer's whiteouts and opaque directories, an upperdir's opaque
 * flags, a mount or an unmount. Never a process per file. Perl is Essential in Debian
 * (perl-base) and the RUN sandbox already depends on it (executor/sandbox/init.ts).
 *
 * Operations arrive on stdin as NUL-separated words (no argv size limit, any byte in a path);
 * answers go to stdout as NUL-terminated words; the first failure ends the batch with
 * "!message" on stderr and exit 1.
 *
 *   wh PATH                  a whiteout: character device 0/0, mode 000 (overlay's form)
 *   opq PATH NAME            set the opaque xattr NAME=y on directory PATH
 *   getopq PATH NAME         answer "y" when PATH has NAME=y, else "n"
 *   mount CWD TARGET DATA    chdir(CWD), mount overlay on TARGET with option string DATA
 *   umount TARGET            unmount TARGET (lazily when busy)
 */
const program = String.raw`
my ($NR_mknodat, $NR_lsetxattr, $NR_lgetxattr, $NR_mount, $NR_umount2) = map { 0 + $_ } @ARGV;
local $/;
my $in = <STDIN>;
$in = '' unless defined $in;
my @w = split(/\0/, $in, -1);
pop @w if @w && $w[-1] eq '';
sub fail { my $m = "$_[0]: $!"; print STDERR "!$m\n"; exit 1 }
my $out = '';
while (@w) {
  my $op = shift @w;
  if ($op eq 'wh') {
    my $p = shift @w;
    # S_IFCHR | 0000, dev 0: the mode is given whole so the umask cannot matter.
    syscall($NR_mknodat, -100, $p, 0020000, 0) == 0 or fail("whiteout $p");
  } elsif ($op eq 'opq') {
    my ($p, $name) = splice(@w, 0, 2);
    my $v = 'y';
    syscall($NR_lsetxattr, $p, $name, $v, 1, 0) == 0 or fail("set $name on $p");
  } elsif ($op eq 'getopq') {
    my ($p, $name) = splice(@w, 0, 2);
    my $buf = "\0" x 8;
    my $n = syscall($NR_lgetxattr, $p, $name, $buf, 8);
    $out .= ($n == 1 && substr($buf, 0, 1) eq 'y') ? "y\0" : "n\0";
  } elsif ($op eq 'mount') {
    my ($cwd, $t, $data) = splice(@w, 0, 3);
    chdir($cwd) or fail("chdir $cwd");
    my ($src, $type) = ('overlay', 'overlay');
    syscall($NR_mount, $src, $t, $type, 0, $data) == 0 or fail("mount overlay on $t");
  } elsif ($op eq 'umount') {
    my $t = shift @w;
    if (syscall($NR_umount2, $t, 0) != 0) {
      # EBUSY: a process still has something open below; MNT_DETACH finishes when it lets go.
      syscall($NR_umount2, $t, 2) == 0 or fail("unmount $t");
    }
  } else {
    $! = 22;
    fail("unknown operation $op");
  }
}
print $out;
`;

/** mknodat, lsetxattr, lgetxattr, mount, umount2 */
const syscallTables: Readonly<Partial<Record<NodeJS.Architecture, readonly number[]>>> = {
  x64: [259, 189, 192, 165, 166],
  arm64: [33, 6, 9, 40, 39],
  riscv64: [33, 6, 9, 40, 39],
  loong64: [33, 6, 9, 40, 39],
};

export type HelperOp =
  | { readonly op: 'wh'; readonly path: string }
  | { readonly op: 'opq'; readonly path: string; readonly name: string }
  | { readonly op: 'getopq'; readonly path: string; readonly name: string }
  | { readonly op: 'mount'; readonly cwd: string; readonly target: string; readonly data: string }
  | { readonly op: 'umount'; readonly target: string };

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
    }
  }
  return Buffer.from(words.map((word) => `${word}\0`).join(''), 'utf8');
}

/** Runs a batch; returns the answers of the `getopq` operations, in order. */
export async function runOverlayHelper(ops: readonly HelperOp[]): Promise<string[]> {
  if (ops.length === 0) return [];
  const numbers = syscallTables[process.arch];
  if (numbers === undefined) {
    throw new StratumError(
      'UNSUPPORTED',
      `the overlay snapshotter does not know ${process.arch}'s system calls`,
    );
  }
  return new Promise<string[]>((resolve, reject) => {
    const child = spawn('perl', ['-e', program, ...numbers.map(String)], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
    });
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString('utf8')));
    child.on('error', (error) => {
      reject(
        errnoCode(error) === 'ENOENT'
          ? new StratumError('UNSUPPORTED', 'the overlay snapshotter needs perl (Debian package perl-base)')
          : error,
      );
    });
    child.on('close', (code) => {
      if (code !== 0) {
        const line = err.trim().split('\n').pop() ?? '';
        reject(new StratumError('IO', `overlay helper: ${line.replace(/^!/, '') || `exit ${code}`}`));
        return;
      }
      const text = Buffer.concat(out).toString('utf8');
      resolve(text === '' ? [] : text.split('\0').slice(0, -1));
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(encode(ops));
  });
}
