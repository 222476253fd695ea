// The edit-loop workload that bench/edit-loop.js and bench/watch.js both build: a Debian + gcc
// base, a builder stage whose first RUN modifies and deletes lower files, `COPY Makefile hello.c`,
// `RUN make`, and a runtime stage with `COPY --from`. One definition, so the two benches time
// the same build.

export const DOCKERFILE = `ARG BASE
FROM $BASE AS builder
RUN rm -rf /usr/share/doc /usr/share/man /usr/share/locale \\
 && sed -i 's/^#.*//' /etc/bash.bashrc && echo 'export CC=gcc' >> /etc/profile \\
 && apt-get --version > /etc/apt-version
ARG MID=0
RUN echo "$MID" > /etc/mid
WORKDIR /src
COPY Makefile hello.c ./
RUN make
FROM $BASE
COPY --from=builder /src/hello /usr/local/bin/hello
CMD ["hello"]
`;

export const MAKEFILE = 'hello: hello.c\n\tgcc -O2 -o hello hello.c\n';

/** hello.c for edit `n`; `runId` keeps edits of one run unseen by caches kept from earlier runs. */
export function helloSource(runId, n) {
  return `#include <stdio.h>\nint main(void) { puts("hello ${runId} ${n}"); return 0; }\n`;
}

/**
 * The arguments after `stratum build` (or `build --watch`) for the edit in `context`, as the
 * watch and side-by-side benches run it: overlay, no network, the base layout's tag 1, `MID`
 * set, an OCI layout out.
 */
export function editBuildArgs({ context, cacheDir, layout, mid, output }) {
  return [
    context,
    '--network',
    'none',
    '--snapshotter',
    'overlay',
    '--cache-dir',
    cacheDir,
    '--build-arg',
    `BASE=oci:${layout}:1`,
    '--build-arg',
    `MID=${mid}`,
    '--output',
    `oci:${output}`,
  ];
}
