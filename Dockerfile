# stratum's own image, built by stratum itself:  stratum build -t stratum .
# BASE is a Debian bookworm image with Node.js 24 and npm on the PATH (tests pass a local one).
ARG BASE=node:24-bookworm-slim

FROM ${BASE} AS build
WORKDIR /src
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY scripts ./scripts
COPY src ./src
RUN npm run build && npm prune --omit=dev --no-audit --no-fund

FROM ${BASE}
# passt: RUN's default network (pasta). proot: RUN where no namespace can be made (a container
# under Docker's default settings, a Kubernetes pod under the baseline policy). util-linux
# (unshare, setpriv) and perl-base, the rest of what RUN needs, are in every Debian image.
RUN apt-get update \
 && apt-get install -y --no-install-recommends passt proot \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/package.json /opt/stratum/package.json
COPY --from=build /src/node_modules /opt/stratum/node_modules
COPY --from=build /src/dist /opt/stratum/dist
COPY bin /opt/stratum/bin
RUN ln -s /opt/stratum/bin/stratum.js /usr/local/bin/stratum
# Caches outside /root (0700): under proot a step as another USER reaches the rootfs on its real path.
ENV STRATUM_CACHE_DIR=/var/cache/stratum STRATUM_DATA_DIR=/var/lib/stratum
WORKDIR /workspace
ENTRYPOINT ["stratum"]
CMD ["--help"]
