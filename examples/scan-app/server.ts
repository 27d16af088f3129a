import { loadConfig } from '../../src/plugin.ts';
import { buildScanApp } from './app.ts';

const config = loadConfig();
const app = await buildScanApp({ config });
const close = () => void app.close().then(() => process.exit(0));
process.on('SIGTERM', close);
process.on('SIGINT', close);
await app.listen({ port: config.port, host: config.host });
