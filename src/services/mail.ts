import type { Kysely } from 'kysely';
import type { Database } from '../db/schema.ts';
import { type MailData, type MailTemplate, renderMail } from './mail-templates.ts';

export interface QueuedMail {
  to: string;
  template: MailTemplate;
  languageCode: string;
  data: MailData;
}

/**
 * Puts a rendered mail in the outbox inside the caller's transaction: the mail
 * exists exactly when the event that caused it does. A sender delivers it later.
 */
export async function queueMail(db: Kysely<Database>, mail: QueuedMail): Promise<void> {
  const rendered = renderMail(mail.template, mail.languageCode, mail.data);
  await db
    .insertInto('email_outbox')
    .values({
      to_address: mail.to,
      subject: rendered.subject,
      text_body: rendered.text,
      html_body: rendered.html,
      template: mail.template,
    })
    .execute();
}

/** Links in mail are built from PUBLIC_URL only, never from request headers. */
export function publicLink(publicUrl: string, path: string, params: Record<string, string>): string {
  const url = new URL(path.replace(/^\/+/, ''), `${publicUrl}/`);
  for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
  return url.toString();
}
