// Gatehouse mounted in a host application, the way the README describes it,
// with one host route behind the exported guard: token verification and the
// revocation check, no database read; and one behind the organization guard,
// `requireOrgRole('user')`, which does no work of its own. The host logs with Gatehouse's settings:
// one line per request, at the shipped level and format.
import Fastify from 'fastify';
import { loggerOptions, RequestLog } from '../../src/app.ts';
import { loadConfig } from '../../src/config.ts';
import { sendProblem } from '../../src/http/problem.ts';
import { gatehouse, requireOrgRole, requireUser } from '../../src/plugin.ts';

const config = loadConfig(process.env);
const app = Fastify({ logger: await loggerOptions(config), logController: new RequestLog(config) });
app.setErrorHandler((error, request, reply) => sendProblem(request, reply, error));
await app.register(gatehouse, { config });
app.get('/guarded', { preHandler: requireUser }, async (request) => ({ user: request.auth.userUuid }));
app.get('/bench/organizations/:uuid/ping', { onRequest: requireOrgRole('user') }, async (_request, reply) =>
  reply.code(204).send(),
);
await app.listen({ port: 0, host: '127.0.0.1' });
const address = app.server.address();
process.stdout.write(`${JSON.stringify({ port: typeof address === 'object' && address ? address.port : 0 })}\n`);
process.on('SIGTERM', () => void app.close().then(() => process.exit(0)));
