import { listWebhookEndpoints, replayWebhooks, type WebhookEndpointView } from '../flows/webhooks.ts';
import type { Services } from '../infra/container.ts';
import { CliError, type Command, EXIT_OK, EXIT_USAGE, parseCommandLine, withServices } from './shared.ts';

const UNIT_MS: Record<string, number> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `--since`: an RFC 3339 date-time, or a duration back from now (`90s`, `30m`, `2h`, `7d`). */
function parseSince(raw: string, now: Date): Date {
  const duration = /^(\d{1,9})([smhd])$/.exec(raw.trim());
  if (duration) return new Date(now.getTime() - Number(duration[1]) * (UNIT_MS[duration[2] as string] as number));
  const rfc3339 = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;
  const date = new Date(raw);
  if (!rfc3339.test(raw.trim()) || Number.isNaN(date.getTime())) {
    throw new CliError(
      `--since must be an RFC 3339 date-time (2026-01-31T12:00:00Z) or a duration (30m, 2h, 7d), got "${raw}"`,
      EXIT_USAGE,
    );
  }
  return date;
}

export const webhooksReplayCommand: Command = {
  name: 'webhooks replay',
  summary: 'Send the webhook events since a time again',
  usage: 'gatehouse webhooks replay --since <RFC 3339 date-time | duration such as 2h, 7d>',
  help: [
    'Queues again, for every receiver configured or registered now, the events of the changes',
    'made since then. Each event keeps its webhook-id, so a receiver that already has it can drop',
    'the copy. Events are made from the audit log, so any time the audit log still covers works.',
  ].join('\n'),
  async run(args) {
    const { values } = parseCommandLine(args, { since: { type: 'string' } });
    if (values.since === undefined) throw new CliError('--since is required', EXIT_USAGE);
    const since = parseSince(values.since, new Date());
    return withServices(async (services) => {
      const queued = await replayWebhooks(services, since);
      // The sender in this process delivers what it can before the command ends; servers deliver the rest.
      await services.webhooks.drain();
      process.stdout.write(`Queued ${queued} webhook deliveries of events since ${since.toISOString()}\n`);
      return EXIT_OK;
    });
  },
};

async function allEndpoints(services: Services): Promise<WebhookEndpointView[]> {
  const endpoints: WebhookEndpointView[] = [];
  let cursor: string | undefined;
  do {
    const page = await listWebhookEndpoints(services, { cursor, limit: 100 });
    endpoints.push(...page.items);
    cursor = page.next_cursor ?? undefined;
  } while (cursor !== undefined);
  return endpoints;
}

export const webhooksListCommand: Command = {
  name: 'webhooks list',
  summary: 'List the webhook receivers',
  usage: 'gatehouse webhooks list [--json]',
  help: 'The WEBHOOK_URLS, then the registered endpoints (id, URL, event types). Secrets are never shown.',
  async run(args) {
    const { values } = parseCommandLine(args, { json: { type: 'boolean' } });
    return withServices(async (services) => {
      const endpoints = await allEndpoints(services);
      if (values.json) {
        process.stdout.write(`${JSON.stringify({ configured: services.config.webhookUrls, endpoints }, null, 2)}\n`);
        return EXIT_OK;
      }
      if (services.config.webhookUrls.length === 0 && endpoints.length === 0) {
        process.stdout.write('No webhook receivers.\n');
      }
      for (const url of services.config.webhookUrls) process.stdout.write(`WEBHOOK_URLS  ${url}  all events\n`);
      for (const e of endpoints) {
        process.stdout.write(`${e.id}  ${e.url}  ${e.events.length === 0 ? 'all events' : e.events.join(',')}\n`);
      }
      return EXIT_OK;
    });
  },
};
