// Types for examples/busybox-base.js (plain JS, so benchmarks and the shell script load it too).

/** The host's busybox-static (`$BUSYBOX` overrides). */
export declare const BUSYBOX: string;

export interface BaseImageOptions {
  /** The config's architecture (default amd64), for multi-platform bases. */
  readonly architecture?: string;
  /** No Env in the config, as a base made by `docker import` has. */
  readonly withoutEnv?: boolean;
  /** The history entry's created_by. */
  readonly createdBy?: string;
}

export interface BaseImageFiles {
  /** `oci:` layout directory holding the image under the tag of `repoTag`. */
  readonly layout: string;
  /** docker-archive file for `docker load`, tagged `repoTag`. */
  readonly dockerArchive: string;
  readonly diffId: string;
}

export declare function makeBusyboxRootfs(dir: string, busybox?: string): void;
export declare function writeBaseImage(
  rootfs: string,
  outDir: string,
  repoTag: string,
  options?: BaseImageOptions,
): BaseImageFiles;
export declare function writeBusyboxLayout(dir: string, options?: BaseImageOptions): void;
