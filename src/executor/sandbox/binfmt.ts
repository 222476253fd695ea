import { execFile } from 'node:child_process';
import { inUserNamespace } from '../../util/user-namespace.js';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { StratumError, errnoCode } from '../../errors.js';
import { formatPlatform } from '../../oci/platform.js';
import type { Platform } from '../../oci/types.js';

/**
 * RUN for a foreign architecture goes through QEMU user emulation, as with BuildKit: the kernel's
 * binfmt_misc hands every foreign ELF binary to a `qemu-<arch>` interpreter. The handler must
 * carry the F (fix-binary) flag: the kernel then opens the interpreter when it is registered, so
 * it is found from inside the step's own root filesystem, where no qemu binary exists.
 *
 * A missing handler is one line saying what to install and how to register it. As root, stratum
 * registers it itself from the definition Debian's qemu-user-static installs in
 * /usr/lib/binfmt.d (the systemd-binfmt format, one `:name:type:...:flags` line), and says so.
 */

const execFileAsync = promisify(execFile);

const BINFMT_DIR = '/proc/sys/fs/binfmt_misc';
const DEFINITION_DIRS = ['/etc/binfmt.d', '/run/binfmt.d', '/usr/lib/binfmt.d'];

/** OCI architecture → QEMU's name for it (`qemu-<name>` handlers, `qemu-<name>-static` binaries). */
const QEMU_ARCH: Readonly<Record<string, string>> = {
  amd64: 'x86_64',
  arm64: 'aarch64',
  arm: 'arm',
  '386': 'i386',
  ppc64le: 'ppc64le',
  ppc64: 'ppc64',
  s390x: 's390x',
  riscv64: 'riscv64',
  mips64le: 'mips64el',
  mips64: 'mips64',
  mipsle: 'mipsel',
  mips: 'mips',
  loong64: 'loongarch64',
};

/** The binfmt_misc handler name for a platform; `STRATUM_QEMU_HANDLER` overrides it (tests). */
export function handlerName(platform: Platform, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const override = env['STRATUM_QEMU_HANDLER'];
  if (override !== undefined && override !== '') return override;
  const qemu = QEMU_ARCH[platform.architecture];
  return qemu === undefined ? undefined : `qemu-${qemu}`;
}

export interface Handler {
  readonly enabled: boolean;
  readonly interpreter: string;
  readonly flags: string;
}

/** Parses /proc/sys/fs/binfmt_misc/<name> (`enabled`, `interpreter X`, `flags: OCF`, ...). */
export function parseHandler(text: string): Handler {
  const lines = text.split('\n');
  const value = (prefix: string): string =>
    lines
      .find((line) => line.startsWith(prefix))
      ?.slice(prefix.length)
      .trim() ?? '';
  return {
    enabled: lines[0]?.trim() === 'enabled',
    interpreter: value('interpreter'),
    flags: value('flags:'),
  };
}

async function readText(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    if (errnoCode(error) === 'ENOENT' || errnoCode(error) === 'ENOTDIR') return undefined;
    throw error;
  }
}

/** The registration line for `name` from a binfmt.d file, with the F flag added if it lacks it. */
export async function findDefinition(
  name: string,
  dirs: readonly string[] = DEFINITION_DIRS,
): Promise<{ readonly line: string; readonly file: string } | undefined> {
  for (const dir of dirs) {
    const file = join(dir, `${name}.conf`);
    const text = await readText(file);
    if (text === undefined) continue;
    const line = text.split('\n').find((candidate) => candidate.startsWith(`:${name}:`));
    if (line === undefined) continue;
    // :name:type:offset:magic:mask:interpreter:flags; the fields never hold a colon unescaped.
    const fields = line.trimEnd().split(':');
    if (fields.length < 8) continue;
    const flags = fields[7] ?? '';
    if (!flags.includes('F')) fields[7] = `${flags}F`;
    return { line: fields.join(':'), file };
  }
  return undefined;
}

function missingHandler(where: string, platform: Platform, name: string, why: string): StratumError {
  return new StratumError(
    'UNSUPPORTED',
    `${where}: RUN for ${formatPlatform(platform)} needs QEMU user emulation, but ${why}; install it (apt-get install qemu-user-static) and register the handler with the F flag (as root: systemctl restart systemd-binfmt, or write /usr/lib/binfmt.d/${name}.conf to ${BINFMT_DIR}/register)`,
  );
}

export interface EmulationOptions {
  readonly binfmtDir?: string;
  readonly definitionDirs?: readonly string[];
  readonly env?: NodeJS.ProcessEnv;
  /** Whether we may mount binfmt_misc and register handlers (default: running as root). */
  readonly mayRegister?: boolean;
}

/**
 * Makes sure RUN can execute `platform`'s binaries: its handler is registered, enabled and has
 * the F flag. Registers it when allowed; returns a notice saying so, else undefined. Throws a
 * one-line UNSUPPORTED error (prefixed with `where`, the Dockerfile line) when it cannot.
 */
export async function ensureEmulation(
  platform: Platform,
  where: string,
  options: EmulationOptions = {},
): Promise<string | undefined> {
  const dir = options.binfmtDir ?? BINFMT_DIR;
  // Root of a user namespace may not register a handler (binfmt_misc is the host's).
  const mayRegister = options.mayRegister ?? (process.getuid?.() === 0 && !inUserNamespace());
  const name = handlerName(platform, options.env);
  if (name === undefined)
    throw missingHandler(where, platform, `qemu-${platform.architecture}`, 'QEMU has no emulator for it');
  const notices: string[] = [];

  if ((await readText(join(dir, 'status'))) === undefined) {
    if (!mayRegister) throw missingHandler(where, platform, name, `binfmt_misc is not mounted at ${dir}`);
    try {
      await execFileAsync('mount', ['-t', 'binfmt_misc', 'binfmt_misc', dir]);
    } catch (error) {
      const reason = error instanceof Error ? error.message.split('\n')[0] : String(error);
      throw missingHandler(where, platform, name, `binfmt_misc could not be mounted at ${dir} (${reason})`);
    }
    notices.push(`mounted binfmt_misc at ${dir}`);
  }

  let text = await readText(join(dir, name));
  if (text === undefined) {
    if (!mayRegister)
      throw missingHandler(
        where,
        platform,
        name,
        `no binfmt_misc handler "${name}" is registered (and only root may register one)`,
      );
    const definition = await findDefinition(name, options.definitionDirs);
    if (definition === undefined)
      throw missingHandler(
        where,
        platform,
        name,
        `no binfmt_misc handler "${name}" is registered and no ${name}.conf is in ${(options.definitionDirs ?? DEFINITION_DIRS).join(', ')}`,
      );
    try {
      await writeFile(join(dir, 'register'), definition.line);
    } catch (error) {
      // Another build may have registered it at the same moment.
      if (errnoCode(error) !== 'EEXIST')
        throw missingHandler(
          where,
          platform,
          name,
          `registering it failed (${errnoCode(error) ?? String(error)})`,
        );
    }
    text = await readText(join(dir, name));
    if (text === undefined)
      throw missingHandler(where, platform, name, `registering "${name}" had no effect`);
    notices.push(
      `registered the QEMU handler ${name} for ${formatPlatform(platform)} from ${definition.file} (F flag)`,
    );
  }

  const handler = parseHandler(text);
  if (!handler.enabled)
    throw missingHandler(where, platform, name, `the binfmt_misc handler "${name}" is disabled`);
  if (!handler.flags.includes('F')) {
    throw missingHandler(
      where,
      platform,
      name,
      `the binfmt_misc handler "${name}" lacks the F flag, so ${handler.interpreter} cannot be found inside the step's root`,
    );
  }
  return notices.length === 0 ? undefined : `${where}: ${notices.join('; ')}`;
}
