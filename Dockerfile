# syntax=docker/dockerfile:1
# Gatehouse: TypeScript run natively by Node 24, no build step.
#   docker build -t gatehouse .
#   docker run --env-file .env -p 8000:8000 gatehouse

ARG NODE_IMAGE=node:24-bookworm-slim

# Production dependencies only; native modules (argon2, bcrypt) come prebuilt for linux-x64/arm64 glibc.
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
    ENVIRONMENT=production \
    HOST=0.0.0.0 \
    PORT=8000 \
    DATA_DIR=/var/lib/gatehouse
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY bin ./bin
COPY src ./src
# The data directory holds the embedded database (when DATABASE_URL is unset),
# the JWT key ring and development mail, for the node user alone; everything else is read-only.
RUN mkdir -p /var/lib/gatehouse && chown node:node /var/lib/gatehouse && chmod 0700 /var/lib/gatehouse
VOLUME ["/var/lib/gatehouse"]
USER node
EXPOSE 8000
# /healthz: the process answers. Load balancers should use /readyz (database and Redis reachable).
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["node", "-e", "fetch(`http://127.0.0.1:${process.env.PORT}/healthz`).then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# SIGTERM: stop accepting, finish requests in flight, flush the outbox, close pools (up to 25 s).
STOPSIGNAL SIGTERM
# node is PID 1 and handles SIGTERM itself; no shell in between to swallow the signal.
CMD ["node", "src/main.ts"]
