// Gatehouse as a separate process, configured by its environment like production
// (logging included: LOG_LEVEL and LOG_FORMAT as shipped unless the scenario sets them).
import { buildApp } from '../../src/app.ts';
import { loadConfig } from '../../src/config.ts';

const config = loadConfig(process.env);
const app = await buildApp(config);
// PORT when the scenario needs to know it in advance (PUBLIC_URL, a provider's callback), else any free port.
await app.listen({ port: process.env.PORT ? config.port : 0, host: '127.0.0.1' });
const address = app.server.address();
process.stdout.write(`${JSON.stringify({ port: typeof address === 'object' && address ? address.port : 0 })}\n`);
process.on('SIGTERM', () => void app.close().then(() => process.exit(0)));
