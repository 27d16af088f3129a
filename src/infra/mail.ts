import type { Insertable, Kysely } from 'kysely';
import type { Database, EmailOutboxTable } from '../db/schema.ts';
import { type MailDataByTemplate, type MailTemplate, renderMail } from './mail-templates.ts';

export interface QueuedMail<T extends MailTemplate = MailTemplate> {
  to: string;
  template: T;
  languageCode: string;
  data: MailDataByTemplate[T];
}

/** The email_outbox row of a mail, for statements that insert it themselves (e.g. in a CTE). */
export function outboxRow<T extends MailTemplate>(mail: QueuedMail<T>): Insertable<EmailOutboxTable> {
  const rendered = renderMail(mail.template, mail.languageCode, mail.data);
  return {
    to_address: mail.to,
    subject: rendered.subject,
    text_body: rendered.text,
    html_body: rendered.html,
    template: mail.template,
  };
}

/**
 * Puts a rendered mail in the outbox inside the caller's transaction: the mail
 * exists exactly when the event that caused it does. The outbox sender
 * delivers it later; call `services.outbox.kick()` after the commit so that
 * it goes out at once instead of at the next poll.
 */
export async function queueMail<T extends MailTemplate>(db: Kysely<Database>, mail: QueuedMail<T>): Promise<number> {
  const row = await db.insertInto('email_outbox').values(outboxRow(mail)).returning('id').executeTakeFirstOrThrow();
  return row.id;
}

/** Links in mail are built from PUBLIC_URL only, never from request headers. */
export function publicLink(publicUrl: string, path: string, params: Record<string, string> = {}): string {
  const url = new URL(path.replace(/^\/+/, ''), `${publicUrl}/`);
  for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
  return url.toString();
}
