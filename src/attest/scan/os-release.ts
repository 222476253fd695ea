/** /etc/os-release (or /usr/lib/os-release): the distro a package purl names. */
export interface Distro {
  /** `debian`, `ubuntu`, `alpine` */
  readonly id: string;
  /** `12`, `22.04`, `3.19.1`; absent on rolling releases (sid). */
  readonly versionId?: string;
  readonly prettyName?: string;
}

export function parseOsRelease(text: string): Distro | undefined {
  const fields = new Map<string, string>();
  for (const line of text.split('\n')) {
    const match = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (match === null) continue;
    let value = match[2]!;
    if ((value.startsWith('"') && value.endsWith('"')) || (value.startsWith("'") && value.endsWith("'")))
      value = value.slice(1, -1).replace(/\\(.)/g, '$1');
    fields.set(match[1]!, value);
  }
  const id = fields.get('ID');
  if (id === undefined || id === '') return undefined;
  const versionId = fields.get('VERSION_ID');
  const prettyName = fields.get('PRETTY_NAME');
  return {
    id,
    ...(versionId ? { versionId } : {}),
    ...(prettyName ? { prettyName } : {}),
  };
}

/** The purl `distro` qualifier as Syft writes it: `debian-12`, `alpine-3.19.1`. */
export function distroQualifier(distro: Distro | undefined): string | undefined {
  if (distro === undefined) return undefined;
  return distro.versionId === undefined ? distro.id : `${distro.id}-${distro.versionId}`;
}
