import assert from 'node:assert/strict';
import type { FastifyInstance } from 'fastify';
import type { ReceivedMail, TestMailServer } from '../mail-server.ts';
import { postJson } from './mfa.ts';

/** What a sign-in mail carried: the link's token and/or the code. */
export interface SignInMail {
  mail: ReceivedMail;
  link: string | undefined;
  token: string | undefined;
  code: string | undefined;
}

/** Asks for a sign-in mail for `email` and returns what arrived, as a mailbox shows it. */
export async function requestSignIn(app: FastifyInstance, smtp: TestMailServer, email: string): Promise<SignInMail> {
  const before = signInMails(smtp, email).length;
  const res = await postJson(app, '/api/v1/login/email', { email });
  assert.equal(res.statusCode, 202, res.body);
  // Other mail (the verification of the registration) may arrive in between: count sign-in mails only.
  for (let count = smtp.to(email).length + 1; signInMails(smtp, email).length <= before; count++) {
    await smtp.waitFor(email, count);
  }
  return signInMails(smtp, email)[before] as SignInMail;
}

function signInMails(smtp: TestMailServer, email: string): SignInMail[] {
  return smtp
    .to(email)
    .map(readSignInMail)
    .filter((m) => m.token !== undefined || m.code !== undefined);
}

export function readSignInMail(mail: ReceivedMail): SignInMail {
  const link = mail.links.find((l) => l.includes('/email-sign-in?token='));
  const token = link ? (new URL(link).searchParams.get('token') ?? undefined) : undefined;
  const code = /^(\d{6})$/m.exec(mail.text)?.[1];
  return { mail, link, token, code };
}

/** POST /api/v1/login/email/verify. */
export const verifySignIn = (app: FastifyInstance, payload: Record<string, unknown>) =>
  postJson(app, '/api/v1/login/email/verify', payload);
