import { createServer } from 'node:net';
import { buildApp } from './app.ts';
import { ConfigError, listenUrl, loadConfig, readEnvironment } from './config.ts';

/** Below Docker's and Kubernetes' usual grace periods once raised to 30 s (see compose.yaml). */
const SHUTDOWN_TIMEOUT_MS = 25_000;

async function main(): Promise<void> {
  // Keys, the embedded database and mailed links live under DATA_DIR: readable by this user only.
  process.umask(0o077);
  let config: ReturnType<typeof loadConfig>;
  try {
    const env = readEnvironment();
    // PORT=0 picks a free port; PUBLIC_URL, mail links and the token issuer then name that port, not 0.
    if (env.PORT === '0' && !env.PUBLIC_URL) env.PORT = String(await freePort(env.HOST ?? '0.0.0.0'));
    config = loadConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`gatehouse: invalid configuration: ${error.message}\n`);
      process.exit(78); // EX_CONFIG
    }
    throw error;
  }
  const app = await buildApp(config);
  let closing = false;
  const shutdown = async (signal: string) => {
    if (closing) return;
    closing = true;
    app.log.info({ signal }, 'shutting down: refusing new connections, finishing requests in flight');
    // A hung request or dependency must not hold the process forever.
    const deadline = setTimeout(() => {
      app.log.error(`shutdown did not finish within ${SHUTDOWN_TIMEOUT_MS / 1000} s; exiting`);
      process.exit(1);
    }, SHUTDOWN_TIMEOUT_MS).unref();
    // Node closes the connections idle right now; those busy now turn idle once their
    // response is out and would otherwise linger until the keep-alive timeout.
    const reaper = setInterval(() => app.server.closeIdleConnections(), 100);
    try {
      await app.close();
      clearInterval(reaper);
      clearTimeout(deadline);
      app.log.info('shut down: requests finished, outbox flushed, pools closed');
      // No process.exit(0): the process ends by itself once every socket, pool and
      // timer is released. Something still open after a few seconds is a leak.
      setTimeout(() => {
        app.log.error('a handle is still open after shutdown; exiting');
        process.exit(1);
      }, 5_000).unref();
    } catch (error) {
      app.log.error({ err: error }, 'shutdown failed');
      process.exit(1);
    }
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
  await app.listen({ port: config.port, host: config.host });
  const address = app.server.address();
  const listening =
    address && typeof address === 'object' ? listenUrl(address.address, address.port) : config.publicUrl;
  app.log.info(
    { database: app.gatehouse.database.kind, redis: config.redisUrl ? 'configured' : 'in-process', listening },
    `Gatehouse ready at ${config.publicUrl} (listening on ${listening}; docs at ${config.publicUrl}/docs)`,
  );
}

function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, host, () => {
      const address = probe.address();
      probe.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

main().catch((error: unknown) => {
  process.stderr.write(`gatehouse: failed to start: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
