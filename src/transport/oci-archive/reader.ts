import type { ImageIndexSource, ImageSource, ReadImageOptions } from '../../oci/image.js';
import { describeSource, openArchive, withArchive } from '../archive-file.js';
import { openLayoutImage, openLayoutIndex } from '../layout/reader.js';

/** `oci-archive:PATH[:TAG]`: an OCI layout in a tar, read in place by the layout reader. */

export async function openOciArchive(
  path: string,
  tag: string | undefined,
  options: ReadImageOptions = {},
): Promise<ImageSource> {
  const name = describeSource('oci-archive', path, tag);
  const archive = await openArchive(path, name, options.signal, options.tmpDir);
  return withArchive(archive, ({ access, close }) => openLayoutImage(access, name, tag, options, close));
}

/** The archive's entry as a whole multi-platform image, or undefined when it is a single image. */
export async function openOciArchiveIndex(
  path: string,
  tag: string | undefined,
  options: ReadImageOptions = {},
): Promise<ImageIndexSource | undefined> {
  const name = describeSource('oci-archive', path, tag);
  const archive = await openArchive(path, name, options.signal, options.tmpDir);
  const index = await withArchive(archive, ({ access, close }) =>
    openLayoutIndex(access, name, tag, options, close),
  );
  if (index === undefined) await archive.close();
  return index;
}
