import tar from 'tar-stream';
import { Readable } from 'node:stream';

export interface Listed {
  readonly name: string;
  readonly type: string;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly size: number;
  readonly mtime: number;
  readonly linkname: string | null;
  readonly uname: string;
  readonly gname: string;
  readonly content: string;
}

/** Lists a tar with tar-stream's parser: an independent reader of what our encoder wrote. */
export async function listTar(data: Buffer): Promise<Listed[]> {
  const extract = tar.extract();
  Readable.from([data]).pipe(extract);
  const out: Listed[] = [];
  for await (const entry of extract) {
    const chunks: Buffer[] = [];
    for await (const chunk of entry as unknown as AsyncIterable<Buffer>) chunks.push(chunk);
    const h = entry.header;
    out.push({
      name: h.name,
      type: h.type,
      mode: h.mode,
      uid: h.uid,
      gid: h.gid,
      size: h.size,
      mtime: h.mtime.getTime() / 1000,
      linkname: h.linkname,
      uname: h.uname,
      gname: h.gname,
      content: Buffer.concat(chunks).toString('utf8'),
    });
  }
  return out;
}
