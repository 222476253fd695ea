import { release } from 'node:os';
import { StratumError } from '../../errors.js';
import type { ArgCondition, SeccompProfile, SeccompRule } from './seccomp-profile.js';
import { syscallNumbersByName } from './syscall-numbers.js';

/**
 * Compiles a seccomp profile (./seccomp-profile.ts) into a classic BPF program for
 * `prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER)`, as libseccomp does for runc: check the
 * architecture, find the system call by binary search over its number, then test that call's
 * rules in order. Instructions are 8 bytes each (struct sock_filter, host byte order).
 */

// struct seccomp_data: nr at 0, arch at 4, instruction pointer at 8, args[6] (u64) from 16.
const OFFSET_NR = 0;
const OFFSET_ARCH = 4;
const argLow = (index: number): number => 16 + 8 * index;
const argHigh = (index: number): number => 20 + 8 * index;

const LD_W_ABS = 0x20;
const ALU_AND_K = 0x54;
const JMP_JA = 0x05;
const JMP_JEQ_K = 0x15;
const JMP_JGE_K = 0x35;
const RET_K = 0x06;

const SECCOMP_RET_KILL_PROCESS = 0x80000000;
const SECCOMP_RET_ERRNO = 0x00050000;
const SECCOMP_RET_ALLOW = 0x7fff0000;
/** x32 system calls on x86-64 have this bit set; Docker's profile allows none of stratum's. */
const X32_SYSCALL_BIT = 0x40000000;

/** One system call table the filter answers for: the kernel's AUDIT_ARCH value and the numbers. */
interface FilterArch {
  readonly auditArch: number;
  readonly numbers: Readonly<Record<string, number>>;
  /** 32-bit ABIs pass 32-bit arguments: only the low word is compared. */
  readonly bits: 32 | 64;
  readonly rejectX32?: boolean;
}

/** Docker's name of the host architecture (what the profile's `arches` name) and its tables. */
const hostArches: Readonly<
  Partial<Record<NodeJS.Architecture, { readonly docker: string; readonly tables: readonly FilterArch[] }>>
> = {
  x64: {
    docker: 'amd64',
    tables: [
      { auditArch: 0xc000003e, numbers: syscallNumbersByName.x64, bits: 64, rejectX32: true },
      { auditArch: 0x40000003, numbers: syscallNumbersByName.ia32, bits: 32 },
    ],
  },
  arm64: {
    docker: 'arm64',
    tables: [{ auditArch: 0xc00000b7, numbers: syscallNumbersByName.generic, bits: 64 }],
  },
  riscv64: {
    docker: 'riscv64',
    tables: [{ auditArch: 0xc00000f3, numbers: syscallNumbersByName.generic, bits: 64 }],
  },
  loong64: {
    docker: 'loong64',
    tables: [{ auditArch: 0xc0000102, numbers: syscallNumbersByName.generic, bits: 64 }],
  },
};

export interface SeccompTarget {
  /** The capabilities the step keeps (its bounding set): rules are chosen by them, as moby does. */
  readonly capabilities: readonly number[];
  readonly arch?: NodeJS.Architecture;
  /** `uname -r`, for the profile's minKernel. */
  readonly kernel?: string;
}

/** The rules that apply for this capability set, architecture and kernel, argument rules first. */
export function applicableRules(
  rules: readonly SeccompRule[],
  dockerArch: string,
  target: SeccompTarget,
): SeccompRule[] {
  const kernel = target.kernel ?? release();
  const has = (cap: number): boolean => target.capabilities.includes(cap);
  const kept = rules.filter(
    (rule) =>
      (rule.requiresCapabilities ?? []).every(has) &&
      !(rule.excludesCapabilities ?? []).some(has) &&
      (rule.arches === undefined || rule.arches.includes(dockerArch)) &&
      !(rule.excludesArches ?? []).includes(dockerArch) &&
      (rule.minKernel === undefined || kernelAtLeast(kernel, rule.minKernel)),
  );
  return [
    ...kept.filter((rule) => rule.args !== undefined),
    ...kept.filter((rule) => rule.args === undefined),
  ];
}

function kernelAtLeast(running: string, wanted: string): boolean {
  const [major = 0, minor = 0] = running.split(/[.-]/).map(Number);
  const [wantMajor = 0, wantMinor = 0] = wanted.split('.').map(Number);
  return major > wantMajor || (major === wantMajor && minor >= wantMinor);
}

export function compileSeccomp(profile: SeccompProfile, target: SeccompTarget): Buffer {
  const arch = target.arch ?? process.arch;
  const host = hostArches[arch];
  if (host === undefined) {
    throw new StratumError(
      'UNSUPPORTED',
      `RUN's seccomp filter supports x64, arm64, riscv64 and loong64 Linux; this machine is ${arch}`,
    );
  }
  const rules = applicableRules(profile.rules, host.docker, target);
  const program = new Program();
  const defaultAction =
    profile.defaultErrno === 'allow' ? SECCOMP_RET_ALLOW : SECCOMP_RET_ERRNO | profile.defaultErrno;

  // Dispatch on the architecture; any other (a foreign ABI the kernel offers) ends the process.
  program.load(OFFSET_ARCH);
  const sections = host.tables.map(() => program.label());
  for (const [index, table] of host.tables.entries()) {
    const next = program.label();
    program.jump(JMP_JEQ_K, table.auditArch, undefined, next);
    program.always(sections[index]!);
    program.place(next);
  }
  program.ret(SECCOMP_RET_KILL_PROCESS);

  for (const [index, table] of host.tables.entries()) {
    program.place(sections[index]!);
    program.load(OFFSET_NR);
    if (table.rejectX32 === true) {
      const native = program.label();
      program.jump(JMP_JGE_K, X32_SYSCALL_BIT, undefined, native);
      program.ret(defaultAction);
      program.place(native);
    }
    const byNumber = new Map<number, SeccompRule[]>();
    for (const rule of rules) {
      for (const name of rule.names) {
        const nr = table.numbers[name];
        if (nr === undefined) continue; // not a system call of this architecture, as libseccomp skips it
        const list = byNumber.get(nr) ?? [];
        if (!list.includes(rule)) list.push(rule);
        byNumber.set(nr, list);
      }
    }
    const numbers = [...byNumber.keys()].sort((a, b) => a - b);
    searchTree(program, numbers, byNumber, table.bits, defaultAction);
  }
  return program.assemble();
}

/** Binary search on the number in the accumulator; each leaf holds one call's rule block. */
function searchTree(
  program: Program,
  numbers: readonly number[],
  byNumber: ReadonlyMap<number, readonly SeccompRule[]>,
  bits: 32 | 64,
  defaultAction: number,
): void {
  if (numbers.length <= 4) {
    for (const nr of numbers) {
      const next = program.label();
      program.jump(JMP_JEQ_K, nr, undefined, next);
      ruleBlock(program, byNumber.get(nr)!, bits, defaultAction);
      program.place(next);
    }
    program.ret(defaultAction);
    return;
  }
  const middle = Math.floor(numbers.length / 2);
  const upper = program.label();
  const lower = program.label();
  // Conditional jumps reach 255 instructions at most: go to the upper half with `ja`.
  program.jump(JMP_JGE_K, numbers[middle]!, undefined, lower);
  program.always(upper);
  program.place(lower);
  searchTree(program, numbers.slice(0, middle), byNumber, bits, defaultAction);
  program.place(upper);
  searchTree(program, numbers.slice(middle), byNumber, bits, defaultAction);
}

/** The rules of one call in order: the first whose conditions all hold returns its action. */
function ruleBlock(
  program: Program,
  rules: readonly SeccompRule[],
  bits: 32 | 64,
  defaultAction: number,
): void {
  for (const rule of rules) {
    const action = rule.action === 'allow' ? SECCOMP_RET_ALLOW : SECCOMP_RET_ERRNO | rule.action.errno;
    if (rule.args === undefined || rule.args.length === 0) {
      program.ret(action);
      return; // later rules for this call can never be reached
    }
    const nextRule = program.label();
    for (const condition of rule.args) argCondition(program, condition, bits, nextRule);
    program.ret(action);
    program.place(nextRule);
    // The accumulator held an argument: reload nothing, every path from here loads what it needs.
  }
  program.ret(defaultAction);
}

/** Falls through when the condition holds, jumps to `fail` when it does not. */
function argCondition(program: Program, condition: ArgCondition, bits: 32 | 64, fail: Label): void {
  if (!Number.isSafeInteger(condition.value) || condition.value < 0) {
    throw new Error(`seccomp: argument value ${condition.value} is not a non-negative safe integer`);
  }
  const high = (value: number): number => Math.floor(value / 2 ** 32) >>> 0;
  const low = (value: number): number => value >>> 0;
  switch (condition.op) {
    case 'equals':
      if (bits === 64) {
        program.load(argHigh(condition.index));
        program.jump(JMP_JEQ_K, high(condition.value), undefined, fail);
      }
      program.load(argLow(condition.index));
      program.jump(JMP_JEQ_K, low(condition.value), undefined, fail);
      return;
    case 'notEquals': {
      const holds = program.label();
      if (bits === 64) {
        program.load(argHigh(condition.index));
        program.jump(JMP_JEQ_K, high(condition.value), undefined, holds);
      }
      program.load(argLow(condition.index));
      program.jump(JMP_JEQ_K, low(condition.value), fail, undefined);
      program.place(holds);
      return;
    }
    case 'maskedEquals':
      if (bits === 64) {
        program.load(argHigh(condition.index));
        program.and(high(condition.mask));
        program.jump(JMP_JEQ_K, high(condition.value), undefined, fail);
      }
      program.load(argLow(condition.index));
      program.and(low(condition.mask));
      program.jump(JMP_JEQ_K, low(condition.value), undefined, fail);
      return;
  }
}

type Label = { position?: number };

interface Instruction {
  readonly code: number;
  readonly k: number;
  /** Conditional jumps: where to go when true / false (undefined: the next instruction). */
  readonly whenTrue?: Label | undefined;
  readonly whenFalse?: Label | undefined;
  /** `ja`: the target. */
  readonly target?: Label;
}

/** A tiny assembler: instructions with symbolic jump targets, resolved to offsets at the end. */
class Program {
  private readonly instructions: Instruction[] = [];

  label(): Label {
    return {};
  }

  place(label: Label): void {
    label.position = this.instructions.length;
  }

  load(offset: number): void {
    this.instructions.push({ code: LD_W_ABS, k: offset });
  }

  and(mask: number): void {
    this.instructions.push({ code: ALU_AND_K, k: mask });
  }

  jump(code: number, k: number, whenTrue: Label | undefined, whenFalse: Label | undefined): void {
    this.instructions.push({ code, k, whenTrue, whenFalse });
  }

  always(target: Label): void {
    this.instructions.push({ code: JMP_JA, k: 0, target });
  }

  ret(value: number): void {
    this.instructions.push({ code: RET_K, k: value });
  }

  /**
   * The program as struct sock_filter[] in host byte order, written as two 32-bit words per
   * instruction (code | jt << 16 | jf << 24, then k): this runs once per process, cold, where
   * Buffer's checked write methods took ~14 ms of a one-shot build's main thread.
   */
  assemble(): Buffer {
    const count = this.instructions.length;
    if (count > 4096) throw new Error(`seccomp: ${count} instructions, the kernel takes 4096`);
    const words = new Uint32Array(count * 2);
    for (let index = 0; index < count; index++) {
      const instruction = this.instructions[index]!;
      let k = instruction.k;
      let whenTrue = 0;
      let whenFalse = 0;
      if (instruction.code === JMP_JA) k = jumpDistance(instruction.target, index, 0xffffffff);
      else {
        whenTrue = jumpDistance(instruction.whenTrue, index, 255);
        whenFalse = jumpDistance(instruction.whenFalse, index, 255);
      }
      words[index * 2] = (instruction.code | (whenTrue << 16) | (whenFalse << 24)) >>> 0;
      words[index * 2 + 1] = k >>> 0;
    }
    return Buffer.from(words.buffer, words.byteOffset, words.byteLength);
  }
}

/** How far a jump from instruction `index` goes to reach `label` (0: the next instruction). */
function jumpDistance(label: Label | undefined, index: number, limit: number): number {
  if (label === undefined) return 0;
  if (label.position === undefined) throw new Error('seccomp: a jump to a label never placed');
  const distance = label.position - (index + 1);
  if (distance < 0 || distance > limit) throw new Error(`seccomp: jump of ${distance} out of range`);
  return distance;
}
