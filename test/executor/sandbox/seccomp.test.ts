import { describe, expect, it } from 'vitest';
import { dockerDefaultCapabilities } from '../../../src/executor/sandbox/init.js';
import { compileSeccomp } from '../../../src/executor/sandbox/seccomp.js';
import { dockerDefaultProfile, noBlockDevices } from '../../../src/executor/sandbox/seccomp-profile.js';
import { syscallNumbersByName } from '../../../src/executor/sandbox/syscall-numbers.js';

// The compiled filter run through a classic-BPF interpreter of the few instructions the compiler
// emits, on struct seccomp_data as the kernel fills it: what the kernel would answer a call.
const ALLOW = 0x7fff0000;
const KILL_PROCESS = 0x80000000;
const errno = (value: number): number => 0x00050000 | value;
const EPERM = 1;
const ENOSYS = 38;
const AUDIT_ARCH_X86_64 = 0xc000003e;
const AUDIT_ARCH_I386 = 0x40000003;
const AUDIT_ARCH_ARM = 0x40000028;

function run(filter: Buffer, arch: number, nr: number, args: readonly number[] = []): number {
  const data = Buffer.alloc(64);
  data.writeUInt32LE(nr >>> 0, 0);
  data.writeUInt32LE(arch >>> 0, 4);
  args.forEach((value, index) => data.writeBigUInt64LE(BigInt(value), 16 + 8 * index));
  let accumulator = 0;
  for (let pc = 0, steps = 0; pc * 8 < filter.length; pc++, steps++) {
    expect(steps).toBeLessThan(4096);
    const code = filter.readUInt16LE(pc * 8);
    const whenTrue = filter.readUInt8(pc * 8 + 2);
    const whenFalse = filter.readUInt8(pc * 8 + 3);
    const k = filter.readUInt32LE(pc * 8 + 4);
    switch (code) {
      case 0x20: // ld [k]
        accumulator = data.readUInt32LE(k);
        break;
      case 0x54: // and #k
        accumulator = (accumulator & k) >>> 0;
        break;
      case 0x05: // ja
        pc += k;
        break;
      case 0x15: // jeq #k
        pc += accumulator === k ? whenTrue : whenFalse;
        break;
      case 0x35: // jge #k
        pc += accumulator >= k ? whenTrue : whenFalse;
        break;
      case 0x06: // ret #k
        return k;
      default:
        throw new Error(`unexpected instruction ${code.toString(16)} at ${pc}`);
    }
  }
  throw new Error('fell off the end of the program');
}

describe('compileSeccomp: Docker default profile for x86-64', () => {
  const filter = compileSeccomp(
    { ...dockerDefaultProfile, rules: [...noBlockDevices, ...dockerDefaultProfile.rules] },
    { capabilities: dockerDefaultCapabilities, arch: 'x64', kernel: '6.1.0' },
  );
  const x64 = syscallNumbersByName.x64;
  const ia32 = syscallNumbersByName.ia32;
  const call = (name: string, args: readonly number[] = []): number =>
    run(filter, AUDIT_ARCH_X86_64, x64[name]!, args);

  it('is a whole number of instructions within the kernel limit', () => {
    expect(filter.length % 8).toBe(0);
    expect(filter.length / 8).toBeGreaterThan(100);
    expect(filter.length / 8).toBeLessThanOrEqual(4096);
  });

  it('allows the ordinary calls and refuses what needs CAP_SYS_ADMIN', () => {
    for (const name of ['read', 'write', 'openat', 'execve', 'exit_group', 'futex', 'statx'])
      expect(call(name), name).toBe(ALLOW);
    for (const name of ['mount', 'umount2', 'unshare', 'setns', 'pivot_root', 'bpf', 'reboot'])
      expect(call(name), name).toBe(errno(EPERM));
  });

  it('tests arguments: clone without namespace flags, socket but not AF_VSOCK, personality', () => {
    expect(call('clone', [0x11])).toBe(ALLOW); // SIGCHLD | CLONE_VM-free fork
    expect(call('clone', [0x10000000])).toBe(errno(EPERM)); // CLONE_NEWUSER
    expect(call('clone', [0x20000000 | 0x11])).toBe(errno(EPERM)); // CLONE_NEWPID
    expect(call('clone3')).toBe(errno(ENOSYS));
    expect(call('socket', [2])).toBe(ALLOW); // AF_INET
    expect(call('socket', [40])).toBe(errno(EPERM)); // AF_VSOCK
    expect(call('socket', [2 ** 32 + 40])).toBe(ALLOW); // not 40 as a 64-bit value
    expect(call('personality', [0])).toBe(ALLOW);
    expect(call('personality', [0xffffffff])).toBe(ALLOW);
    expect(call('personality', [1])).toBe(errno(EPERM));
  });

  it('refuses block devices from mknod but allows other nodes', () => {
    expect(call('mknod', [0, 0o060000 | 0o644])).toBe(errno(EPERM)); // S_IFBLK
    expect(call('mknod', [0, 0o020000 | 0o644])).toBe(ALLOW); // S_IFCHR
    expect(call('mknodat', [0, 0, 0o060000])).toBe(errno(EPERM));
    expect(call('mknodat', [0, 0, 0o010000])).toBe(ALLOW); // FIFO
  });

  it('answers the i386 table by its own numbers, refuses x32 and kills foreign ABIs', () => {
    expect(run(filter, AUDIT_ARCH_I386, ia32['read']!)).toBe(ALLOW);
    expect(run(filter, AUDIT_ARCH_I386, ia32['mount']!)).toBe(errno(EPERM));
    expect(run(filter, AUDIT_ARCH_X86_64, 0x40000000 | x64['read']!)).toBe(errno(EPERM));
    expect(run(filter, AUDIT_ARCH_ARM, 3)).toBe(KILL_PROCESS);
  });

  it('gives every unknown number the default errno', () => {
    expect(run(filter, AUDIT_ARCH_X86_64, 0x3fff)).toBe(errno(EPERM));
  });

  it('is the same bytes every time (nothing depends on order of evaluation)', () => {
    const again = compileSeccomp(
      { ...dockerDefaultProfile, rules: [...noBlockDevices, ...dockerDefaultProfile.rules] },
      { capabilities: dockerDefaultCapabilities, arch: 'x64', kernel: '6.1.0' },
    );
    expect(again.equals(filter)).toBe(true);
  });
});
