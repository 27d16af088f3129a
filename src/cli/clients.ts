import { AppError } from '../domain/errors.ts';
import {
  type ClientRegistration,
  type ClientView,
  createClient,
  deleteClient,
  listClients,
  rotateClientSecret,
} from '../flows/oauth-clients.ts';
import type { Services } from '../infra/container.ts';
import {
  CLI_CONTEXT,
  CliError,
  type Command,
  describeAppError,
  EXIT_FAILURE,
  EXIT_OK,
  EXIT_USAGE,
  parseCommandLine,
  withServices,
} from './shared.ts';

/** A refusal of the flow (bad metadata, unknown client) as one readable message, exit 1. */
async function asOperator<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof AppError) throw new CliError(describeAppError(error), EXIT_FAILURE);
    throw error;
  }
}

function printSecret(registration: ClientRegistration): void {
  const lines = [`client_id:     ${registration.client_id}`];
  if (registration.client_secret !== undefined) {
    lines.push(`client_secret: ${registration.client_secret}`);
    lines.push('The client secret is shown only once: store it now. Gatehouse keeps only its SHA-256.');
  } else lines.push('Public client (token_endpoint_auth_method none): no secret; it must use PKCE.');
  process.stdout.write(`${lines.join('\n')}\n`);
}

function oneClientId(positionals: string[]): string {
  const [clientId] = positionals;
  if (positionals.length !== 1 || !clientId?.trim()) {
    throw new CliError(`expected exactly one client_id, got ${positionals.length}`, EXIT_USAGE);
  }
  return clientId;
}

export const clientsCreateCommand: Command = {
  name: 'clients create',
  summary: 'Register an OpenID Connect client',
  usage:
    'gatehouse clients create --name NAME --redirect-uri URI [--redirect-uri URI…] [--post-logout-redirect-uri URI…] [--public|--confidential] [--first-party] [--scope "openid profile …"] [--json]',
  help: [
    'Options:',
    '  --name NAME                       the name shown on the consent page (required)',
    '  --redirect-uri URI                where authorization responses may go; repeat for more (required)',
    '  --post-logout-redirect-uri URI    where logout may send the browser; repeat for more',
    '  --confidential                    a server-side client with a secret (the default; client_secret_basic)',
    '  --public                          a browser or native app without a secret (PKCE only)',
    '  --first-party                     skip the consent page for this client',
    '  --scope "…"                       space-separated, among openid profile email offline_access organizations (default: all)',
    '  --json                            print the RFC 7591 registration response',
    '',
    'The client secret of a confidential client is printed once and stored only as its SHA-256.',
    'Audited as oauth_client_created.',
  ].join('\n'),
  async run(args) {
    const { values } = parseCommandLine(args, {
      name: { type: 'string' },
      'redirect-uri': { type: 'string', multiple: true },
      'post-logout-redirect-uri': { type: 'string', multiple: true },
      public: { type: 'boolean' },
      confidential: { type: 'boolean' },
      'first-party': { type: 'boolean' },
      scope: { type: 'string' },
      json: { type: 'boolean' },
    });
    if (values.public && values.confidential) {
      throw new CliError('--public and --confidential exclude each other', EXIT_USAGE);
    }
    if (values.name === undefined) throw new CliError('--name is required', EXIT_USAGE);
    if (!values['redirect-uri']?.length) throw new CliError('at least one --redirect-uri is required', EXIT_USAGE);
    const metadata = {
      client_name: values.name,
      redirect_uris: values['redirect-uri'],
      post_logout_redirect_uris: values['post-logout-redirect-uri'] ?? [],
      token_endpoint_auth_method: values.public ? 'none' : 'client_secret_basic',
      first_party: values['first-party'] ?? false,
      ...(values.scope === undefined ? {} : { scope: values.scope }),
    };
    return withServices(async (services) => {
      const registration = await asOperator(() => createClient(services, metadata, CLI_CONTEXT, null));
      if (values.json) process.stdout.write(`${JSON.stringify(registration, null, 2)}\n`);
      else {
        process.stdout.write(`Registered client "${registration.client_name}"\n`);
        printSecret(registration);
      }
      return EXIT_OK;
    });
  },
};

async function allClients(services: Services): Promise<ClientView[]> {
  const clients: ClientView[] = [];
  let cursor: string | undefined;
  do {
    const page = await listClients(services, { cursor, limit: 100 });
    clients.push(...page.items);
    cursor = page.next_cursor ?? undefined;
  } while (cursor !== undefined);
  return clients;
}

export const clientsListCommand: Command = {
  name: 'clients list',
  summary: 'List the OpenID Connect clients',
  usage: 'gatehouse clients list [--json]',
  help: 'Newest first, one a line: client_id, public or confidential, first-party, name and redirect URIs.\nSecrets are never shown. --json prints the clients as a JSON array.',
  async run(args) {
    const { values } = parseCommandLine(args, { json: { type: 'boolean' } });
    return withServices(async (services) => {
      const clients = await allClients(services);
      if (values.json) {
        process.stdout.write(`${JSON.stringify(clients, null, 2)}\n`);
        return EXIT_OK;
      }
      if (clients.length === 0) process.stdout.write('No clients are registered.\n');
      for (const c of clients) {
        const kind = c.token_endpoint_auth_method === 'none' ? 'public' : 'confidential';
        const party = c.first_party ? ' first-party' : '';
        process.stdout.write(`${c.client_id}  ${kind}${party}  ${c.client_name}  ${c.redirect_uris.join(' ')}\n`);
      }
      return EXIT_OK;
    });
  },
};

export const clientsDeleteCommand: Command = {
  name: 'clients delete',
  summary: 'Delete an OpenID Connect client and revoke its tokens',
  usage: 'gatehouse clients delete <client_id>',
  help: 'Removes the client with its authorization codes, grants and tokens, and revokes the\nsessions of those tokens at once. Audited as oauth_client_deleted.',
  async run(args) {
    const { positionals } = parseCommandLine(args, {}, true);
    const clientId = oneClientId(positionals);
    return withServices(async (services) => {
      await asOperator(() => deleteClient(services, clientId, CLI_CONTEXT, null));
      process.stdout.write(`Deleted client ${clientId}\n`);
      return EXIT_OK;
    });
  },
};

export const clientsRotateSecretCommand: Command = {
  name: 'clients rotate-secret',
  summary: "Replace a confidential client's secret",
  usage: 'gatehouse clients rotate-secret <client_id> [--json]',
  help: 'Prints the new secret once; the old one stops working at once. A public client has\nno secret. Audited as oauth_client_secret_rotated.',
  async run(args) {
    const { values, positionals } = parseCommandLine(args, { json: { type: 'boolean' } }, true);
    const clientId = oneClientId(positionals);
    return withServices(async (services) => {
      const registration = await asOperator(() => rotateClientSecret(services, clientId, CLI_CONTEXT, null));
      if (values.json) process.stdout.write(`${JSON.stringify(registration, null, 2)}\n`);
      else printSecret(registration);
      return EXIT_OK;
    });
  },
};
