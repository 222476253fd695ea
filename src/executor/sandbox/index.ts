export { runInSandbox, warmRunSandbox } from './run.js';
export { holdSpareInits, holdSpareInitsForBuild } from './spare-init.js';
export {
  chooseIsolation,
  type IsolationChoice,
  type IsolationMode,
  type IsolationRequest,
} from './isolation.js';
export { closePrivateNetworks, holdPrivateNetworks, privateResolvConf } from './network.js';
export { resolveInRoot, existingPathInRoot, type ResolvedPath } from './root-path.js';
export {
  defaultPath,
  type BindMount,
  type TmpfsMount,
  type SecretMount,
  type SandboxMount,
  type SandboxNetwork,
  type SandboxSpec,
  type SandboxResult,
  type SandboxOptions,
  type Ulimit,
} from './types.js';
