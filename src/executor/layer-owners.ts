import { chooseIdMapping, ownerInNamespace, type OwnerMap } from './sandbox/id-mapping.js';

/** How owners on disk read in the layer: undefined as root; rootless, the namespace's view. */
let rootlessOwners: Promise<OwnerMap | undefined> | undefined;
export function layerOwners(): Promise<OwnerMap | undefined> {
  rootlessOwners ??=
    process.getuid?.() === 0 ? Promise.resolve(undefined) : chooseIdMapping().then(ownerInNamespace);
  return rootlessOwners;
}
