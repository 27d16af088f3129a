// Gatehouse mounted in a host application, the way the README describes it,
// with one host route behind the exported guard: token verification and the
// revocation check, no database read.
import Fastify from 'fastify';
import { loadConfig } from '../../src/config.ts';
import { sendProblem } from '../../src/http/problem.ts';
import { gatehouse, requireUser } from '../../src/plugin.ts';

const app = Fastify({ logger: false });
app.setErrorHandler((error, request, reply) => sendProblem(request, reply, error));
await app.register(gatehouse, { config: loadConfig({ ...process.env, LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn' }) });
app.get('/guarded', { preHandler: requireUser }, async (request) => ({ user: request.auth.userUuid }));
await app.listen({ port: 0, host: '127.0.0.1' });
const address = app.server.address();
process.stdout.write(`${JSON.stringify({ port: typeof address === 'object' && address ? address.port : 0 })}\n`);
process.on('SIGTERM', () => void app.close().then(() => process.exit(0)));
