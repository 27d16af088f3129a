import type { Kysely } from 'kysely';
import type { Database } from '../db/schema.ts';
import { type MailDataByTemplate, type MailTemplate, renderMail } from './mail-templates.ts';

export interface QueuedMail<T extends MailTemplate = MailTemplate> {
  to: string;
  template: T;
  languageCode: string;
  data: MailDataByTemplate[T];
}

/**
 * Puts a rendered mail in the outbox inside the caller's transaction: the mail
 * exists exactly when the event that caused it does. The outbox sender
 * delivers it later; call `services.outbox.kick()` after the commit so that
 * it goes out at once instead of at the next poll.
 */
export async function queueMail<T extends MailTemplate>(db: Kysely<Database>, mail: QueuedMail<T>): Promise<number> {
  const rendered = renderMail(mail.template, mail.languageCode, mail.data);
  const row = await db
    .insertInto('email_outbox')
    .values({
      to_address: mail.to,
      subject: rendered.subject,
      text_body: rendered.text,
      html_body: rendered.html,
      template: mail.template,
    })
    .returning('id')
    .executeTakeFirstOrThrow();
  return row.id;
}

/** Links in mail are built from PUBLIC_URL only, never from request headers. */
export function publicLink(publicUrl: string, path: string, params: Record<string, string> = {}): string {
  const url = new URL(path.replace(/^\/+/, ''), `${publicUrl}/`);
  for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
  return url.toString();
}
