import { chmod, lchown } from 'node:fs/promises';
import { StratumError } from '../errors.js';
import { fsPath } from '../util/file-names.js';
import type { RootlessOwners } from './context/apply.js';
import { checkOwnerMapped, chooseIdMapping } from './sandbox/id-mapping.js';

let found: Promise<RootlessOwners | undefined> | undefined;

/** rootlessOwners, found once per process (the id mapping does not change while it runs). */
export function rootlessOwners(): Promise<RootlessOwners | undefined> {
  found ??= findRootlessOwners();
  return found;
}

/**
 * How COPY gives owners other than root: undefined as root of the host; as root of a user
 * namespace (a rootless build), those the namespace maps; without root outside any namespace
 * (none could be made), none: the files stay ours, which the layer writer records as root.
 */
async function findRootlessOwners(): Promise<RootlessOwners | undefined> {
  const mapping = await chooseIdMapping();
  if (mapping.kind === 'host') return undefined;
  if (mapping.kind !== 'namespace') {
    // What is on disk is ours, which reads as root (the layer writer records it so).
    const ownUid = process.getuid?.();
    const ownGid = process.getgid?.();
    return {
      fromHost: (owner) => ({
        uid: owner.uid === ownUid ? 0 : owner.uid,
        gid: owner.gid === ownGid ? 0 : owner.gid,
      }),
      check: (owner) => {
        if (owner.uid !== 0 || owner.gid !== 0)
          throw new StratumError(
            'UNSUPPORTED',
            `files owned by uid ${owner.uid} gid ${owner.gid} need root, or a user namespace (stratum could not make one: enable unprivileged user namespaces, sysctl user.max_user_namespaces)`,
          );
      },
      give: () => Promise.resolve(),
    };
  }
  return {
    fromHost: (owner) => owner,
    check: (owner) => {
      checkOwnerMapped(mapping, owner);
    },
    give: async (ops) => {
      for (const { path, uid, gid, mode } of ops) {
        await lchown(fsPath(path), uid, gid);
        // chown clears setuid/setgid: the mode goes on again (-1: a symlink, nothing to do).
        if (mode >= 0) await chmod(fsPath(path), mode);
      }
    },
  };
}
