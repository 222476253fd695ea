/**
 * Docker's default seccomp profile as data: which system calls a container may make, and under
 * which conditions. Transcribed from moby/moby `profiles/seccomp/default.json` (commit 00f3d18,
 * the profile Docker 28 gives every container; Docker 20.10's differs only in syscalls added since).
 * `./seccomp.ts` compiles it into the BPF program the kernel runs.
 *
 * Semantics, as moby applies the profile: a rule is used only if the capabilities it `requires`
 * are all in the step's set, none it `excludes` is, and the host architecture is one it names;
 * rules with argument conditions are tried before plain ones, in this order; the first that
 * matches decides; a call no rule decides gets `defaultErrno`.
 */

/** An argument condition: `equals`/`notEquals` compare the whole 64-bit value; `maskedEquals` compares `(arg & mask) === value`. */
export type ArgCondition =
  | { readonly index: number; readonly op: 'equals' | 'notEquals'; readonly value: number }
  | { readonly index: number; readonly op: 'maskedEquals'; readonly mask: number; readonly value: number };

export interface SeccompRule {
  readonly names: readonly string[];
  /** `allow`, or fail the call with this errno. */
  readonly action: 'allow' | { readonly errno: number };
  readonly args?: readonly ArgCondition[];
  /** Every one of these capabilities must be in the step's set. */
  readonly requiresCapabilities?: readonly number[];
  /** The rule is dropped when any of these is in the step's set. */
  readonly excludesCapabilities?: readonly number[];
  /** Docker's architecture names (amd64, arm64, ...); the host's must be among them. */
  readonly arches?: readonly string[];
  readonly excludesArches?: readonly string[];
  /** `major.minor`: the running kernel must be at least this. */
  readonly minKernel?: string;
}

export interface SeccompProfile {
  /** What a call no rule decides gets: this errno, or `allow` (a filter that only refuses its rules). */
  readonly defaultErrno: number | 'allow';
  readonly rules: readonly SeccompRule[];
}

const EPERM = 1;
const ENOSYS = 38;

// Capability numbers (linux/capability.h) the profile refers to.
const CAP_DAC_READ_SEARCH = 2;
const CAP_SYS_MODULE = 16;
const CAP_SYS_RAWIO = 17;
const CAP_SYS_CHROOT = 18;
const CAP_SYS_PTRACE = 19;
const CAP_SYS_PACCT = 20;
const CAP_SYS_ADMIN = 21;
const CAP_SYS_BOOT = 22;
const CAP_SYS_NICE = 23;
const CAP_SYS_TIME = 25;
const CAP_SYS_TTY_CONFIG = 26;
const CAP_SYSLOG = 34;
const CAP_PERFMON = 38;
const CAP_BPF = 39;

/** Namespace flags of clone(2) (CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET | NEWTIME): 0x7E020000. */
const CLONE_NAMESPACE_FLAGS = 2114060288;

const allowed = `accept accept4 access adjtimex alarm bind brk capget capset chdir chmod chown chown32
clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime clock_gettime64
clock_nanosleep clock_nanosleep_time64 close close_range connect copy_file_range creat dup dup2
dup3 epoll_create epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait
epoll_wait_old eventfd eventfd2 execve execveat exit exit_group faccessat faccessat2 fadvise64
fadvise64_64 fallocate fanotify_mark fchdir fchmod fchmodat fchown fchown32 fchownat fcntl fcntl64
fdatasync fgetxattr flistxattr flock fork fremovexattr fsetxattr fstat fstat64 fstatat64 fstatfs
fstatfs64 fsync ftruncate ftruncate64 futex futex_time64 futex_waitv futimesat getcpu getcwd
getdents getdents64 getegid getegid32 geteuid geteuid32 getgid getgid32 getgroups getgroups32
getitimer getpeername getpgid getpgrp getpid getppid getpriority getrandom getresgid getresgid32
getresuid getresuid32 getrlimit get_robust_list getrusage getsid getsockname getsockopt
get_thread_area gettid gettimeofday getuid getuid32 getxattr inotify_add_watch inotify_init
inotify_init1 inotify_rm_watch io_cancel ioctl io_destroy io_getevents io_pgetevents
io_pgetevents_time64 ioprio_get ioprio_set io_setup io_submit io_uring_enter io_uring_register
io_uring_setup ipc kill landlock_add_rule landlock_create_ruleset landlock_restrict_self lchown
lchown32 lgetxattr link linkat listen listxattr llistxattr _llseek lremovexattr lseek lsetxattr
lstat lstat64 madvise membarrier memfd_create memfd_secret mincore mkdir mkdirat mknod mknodat
mlock mlock2 mlockall mmap mmap2 mprotect mq_getsetattr mq_notify mq_open mq_timedreceive
mq_timedreceive_time64 mq_timedsend mq_timedsend_time64 mq_unlink mremap msgctl msgget msgrcv
msgsnd msync munlock munlockall munmap name_to_handle_at nanosleep newfstatat _newselect open
openat openat2 pause pidfd_open pidfd_send_signal pipe pipe2 pkey_alloc pkey_free pkey_mprotect
poll ppoll ppoll_time64 prctl pread64 preadv preadv2 prlimit64 process_mrelease pselect6
pselect6_time64 pwrite64 pwritev pwritev2 read readahead readlink readlinkat readv recv recvfrom
recvmmsg recvmmsg_time64 recvmsg remap_file_pages removexattr rename renameat renameat2
restart_syscall rmdir rseq rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn
rt_sigsuspend rt_sigtimedwait rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_getaffinity
sched_getattr sched_getparam sched_get_priority_max sched_get_priority_min sched_getscheduler
sched_rr_get_interval sched_rr_get_interval_time64 sched_setaffinity sched_setattr sched_setparam
sched_setscheduler sched_yield seccomp select semctl semget semop semtimedop semtimedop_time64
send sendfile sendfile64 sendmmsg sendmsg sendto setfsgid setfsgid32 setfsuid setfsuid32 setgid
setgid32 setgroups setgroups32 setitimer setpgid setpriority setregid setregid32 setresgid
setresgid32 setresuid setresuid32 setreuid setreuid32 setrlimit set_robust_list setsid setsockopt
set_thread_area set_tid_address setuid setuid32 setxattr shmat shmctl shmdt shmget shutdown
sigaltstack signalfd signalfd4 sigprocmask sigreturn socketcall socketpair splice stat stat64
statfs statfs64 statx symlink symlinkat sync sync_file_range syncfs sysinfo tee tgkill time
timer_create timer_delete timer_getoverrun timer_gettime timer_gettime64 timer_settime
timer_settime64 timerfd_create timerfd_gettime timerfd_gettime64 timerfd_settime
timerfd_settime64 times tkill truncate truncate64 ugetrlimit umask uname unlink unlinkat utime
utimensat utimensat_time64 utimes vfork vmsplice wait4 waitid waitpid write writev`;

const words = (list: string): string[] => list.split(/\s+/).filter((word) => word !== '');

export const dockerDefaultProfile: SeccompProfile = {
  defaultErrno: EPERM,
  rules: [
    { names: words(allowed), action: 'allow' },
    { names: ['process_vm_readv', 'process_vm_writev', 'ptrace'], action: 'allow', minKernel: '4.8' },
    // AF_VSOCK (40) is refused.
    { names: ['socket'], action: 'allow', args: [{ index: 0, op: 'notEquals', value: 40 }] },
    // personality(2): only the usual domains (PER_LINUX, PER_LINUX32, UNAME26 variants, query).
    ...[0, 8, 131072, 131080, 4294967295].map((value): SeccompRule => ({
      names: ['personality'],
      action: 'allow',
      args: [{ index: 0, op: 'equals', value }],
    })),
    { names: ['sync_file_range2', 'swapcontext'], action: 'allow', arches: ['ppc64le'] },
    {
      names: [
        'arm_fadvise64_64',
        'arm_sync_file_range',
        'sync_file_range2',
        'breakpoint',
        'cacheflush',
        'set_tls',
      ],
      action: 'allow',
      arches: ['arm', 'arm64'],
    },
    { names: ['arch_prctl'], action: 'allow', arches: ['amd64', 'x32'] },
    { names: ['modify_ldt'], action: 'allow', arches: ['amd64', 'x32', 'x86'] },
    {
      names: ['s390_pci_mmio_read', 's390_pci_mmio_write', 's390_runtime_instr'],
      action: 'allow',
      arches: ['s390', 's390x'],
    },
    { names: ['riscv_flush_icache'], action: 'allow', arches: ['riscv64'] },
    { names: ['open_by_handle_at'], action: 'allow', requiresCapabilities: [CAP_DAC_READ_SEARCH] },
    {
      names: words(`bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick lookup_dcookie mount
        mount_setattr move_mount open_tree perf_event_open quotactl quotactl_fd setdomainname
        sethostname setns syslog umount umount2 unshare`),
      action: 'allow',
      requiresCapabilities: [CAP_SYS_ADMIN],
    },
    // Without CAP_SYS_ADMIN, clone(2) may not make namespaces.
    {
      names: ['clone'],
      action: 'allow',
      args: [{ index: 0, op: 'maskedEquals', mask: CLONE_NAMESPACE_FLAGS, value: 0 }],
      excludesCapabilities: [CAP_SYS_ADMIN],
      excludesArches: ['s390', 's390x'],
    },
    {
      names: ['clone'],
      action: 'allow',
      args: [{ index: 1, op: 'maskedEquals', mask: CLONE_NAMESPACE_FLAGS, value: 0 }],
      arches: ['s390', 's390x'],
      excludesCapabilities: [CAP_SYS_ADMIN],
    },
    // clone3's flags are behind a pointer, which seccomp cannot read: ENOSYS makes libc fall back to clone.
    { names: ['clone3'], action: { errno: ENOSYS }, excludesCapabilities: [CAP_SYS_ADMIN] },
    { names: ['reboot'], action: 'allow', requiresCapabilities: [CAP_SYS_BOOT] },
    { names: ['chroot'], action: 'allow', requiresCapabilities: [CAP_SYS_CHROOT] },
    {
      names: ['delete_module', 'init_module', 'finit_module'],
      action: 'allow',
      requiresCapabilities: [CAP_SYS_MODULE],
    },
    { names: ['acct'], action: 'allow', requiresCapabilities: [CAP_SYS_PACCT] },
    {
      names: ['kcmp', 'pidfd_getfd', 'process_madvise', 'process_vm_readv', 'process_vm_writev', 'ptrace'],
      action: 'allow',
      requiresCapabilities: [CAP_SYS_PTRACE],
    },
    { names: ['iopl', 'ioperm'], action: 'allow', requiresCapabilities: [CAP_SYS_RAWIO] },
    {
      names: ['settimeofday', 'stime', 'clock_settime', 'clock_settime64'],
      action: 'allow',
      requiresCapabilities: [CAP_SYS_TIME],
    },
    { names: ['vhangup'], action: 'allow', requiresCapabilities: [CAP_SYS_TTY_CONFIG] },
    {
      names: ['get_mempolicy', 'mbind', 'set_mempolicy', 'set_mempolicy_home_node'],
      action: 'allow',
      requiresCapabilities: [CAP_SYS_NICE],
    },
    { names: ['syslog'], action: 'allow', requiresCapabilities: [CAP_SYSLOG] },
    { names: ['bpf'], action: 'allow', requiresCapabilities: [CAP_BPF] },
    { names: ['perf_event_open'], action: 'allow', requiresCapabilities: [CAP_PERFMON] },
  ],
};

/**
 * Under proot (./proot.ts), what takes a path past proot's translation is refused with ENOSYS, so
 * that libc and libuv fall back to the calls proot rewrites: Debian bookworm's proot 5.1 does not
 * know statx, faccessat2, openat2 or fchmodat2 (a statx of /usr/local/bin/npm looked in the
 * container, not the rootfs, and `npm` could not find its own script), and io_uring's operations
 * never pass through a system call at all.
 */
export const pastProot: SeccompProfile = {
  defaultErrno: 'allow',
  rules: [
    {
      names: [
        'statx',
        'faccessat2',
        'openat2',
        'fchmodat2',
        'io_uring_setup',
        'io_uring_enter',
        'io_uring_register',
      ],
      action: { errno: ENOSYS },
    },
  ],
};

const S_IFMT = 0o170000;
const S_IFBLK = 0o060000;

/**
 * stratum's one addition: no block devices. Docker lets a container make any device node and
 * then refuses to open it through the device cgroup; stratum's steps run where no device cgroup
 * can be made (rootless, inside containers), so every mount a step sees is `nodev` and making a
 * block device fails with EPERM at once, which is what a step that tries learns under Docker
 * when it opens one.
 */
export const noBlockDevices: readonly SeccompRule[] = [
  {
    names: ['mknod'],
    action: { errno: EPERM },
    args: [{ index: 1, op: 'maskedEquals', mask: S_IFMT, value: S_IFBLK }],
  },
  {
    names: ['mknodat'],
    action: { errno: EPERM },
    args: [{ index: 2, op: 'maskedEquals', mask: S_IFMT, value: S_IFBLK }],
  },
];
