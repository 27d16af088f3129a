import { once } from 'node:events';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { Webhook } from 'standardwebhooks';

/** One request a receiver got, verified with the reference Standard Webhooks implementation. */
export interface ReceivedEvent {
  id: string;
  headers: IncomingHttpHeaders;
  body: string;
  payload: { type: string; timestamp: string; data: Record<string, string> };
}

/**
 * A real HTTP receiver on 127.0.0.1 that checks every signature with the
 * `standardwebhooks` package and answers 204 (or 401 when a signature is bad,
 * which the tests then see as a missing event). It can be stopped and started
 * again on the same port, as a receiver that goes down.
 */
export class WebhookReceiver {
  readonly events: ReceivedEvent[] = [];
  /** Requests whose signature did not verify. */
  readonly refused: string[] = [];
  #server: Server | undefined;
  #port = 0;
  readonly #verifier: Webhook;

  constructor(secret: string) {
    this.#verifier = new Webhook(secret);
  }

  get url(): string {
    return `http://127.0.0.1:${this.#port}/hooks`;
  }

  async start(port = this.#port): Promise<this> {
    const server = createServer((request, response) => {
      const chunks: Buffer[] = [];
      request.on('data', (chunk: Buffer) => chunks.push(chunk));
      request.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        try {
          const payload = this.#verifier.verify(body, request.headers as Record<string, string>);
          this.events.push({
            id: String(request.headers['webhook-id']),
            headers: request.headers,
            body,
            payload: payload as ReceivedEvent['payload'],
          });
          response.writeHead(204).end();
        } catch (error) {
          this.refused.push(error instanceof Error ? error.message : String(error));
          response.writeHead(401).end();
        }
      });
    });
    server.listen(port, '127.0.0.1');
    await once(server, 'listening');
    const address = server.address();
    this.#port = typeof address === 'object' && address ? address.port : port;
    this.#server = server;
    return this;
  }

  async stop(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  ofType(type: string): ReceivedEvent[] {
    return this.events.filter((e) => e.payload.type === type);
  }
}

/** A fresh Standard Webhooks secret. */
export function testWebhookSecret(): string {
  return `whsec_${Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString('base64')}`;
}
