import { StratumError } from '../../errors.js';

/**
 * The step's first process, between `unshare` (which made the namespaces) and the command.
 * It forks PID 1 of the new PID namespace (a spare: before its step is known), which, still
 * with the host's root as `/`, performs a list of operations given on its command line (mounts,
 * hostname, loopback, pivot_root, capability bounding set, uid/gid/groups), then execs the
 * command, which so becomes PID 1 as in Docker.
 *
 * Why Perl: the last stretch (chroot-like pivot, chdir to WORKDIR, setgroups with the user's
 * supplementary groups, setresgid/setresuid, exec with the step's PATH) must happen in ONE
 * process that starts on the host and ends inside the rootfs, because nothing inside an image can
 * be assumed to exist. No util-linux tool does all of it (`unshare --root --wd --setuid` clears
 * the supplementary groups, coreutils `chroot --groups` cannot set the working directory, bwrap
 * cannot switch to a non-root uid without a user namespace that maps it to the caller), and perl
 * is Essential in Debian (perl-base), starts in about 2 ms, and can issue raw system calls, so the
 * dozen mounts cost no extra processes either.
 *
 * Status protocol on fd 3: "+" once perl runs inside the namespaces; ">" when the setup is done
 * and the command is about to be exec'd; "!message" when the setup or the exec failed (the child
 * then exits 125), after "!E2BIG" when the exec failed for the size of the command and
 * environment; "=E<code>" or "=S<signal>" with PID 1's wait status when it ended. The child's
 * copy of fd 3 is close-on-exec: the command never sees it.
 *
 * The operations (encodeOps, NUL-separated) come on fd 5, not the command line: the step's argv
 * and environment are among them, and on the command line of setpriv they would meet the
 * kernel's limits for exec there, as a spawn error, rather than at the step's own exec, where
 * Docker meets them.
 */
export const initProgram = String.raw`
my @nr = map { 0 + $_ } splice(@ARGV, 0, 10);
my ($NR_mount, $NR_umount2, $NR_pivot, $NR_sethostname, $NR_prctl, $NR_setgroups, $NR_setresgid, $NR_setresuid, $NR_unshare, $NR_setns) = @nr;
my $CLONE_NEWPID = 0x20000000;
# A spare (spare-init.ts) makes its PID namespace and forks that namespace's PID 1 while it
# waits, off the step's path: a PID namespace does not depend on the step, unlike the mount
# namespace, which must copy the step's rootfs, mounted later.
my $early = (@ARGV && $ARGV[0] eq 'early-pid-namespace') ? shift(@ARGV) : '';
open(my $st, '>&=', 3) or exit 125;
sub fail { my $m = "$_[0]: $!"; syswrite($st, "!$m\n"); exit 125 }
# unshare ran without --fork: this process is outside the new PID namespace and its first child
# is PID 1 inside. The parent only waits and reports the child's exact wait status on fd 3
# (unshare itself reports a child killed by SIGKILL as exit 1). It keeps no copy of the step's
# output pipes, so they end with the step's last process and the step's end does not wait for
# this one's exit. Returns in the child only.
sub fork_pid1 {
  my $child = fork();
  if (!defined($child)) { syswrite($st, "!fork: $!\n"); exit 125 }
  if ($child) {
    close(STDIN);
    close(STDOUT);
    close(STDERR);
    waitpid($child, 0);
    my $status = $?;
    syswrite($st, ($status & 127) ? '=S' . ($status & 127) . "\n" : '=E' . ($status >> 8) . "\n");
    exit 0;
  }
  # Die with the parent (abort kills it), and with it the whole PID namespace.
  syscall($NR_prctl, 1, 9, 0, 0, 0);
}
if ($early) {
  syscall($NR_unshare, $CLONE_NEWPID) == 0 or fail('unshare a PID namespace');
  fork_pid1();
}
{
  open(my $opsin, '<&=', 5) or exit 125;
  binmode($opsin);
  local $/;
  my $words = <$opsin>;
  close($opsin);
  @ARGV = split(/\0/, defined($words) ? $words : '', -1);
}
# No operations: a spare init (spare-init.ts) whose build ended before a step took it.
exit 0 unless @ARGV;
# A spare init was started before its step was known: it makes the step's namespaces now, as
# unshare(1) would have (join the private network namespace first, as nsenter did; then the new
# namespaces; then mount propagation private, unshare's default).
if ($ARGV[0] eq 'namespaces') {
  my (undef, $flags, $netns) = splice(@ARGV, 0, 3);
  if ($netns ne '') {
    open(my $nsf, '<', $netns) or fail("open $netns");
    syscall($NR_setns, fileno($nsf), 0x40000000) == 0 or fail("join the network namespace $netns");
    close($nsf);
  }
  # An early spare is PID 1 of its PID namespace already.
  syscall($NR_unshare, $early ? ($flags & ~$CLONE_NEWPID) : (0 + $flags)) == 0 or fail('unshare');
  my ($none, $slash) = ('none', '/');
  syscall($NR_mount, $none, $slash, 0, 16384 | 262144, 0) == 0 or fail('make / private');
}
syswrite($st, "+");
fork_pid1() unless $early;
fcntl($st, 2, 1);
# fd 4 carries the secrets' bytes (see 'write'); the command never sees it either.
open(my $secrets, '<&=', 4) or fail('open the secret pipe');
fcntl($secrets, 2, 1);
# syscall() passes a number as an integer and anything else as a pointer to a (writable) string:
# copy every argument into a lexical, and pass a literal 0 for NULL.
sub mnt {
  my ($src, $t, $type, $flags, $data) = @_;
  syscall($NR_mount, defined($src) ? $src : 0, $t, defined($type) ? $type : 0, 0 + $flags, defined($data) ? $data : 0) == 0;
}
# Adds flags (MS_RDONLY 1, MS_NODEV 4) to a bind mount. In a user namespace the remount must keep
# the flags the kernel locked on the source mount: try with none, then with nosuid+nodev(+noexec).
sub remount {
  my ($t, $flags) = @_;
  for my $extra (0, 2 | 4, 2 | 4 | 8) { return 1 if mnt(undef, $t, undef, 4096 | 32 | $flags | $extra, undef) }
  return 0;
}
sub remount_ro { return remount($_[0], 1) }
while (@ARGV) {
  my $op = shift @ARGV;
  if ($op eq 'bind') {
    my ($src, $t, $flags) = splice(@ARGV, 0, 3);
    mnt($src, $t, undef, 4096 | 16384, undef) or fail("bind $src on $t");
    if ($flags) { remount($t, 0 + $flags) or fail("remount $t with flags $flags") }
  } elsif ($op eq 'mask') {
    # runc's maskedPaths: a directory is covered by an empty read-only tmpfs, a file by /dev/null.
    my $t = shift @ARGV;
    if (-d $t) { mnt('tmpfs', $t, 'tmpfs', 1, undef) or fail("mask $t") }
    elsif (-e $t) { mnt('/dev/null', $t, undef, 4096, undef) or fail("mask $t") }
  } elsif ($op eq 'readonly') {
    # runc's readonlyPaths: bound onto itself, then read-only.
    my $t = shift @ARGV;
    if (-e $t) {
      mnt($t, $t, undef, 4096 | 16384, undef) or fail("bind $t read-only");
      # Keep procfs's nosuid, nodev, noexec (runc does): ro plus those.
      remount($t, 1 | 2 | 4 | 8) or fail("remount $t read-only");
    }
  } elsif ($op eq 'seccomp') {
    # PR_SET_SECCOMP (22), SECCOMP_MODE_FILTER (2), struct sock_fprog { u16 len; filter * }. Still
    # with CAP_SYS_ADMIN in this namespace, so no_new_privs is not needed (Docker does not set it).
    my $filter = pack('H*', shift @ARGV);
    my $fprog = pack('S x![P] P', length($filter) / 8, $filter);
    syscall($NR_prctl, 22, 2, $fprog, 0, 0) == 0 or fail('install the seccomp filter');
  } elsif ($op eq 'fs') {
    my ($type, $t, $flags, $data) = splice(@ARGV, 0, 4);
    mnt($type, $t, $type, $flags, $data) or fail("mount $type on $t");
  } elsif ($op eq 'proc') {
    my $t = shift @ARGV;
    unless (mnt('proc', $t, 'proc', 2 | 4 | 8, undef)) {
      # Inside a container, Docker's masks over parts of /proc forbid a new procfs ("not fully
      # visible"): bind the container's own, masks included, as BuildKit's
      # --oci-worker-no-process-sandbox does. The step's PID namespace still has its own pids.
      mnt('/proc', $t, undef, 4096 | 16384, undef) or fail("mount proc on $t");
    }
  } elsif ($op eq 'sysfs') {
    my $t = shift @ARGV;
    unless (mnt('sysfs', $t, 'sysfs', 1 | 2 | 4 | 8, undef)) {
      # A user namespace may mount sysfs only with its own network namespace: bind the host's.
      mnt('/sys', $t, undef, 4096 | 16384, undef) or fail("bind /sys on $t");
      remount_ro($t) or fail("remount $t read-only");
    }
  } elsif ($op eq 'mkdir') {
    my ($p, $mode) = splice(@ARGV, 0, 2);
    mkdir($p, oct($mode)) or fail("mkdir $p");
    chmod(oct($mode), $p) or fail("chmod $p");
  } elsif ($op eq 'write') {
    # The next LENGTH bytes of the secret pipe, into a new file of the namespace's own tmpfs.
    my ($p, $mode, $length) = splice(@ARGV, 0, 3);
    my $data = '';
    while (length($data) < $length) {
      my $n = sysread($secrets, $data, $length - length($data), length($data));
      fail("read the secret for $p") unless $n;
    }
    open(my $fh, '>', $p) or fail("create $p");
    binmode($fh);
    print $fh $data or fail("write $p");
    close($fh) or fail("write $p");
    chmod(oct($mode), $p) or fail("chmod $p");
  } elsif ($op eq 'chown') {
    my ($p, $uid, $gid) = splice(@ARGV, 0, 3);
    chown(0 + $uid, 0 + $gid, $p) or fail("chown $uid:$gid $p");
  } elsif ($op eq 'file') {
    my $p = shift @ARGV;
    open(my $fh, '>', $p) or fail("create $p");
    close($fh);
  } elsif ($op eq 'symlink') {
    my ($to, $p) = splice(@ARGV, 0, 2);
    symlink($to, $p) or fail("symlink $p");
  } elsif ($op eq 'hostname') {
    my $h = shift @ARGV;
    syscall($NR_sethostname, $h, length($h)) == 0 or fail("sethostname $h");
  } elsif ($op eq 'lo') {
    socket(my $s, 2, 2, 0) or fail('socket');
    my $ifr = pack('a16 x24', 'lo');
    ioctl($s, 0x8913, $ifr) or fail('SIOCGIFFLAGS lo');
    my $flags = unpack('x16 s', $ifr) | 1;
    $ifr = pack('a16 s x22', 'lo', $flags);
    ioctl($s, 0x8914, $ifr) or fail('bring lo up');
    close($s);
  } elsif ($op eq 'pivot') {
    # pivot_root(".", ".") stacks the old root on the new one; detaching it leaves only the
    # rootfs (runc's trick: no put_old directory has to be created in the rootfs).
    my $root = shift @ARGV;
    chdir($root) or fail("chdir $root");
    my ($new, $old) = ('.', '.');
    syscall($NR_pivot, $new, $old) == 0 or fail('pivot_root');
    syscall($NR_umount2, $old, 2) == 0 or fail('detach the old root');
    chdir('/') or fail('chdir /');
  } elsif ($op eq 'caps') {
    my %keep = map { $_ => 1 } split(/,/, shift @ARGV);
    my $last = 40;
    if (open(my $fh, '<', '/proc/sys/kernel/cap_last_cap')) { $last = 0 + <$fh>; close($fh) }
    for my $c (0 .. $last) {
      next if $keep{$c};
      syscall($NR_prctl, 24, $c, 0, 0, 0) == 0 or fail("drop capability $c");
    }
  } elsif ($op eq 'creds') {
    my ($uid, $gid, $groups, $n) = map { 0 + $_ } splice(@ARGV, 0, 4);
    my @g = map { 0 + $_ } splice(@ARGV, 0, $n);
    if ($groups) {
      my $list = pack('L*', @g);
      syscall($NR_setgroups, scalar(@g), @g ? $list : 0) == 0 or fail('setgroups');
    }
    syscall($NR_setresgid, $gid, $gid, $gid) == 0 or fail("setgid $gid");
    syscall($NR_setresuid, $uid, $uid, $uid) == 0 or fail("setuid $uid");
    # A change of uid clears the parent-death signal: arm it again so that killing unshare
    # (abort) still kills this process, and with it the whole PID namespace.
    syscall($NR_prctl, 1, 9, 0, 0, 0) == 0 or fail('PR_SET_PDEATHSIG');
  } elsif ($op eq 'exec') {
    my $cwd = shift @ARGV;
    my $n = 0 + shift @ARGV;
    my @env = splice(@ARGV, 0, $n);
    my @argv = @ARGV;
    @ARGV = ();
    chdir($cwd) or fail("chdir $cwd");
    # runc's default: whatever umask stratum itself runs with, the step sees 0022.
    umask(022);
    %ENV = ();
    for my $kv (@env) { my ($k, $v) = split(/=/, $kv, 2); $ENV{$k} = defined($v) ? $v : '' }
    syswrite($st, ">\n");
    { no warnings; exec { $argv[0] } @argv; }
    syswrite($st, "!E2BIG\n") if $! == 7;
    fail("exec $argv[0]");
  } else {
    $! = 22;
    fail("unknown operation $op");
  }
}
`;

/** What the init performs, in order. Paths are host paths until `pivot`, rootfs paths after. */
export type InitOp =
  | {
      readonly op: 'bind';
      readonly source: string;
      readonly target: string;
      readonly readonly: boolean;
      /** nodev: device nodes under it cannot be opened (every mount a step sees but the device binds). */
      readonly nodev?: boolean;
    }
  | { readonly op: 'mask'; readonly path: string }
  | { readonly op: 'readonly'; readonly path: string }
  | { readonly op: 'seccomp'; readonly filter: Buffer }
  | {
      readonly op: 'fs';
      readonly fstype: string;
      readonly target: string;
      readonly flags: number;
      readonly data: string;
    }
  | { readonly op: 'proc'; readonly target: string }
  | { readonly op: 'sysfs'; readonly target: string }
  | { readonly op: 'mkdir'; readonly path: string; readonly mode: number }
  /** A file made of the next `length` bytes of the secret pipe (fd 4). */
  | { readonly op: 'write'; readonly path: string; readonly mode: number; readonly length: number }
  | { readonly op: 'file'; readonly path: string }
  | { readonly op: 'chown'; readonly path: string; readonly uid: number; readonly gid: number }
  | { readonly op: 'symlink'; readonly target: string; readonly path: string }
  | { readonly op: 'hostname'; readonly name: string }
  | { readonly op: 'lo' }
  | { readonly op: 'pivot'; readonly root: string }
  | { readonly op: 'caps'; readonly keep: readonly number[] }
  | {
      readonly op: 'creds';
      readonly uid: number;
      readonly gid: number;
      readonly setGroups: boolean;
      readonly groups: readonly number[];
    }
  | {
      readonly op: 'exec';
      readonly cwd: string;
      readonly env: readonly string[];
      readonly argv: readonly string[];
    };

const MS_RDONLY = 1;
const MS_NODEV = 4;

export function encodeOps(ops: readonly InitOp[]): string[] {
  const words: string[] = [];
  for (const op of ops) {
    switch (op.op) {
      case 'bind': {
        const flags = (op.readonly ? MS_RDONLY : 0) | (op.nodev === true ? MS_NODEV : 0);
        words.push('bind', op.source, op.target, flags === 0 ? '' : String(flags));
        break;
      }
      case 'mask':
        words.push('mask', op.path);
        break;
      case 'readonly':
        words.push('readonly', op.path);
        break;
      case 'seccomp':
        words.push('seccomp', op.filter.toString('hex'));
        break;
      case 'fs':
        words.push('fs', op.fstype, op.target, String(op.flags), op.data);
        break;
      case 'proc':
        words.push('proc', op.target);
        break;
      case 'sysfs':
        words.push('sysfs', op.target);
        break;
      case 'mkdir':
        words.push('mkdir', op.path, op.mode.toString(8));
        break;
      case 'file':
        words.push('file', op.path);
        break;
      case 'write':
        words.push('write', op.path, op.mode.toString(8), String(op.length));
        break;
      case 'chown':
        words.push('chown', op.path, String(op.uid), String(op.gid));
        break;
      case 'symlink':
        words.push('symlink', op.target, op.path);
        break;
      case 'hostname':
        words.push('hostname', op.name);
        break;
      case 'lo':
        words.push('lo');
        break;
      case 'pivot':
        words.push('pivot', op.root);
        break;
      case 'caps':
        words.push('caps', op.keep.join(','));
        break;
      case 'creds':
        words.push(
          'creds',
          String(op.uid),
          String(op.gid),
          op.setGroups ? '1' : '0',
          String(op.groups.length),
        );
        words.push(...op.groups.map(String));
        break;
      case 'exec':
        words.push('exec', op.cwd, String(op.env.length), ...op.env, ...op.argv);
        break;
    }
  }
  return words;
}

/** Linux system call numbers the init needs, in the order it expects them. */
const syscallTables: Readonly<Partial<Record<NodeJS.Architecture, readonly number[]>>> = {
  // mount, umount2, pivot_root, sethostname, prctl, setgroups, setresgid, setresuid, unshare, setns
  x64: [165, 166, 155, 170, 157, 116, 119, 117, 272, 308],
  // the asm-generic table
  arm64: [40, 39, 41, 161, 167, 159, 149, 147, 97, 268],
  riscv64: [40, 39, 41, 161, 167, 159, 149, 147, 97, 268],
  loong64: [40, 39, 41, 161, 167, 159, 149, 147, 97, 268],
};

export function syscallNumbers(arch: NodeJS.Architecture = process.arch): string[] {
  const table = syscallTables[arch];
  if (table === undefined) {
    throw new StratumError(
      'UNSUPPORTED',
      `RUN isolation supports x64, arm64, riscv64 and loong64 Linux; this machine is ${arch}`,
    );
  }
  return table.map(String);
}

/** Docker's default capability set for containers (moby's caps.DefaultCapabilities). */
export const dockerDefaultCapabilities: readonly number[] = [
  0, // CHOWN
  1, // DAC_OVERRIDE
  3, // FOWNER
  4, // FSETID
  5, // KILL
  6, // SETGID
  7, // SETUID
  8, // SETPCAP
  10, // NET_BIND_SERVICE
  13, // NET_RAW
  18, // SYS_CHROOT
  27, // MKNOD
  29, // AUDIT_WRITE
  31, // SETFCAP
];
