/**
 * The CLI's facade: every library function and type a command of `src/cli/` calls, in one list.
 * The CLI imports nothing else of the library (import-rules.json), so what it depends on is
 * written down here, apart from the smaller public API of `src/index.ts` that package.json
 * exports: a library user does not see the CLI's flag parsers and formatters, and the CLI is
 * not limited to what a library user should see.
 */
export { analyzeImage } from '../analyze/analyze.js';
export { diffImages } from '../analyze/diff.js';
export { diskUsage } from '../analyze/du.js';
export { formatAnalysis, formatDiskUsage, formatImageDiff, oneLine } from '../analyze/format.js';
export { type DockerfileInput } from '../analyze/hints.js';
export { writeAnalysisHtml } from '../analyze/html.js';
export { loadPublicKey } from '../attest/dsse.js';
export { parseAttestationFlags } from '../attest/options.js';
export { readAttestations, type AttestationManifest } from '../attest/read.js';
export { imageSbom } from '../attest/sbom.js';
export { verifyAttestations } from '../attest/verify.js';
export { buildImage, type BuildImageOptions } from '../build/build-image.js';
export { diffCaches } from '../build/cache-diff.js';
export { parseCallFlag, runCall } from '../build/checks.js';
export {
  parseAddHosts,
  parseAllow,
  parseAnnotations,
  parseKeyValues,
  parseSecretFlags,
  parseSshFlags,
  parseUlimits,
} from '../build/flags.js';
export { parseBuildContexts } from '../build/named-contexts.js';
export { watchBuilds, type WatchBuildOutcome } from '../build/watch.js';
export { cacheDiskUsage, listCache, pruneLayerCache, type CacheLocation } from '../cache/admin.js';
export { removeImages } from '../cache/image-removal.js';
export { isStratumError, StratumError } from '../errors.js';
export { describeTarget, readContextDockerfile } from '../executor/context/context-file.js';
export { type BuildEvent, type StepRef } from '../executor/progress.js';
export { parseCompression } from '../oci/compression.js';
export { isImageIndex, type ImageSource } from '../oci/image.js';
export { summarizeImage, type ImageSummary } from '../oci/inspect.js';
export { parsePlatform } from '../oci/platform.js';
export { parseImageReference } from '../oci/reference.js';
export { formatWarningSummary } from '../parser/check-format.js';
export { formatDiagnostic } from '../parser/format.js';
export { parseDockerfile } from '../parser/parse.js';
export { readDockerfileSource } from '../parser/read.js';
export { type Instruction, type ParseResult } from '../parser/types.js';
export { login, logout } from '../registry/login.js';
export { openRegistryImage, type PullProgress } from '../registry/pull.js';
export { pushImage, pushIndex, type PushProgress } from '../registry/push.js';
export { formatReference, parseRegistryReference } from '../registry/reference.js';
export { copyImage, openAllPlatforms, openImage, writeImage } from '../images/images.js';
export { ImageStore } from '../transport/store/store.js';
export { humanSize, requireByteSize } from '../util/byte-size.js';
export { checkOutput } from '../util/output-path.js';
export { displayName } from '../util/file-names.js';
