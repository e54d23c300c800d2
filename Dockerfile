# The production images: one file, three targets (`server`, `worker`, `backup`; their image names
# in tools/images/names.ts); the migrate step and the operator jobs are the worker image with
# another command. docs: README.md ("Run it with compose"), docs/deployment.md.
#   buildah bud --format docker --target server -t qrscan-server .     (docker build works the same)
# --format docker keeps HEALTHCHECK (the OCI format drops it). The base is a build argument: the
# public image by default, the locally bootstrapped Debian in .ci/run (tools/images.ts). Bun is
# installed the same way on both: the pinned npm package's binary, checked against its SHA-512.

# Pinned by digest, so a moved tag cannot change what is built (the tag says which it is; update both
# together). .ci/run builds FROM a locally bootstrapped Debian instead (IMAGES_BASE).
ARG BASE_IMAGE=debian:bookworm-slim@sha256:3783cc01769c7b2b1b83a5c5ad96c815348e28ed7da68e2e3687004faa906251

# ---- Bun: the pinned binary from its npm package (npm from Debian, only in this stage).
FROM ${BASE_IMAGE} AS bun
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm ca-certificates >/dev/null
ARG BUN_VERSION=1.4.5
ARG BUN_PACKAGE=@oven/bun-linux-x64
# sha512sum of the package tarball (`npm view @oven/bun-linux-x64@1.4.5 dist.integrity`, in hex).
ARG BUN_SHA512=2165fd0442e8187014b4ca2791e49a35a6705f3464fa80f0e8c93e1c115777728760804d06c20646ea4c64f7203680db2692eeea00098c8a0854f66db75689d6
# Only where TLS to the registry is inspected by a proxy: its CA bundle, mounted for the build
# (tools/images.ts does so from the host); never part of an image.
ARG NODE_EXTRA_CA_CERTS=
RUN cd /tmp \
 && tarball=$(npm pack --silent "${BUN_PACKAGE}@${BUN_VERSION}") \
 && echo "${BUN_SHA512}  ${tarball}" | sha512sum -c --quiet - \
 && tar -xzf "${tarball}" package/bin/bun \
 && install -m 0755 package/bin/bun /usr/local/bin/bun \
 && rm -rf "${tarball}" package /root/.npm \
 && test "$(/usr/local/bin/bun --version)" = "${BUN_VERSION}"

# ---- Production dependencies from the lockfile, with patches/ applied (the grep fails the build
# if the postgres.js patch was not). Optional peers (typescript, 23 MB) are not needed at run time.
FROM ${BASE_IMAGE} AS deps
COPY --from=bun /usr/local/bin/bun /usr/local/bin/bun
WORKDIR /app
COPY package.json bun.lock bunfig.toml ./
COPY patches ./patches
# The workspace package's manifest: bun.lock names it (node_modules/bun-rdkafka links to it).
COPY packages/bun-rdkafka/package.json ./packages/bun-rdkafka/package.json
ARG NODE_EXTRA_CA_CERTS=
RUN BUN_INSTALL_CACHE_DIR=/tmp/bun-cache bun install --frozen-lockfile --production --omit=peer \
 && grep -q 'porsager/postgres#1173' node_modules/postgres/src/connection.js \
 && rm -rf /tmp/bun-cache

# ---- What both images share: librdkafka from Debian, Bun, the dependencies, the Kafka client
# (packages/bun-rdkafka), shared/.
FROM ${BASE_IMAGE} AS runtime
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends librdkafka1 ca-certificates >/dev/null \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log \
 && install -d -m 1777 /tmp \
 && chmod 0755 /var/tmp /run/lock
COPY --from=bun /usr/local/bin/bun /usr/local/bin/bun
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json tsconfig.json ./
COPY packages/bun-rdkafka/package.json ./packages/bun-rdkafka/package.json
COPY packages/bun-rdkafka/src ./packages/bun-rdkafka/src
COPY shared ./shared
# The processes write only to /tmp (HOME and TMPDIR; Bun's transpiler cache is off), the one
# writable directory (/var/tmp and /run/lock are not), so the root filesystem can be read-only
# with a tmpfs on /tmp.
ENV NODE_ENV=production \
    HOME=/tmp \
    TMPDIR=/tmp \
    BUN_RUNTIME_TRANSPILER_CACHE_PATH=0
# Declared here, not above: a new revision must not rebuild the layers before it. The RUN records
# them in the image (/app/BUILD_INFO) and is what makes buildah's layer cache see a new revision:
# it keys RUN by the build arguments, but not LABEL (a cached LABEL kept the old revision).
ARG VERSION=0.0.0-dev
ARG REVISION=unknown
ARG SOURCE=unknown
RUN printf 'version=%s\nrevision=%s\nsource=%s\n' "${VERSION}" "${REVISION}" "${SOURCE}" > /app/BUILD_INFO
LABEL org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.title="qrscan-ingest"
# The archives' mount point (ARCHIVE_DIR of the operator's maintain and archive-restore jobs), the
# one thing the user owns: an empty named volume mounted there (compose's `archive`) takes over its
# owner, so the jobs can write to it.
RUN install -d -o 10001 -g 10001 -m 0750 /archive
# No account needed: a numeric user and group, not root, owning nothing else in the image.
USER 10001:10001
STOPSIGNAL SIGTERM

# ---- The edge server: HTTP on 8080, metrics on 9464 (not to be published). HOST=0.0.0.0 makes
# the deployment say where client addresses come from: TRUSTED_PROXIES (the balancer's addresses
# or CIDRs) or CLIENTS_CONNECT_DIRECTLY=true; the image sets neither, so it refuses to start until
# one is chosen (compose.yaml and deploy/k8s/ do).
FROM runtime AS server
COPY server ./server
ENV HOST=0.0.0.0 PORT=8080 METRICS_PORT=9464
EXPOSE 8080 9464
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 CMD ["bun", "server/healthcheck.ts"]
CMD ["bun", "server/main.ts"]

# ---- The worker: the supervisor and WORKER_POOL_SIZE workers (one per container by default: scale
# containers); metrics and /health on 9470 (worker i: 9470 + i), the supervisor's on 9469. Also the
# migrate step, `bun sql/migrate.ts`, and the operator jobs, `bun jobs/<job>.ts` (maintain,
# archive-restore, keys, dlq, restore-offsets; they import only shared/).
FROM runtime AS worker
COPY worker ./worker
COPY sql ./sql
COPY jobs ./jobs
ENV METRICS_PORT=9470 SUPERVISOR_METRICS_PORT=9469 WORKER_POOL_SIZE=1
EXPOSE 9469 9470
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 CMD ["bun", "worker/healthcheck.ts"]
CMD ["bun", "worker/supervisor.ts"]

# ---- pgBackRest for the backup CronJobs (deploy/backup/cronjob.yaml): Debian's package (2.45, the
# version the local stack and compose's Postgres run), no Bun, no app. The stanza's settings come
# from a mounted /etc/pgbackrest/pgbackrest.conf, the repository's credentials from the environment
# (PGBACKREST_REPO1_*). It writes only its lock and log files, under /tmp (a tmpfs or emptyDir), so
# the root filesystem can be read-only; the numeric user is the other images'.
FROM ${BASE_IMAGE} AS backup
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends pgbackrest ca-certificates >/dev/null \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log \
 && install -d -m 1777 /tmp
ENV HOME=/tmp \
    TMPDIR=/tmp \
    PGBACKREST_LOCK_PATH=/tmp/pgbackrest/lock \
    PGBACKREST_LOG_PATH=/tmp/pgbackrest/log \
    PGBACKREST_SPOOL_PATH=/tmp/pgbackrest/spool \
    PGBACKREST_LOG_LEVEL_FILE=off
ARG VERSION=0.0.0-dev
ARG REVISION=unknown
ARG SOURCE=unknown
LABEL org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.title="qrscan-ingest backup"
USER 10001:10001
STOPSIGNAL SIGTERM
CMD ["pgbackrest", "version"]
