# syntax=docker/dockerfile:1.7
# One image per service, and the migrations' one-shot image (BuildKit: the
# default of `docker build` and `docker compose`):
#   docker build --build-arg SERVICE=patient-svc -t clinical/patient-svc .
#   docker build --target migrate -t clinical/migrate .
# SERVICE: patient-svc | vitals-svc | audit-svc | analytics-svc.
# The build stage bundles with the checkout's toolchain (tools/image.mjs); a
# runtime stage holds only what that assembled: the bundles, and the npm
# packages they leave external with their production dependencies (from the
# lockfile's `npm ci` tree), no compiler, no development dependency.
# scripts/test/imageEntrypoint.test.ts reads this file and runs each image's
# command, health check and stop on this machine, without Docker.
ARG NODE_IMAGE=node:24-bookworm-slim

FROM ${NODE_IMAGE} AS workspace
WORKDIR /workspace
COPY . .
RUN --mount=type=cache,target=/root/.npm npm ci --no-audit --no-fund

FROM workspace AS build
ARG SERVICE
RUN node tools/image.mjs "$SERVICE" /image

FROM workspace AS build-migrate
RUN node tools/image.mjs migrate /image

# The one-shot migration job: `npm run db:migrate` from its bundle, with
# DATABASE_URL a role that may create tables and roles (the database owner).
FROM ${NODE_IMAGE} AS migrate
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build-migrate /image/ ./
USER node
CMD ["node", "--enable-source-maps", "scripts/dist/migrate.mjs"]

# A service (the default target). NODE_ENV=production: TLS on its port and to
# PostgreSQL and Redis is then required (SECURITY.md); docker-compose.yml runs
# a development profile instead and says so.
FROM ${NODE_IMAGE} AS service
ARG SERVICE
ENV NODE_ENV=production SERVICE_NAME=${SERVICE}
WORKDIR /app
COPY --from=build /image/ ./
USER node
# Each service listens on its own port (50051 patient, 50052 vitals, 50053 audit, 50054 analytics).
EXPOSE 50051-50054
# grpc.health.v1.Health/Check on this machine: exit 0 when SERVING (dist/healthcheck.mjs).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 CMD ["node", "dist/healthcheck.mjs"]
# The app's `npm start`; SIGTERM drains (health NOT_SERVING, in-flight calls finish) and exits 0.
CMD ["node", "--enable-source-maps", "--max-old-space-size=128", "--max-semi-space-size=16", "--import", "./dist/telemetry-register.mjs", "dist/main.mjs"]
