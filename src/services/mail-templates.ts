import { escapeHtml } from '../views/escape.ts';

export type MailTemplate = 'verify_email';

export interface RenderedMail {
  subject: string;
  text: string;
  html: string;
}

interface Copy {
  subject: string;
  greeting: (name: string) => string;
  lines: string[];
  action: string;
  footer: string;
}

type Catalog = Record<MailTemplate, Copy>;

const CATALOGS: Record<string, Catalog> = {
  en: {
    verify_email: {
      subject: 'Verify your email address',
      greeting: (name) => `Hello ${name},`,
      lines: ['Please confirm your email address to finish creating your account.', 'This link is valid for 24 hours.'],
      action: 'Verify email address',
      footer: 'If you did not create an account, you can ignore this message.',
    },
  },
  es: {
    verify_email: {
      subject: 'Verifica tu dirección de correo',
      greeting: (name) => `Hola ${name}:`,
      lines: [
        'Confirma tu dirección de correo para terminar de crear tu cuenta.',
        'Este enlace es válido durante 24 horas.',
      ],
      action: 'Verificar correo',
      footer: 'Si no creaste una cuenta, puedes ignorar este mensaje.',
    },
  },
};

export interface MailData {
  name: string;
  link: string;
}

/** Chooses the user's language by its primary subtag, falling back to English. */
export function renderMail(template: MailTemplate, languageCode: string, data: MailData): RenderedMail {
  const primary = languageCode.split('-')[0]?.toLowerCase() ?? 'en';
  const catalog = CATALOGS[primary] ?? (CATALOGS.en as Catalog);
  const copy = catalog[template];
  const text = [
    copy.greeting(data.name),
    '',
    ...copy.lines,
    '',
    `${copy.action}: ${data.link}`,
    '',
    copy.footer,
    '',
  ].join('\n');
  const html = `<!doctype html><html lang="${escapeHtml(primary)}"><body style="font-family:system-ui,sans-serif;line-height:1.5;color:#1f2937">
<p>${escapeHtml(copy.greeting(data.name))}</p>
${copy.lines.map((l) => `<p>${escapeHtml(l)}</p>`).join('\n')}
<p><a href="${escapeHtml(data.link)}" style="display:inline-block;padding:10px 16px;background:#2563eb;color:#fff;border-radius:6px;text-decoration:none">${escapeHtml(copy.action)}</a></p>
<p style="font-size:13px;color:#6b7280">${escapeHtml(data.link)}</p>
<p style="font-size:13px;color:#6b7280">${escapeHtml(copy.footer)}</p>
</body></html>`;
  return { subject: copy.subject, text, html };
}
