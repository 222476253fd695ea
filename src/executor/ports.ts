import { StratumError } from '../errors.js';

/**
 * EXPOSE port specs as Docker's nat.ParsePortSpecs reads them: `80`, `80/udp`, `8000-8002/tcp`,
 * `127.0.0.1:80:80` (only the container port counts). Returns `port/proto` keys.
 */
export function formatExposedPorts(specs: readonly string[], where: string): string[] {
  const out = new Set<string>();
  for (const spec of specs) {
    const [portPart, protoPart] = splitProto(spec);
    const proto = (protoPart ?? 'tcp').toLowerCase();
    if (!['tcp', 'udp', 'sctp'].includes(proto)) {
      throw new StratumError('BUILD_FAILED', `${where}: EXPOSE ${spec}: invalid proto: ${proto}`);
    }
    // ip:hostPort:containerPort → the container port is the last part
    const containerPort = portPart.split(':').pop() ?? '';
    const range = /^(\d+)(?:-(\d+))?$/.exec(containerPort);
    if (range === null)
      throw new StratumError(
        'BUILD_FAILED',
        `${where}: EXPOSE ${spec}: invalid containerPort: ${containerPort}`,
      );
    const start = Number(range[1]);
    const end = range[2] === undefined ? start : Number(range[2]);
    if (start > 65535 || end > 65535 || end < start) {
      throw new StratumError('BUILD_FAILED', `${where}: EXPOSE ${spec}: invalid port range`);
    }
    for (let port = start; port <= end; port++) out.add(`${port}/${proto}`);
  }
  return [...out];
}

function splitProto(spec: string): [string, string | undefined] {
  const slash = spec.lastIndexOf('/');
  return slash < 0 ? [spec, undefined] : [spec.slice(0, slash), spec.slice(slash + 1)];
}
