import {
  fillOverride,
  languageChain,
  MAIL_VARIABLES,
  type MailOverrides,
  type MailPart,
  NO_MAIL_OVERRIDES,
  overridePart,
} from '../domain/mail-overrides.ts';
import { oneLine } from '../domain/text.ts';
import { escapeHtml } from '../views/escape.ts';
import type { Catalog, Content, MailDataByTemplate, MailTemplate } from './mail-i18n/catalog.ts';
import { GERMAN, GERMAN_ROLES } from './mail-i18n/de.ts';
import { FRENCH, FRENCH_ROLES } from './mail-i18n/fr.ts';
import { inBody, inSubject } from './mail-i18n/names.ts';

export type { MailDataByTemplate, MailTemplate } from './mail-i18n/catalog.ts';

export const MAIL_TEMPLATES: readonly MailTemplate[] = [
  'verify_email',
  'reset_password',
  'password_changed',
  'registration_attempt',
  'registration_username_taken',
  'mfa_enabled',
  'mfa_disabled',
  'mfa_backup_code_used',
  'invitation',
  'email_sign_in',
  'passkey_added',
  'identity_linked',
  'email_change_confirm',
  'email_change_notice',
  'email_change_taken',
  'account_created',
];

export interface RenderedMail {
  subject: string;
  text: string;
  html: string;
}

export { SUBJECT_NAME_MAX } from './mail-i18n/names.ts';

/** Characters a subject has at most, whatever a template puts in it. */
const SUBJECT_MAX = 200;

const ROLE_LABELS: Record<string, Record<string, string>> = {
  en: { admin: 'an administrator', user: 'a member', viewer: 'a viewer' },
  es: { admin: 'administrador', user: 'miembro', viewer: 'lector' },
};

/** A built-in role in words; a custom role by its name (own keys only: `constructor` is a valid role name). */
function roleLabel(language: string, role: string): string {
  const labels = ROLE_LABELS[language];
  return labels && Object.hasOwn(labels, role) ? (labels[role] ?? role) : role;
}

const CATALOGS: Record<string, Catalog> = {
  en: {
    verify_email: ({ name, link }) => ({
      subject: 'Verify your email address',
      greeting: `Hello ${name},`,
      lines: ['Please confirm your email address to finish creating your account.', 'This link is valid for 24 hours.'],
      actions: [{ label: 'Verify email address', link }],
      footer: 'If you did not create an account, you can ignore this message.',
    }),
    reset_password: ({ name, link }) => ({
      subject: 'Reset your password',
      greeting: `Hello ${name},`,
      lines: [
        'We received a request to reset the password of your account.',
        'This link is valid for 1 hour and works once; asking for another link cancels this one.',
      ],
      actions: [{ label: 'Choose a new password', link }],
      footer: 'If you did not ask for this, you can ignore this message: your password stays the same.',
    }),
    password_changed: ({ name, link }) => ({
      subject: 'Your password was changed',
      greeting: `Hello ${name},`,
      lines: [
        'The password of your account was just changed, and your other sessions were signed out.',
        'If you made this change, there is nothing else to do.',
      ],
      actions: [{ label: 'I did not change it: reset my password', link }],
      footer: 'If you did not change your password, reset it now: someone else may know it.',
    }),
    registration_attempt: ({ name, loginLink, resetLink }) => ({
      subject: 'Someone tried to register with your address',
      greeting: `Hello ${name},`,
      lines: [
        'Someone tried to create a new account with this email address, but you already have an account.',
        'If it was you, log in instead, or reset your password if you have forgotten it.',
      ],
      actions: [
        { label: 'Log in', link: loginLink },
        { label: 'Reset your password', link: resetLink },
      ],
      footer: 'If it was not you, you can ignore this message: nothing was changed.',
    }),
    registration_username_taken: ({ username, registerLink }) => ({
      subject: 'Choose another username to finish registering',
      greeting: 'Hello,',
      lines: [
        `Someone, probably you, asked to create an account with this email address and the username "${username}".`,
        'That username is already taken, so no account was created. Register again and choose another username.',
      ],
      actions: [{ label: 'Register with another username', link: registerLink }],
      footer: 'If it was not you, you can ignore this message: no account was created for this address.',
    }),
    mfa_enabled: ({ name, link, resetLink }) => ({
      subject: 'Two-step verification is on',
      greeting: `Hello ${name},`,
      lines: [
        'An authenticator app was just added to your account: from now on, signing in asks for a code from it.',
        'Keep your backup codes somewhere safe; each one works once if you lose the app.',
      ],
      actions: [
        { label: 'Review your account', link },
        { label: 'I did not do this: reset my password', link: resetLink },
      ],
      footer: 'If you did not turn this on, reset your password now: someone else may know it.',
    }),
    mfa_disabled: ({ name, link, resetLink, byAdmin }) => ({
      subject: 'Two-step verification is off',
      greeting: `Hello ${name},`,
      lines: [
        byAdmin
          ? 'An administrator turned off two-step verification for your account: signing in asks only for your password now.'
          : 'Two-step verification was turned off for your account: signing in asks only for your password now.',
        'Your backup codes no longer work. You can turn it on again from your account page.',
      ],
      actions: [
        { label: 'Turn it on again', link },
        { label: 'I did not do this: reset my password', link: resetLink },
      ],
      footer: 'If you did not expect this, reset your password now and turn two-step verification on again.',
    }),
    mfa_backup_code_used: ({ name, remaining, link, resetLink }) => ({
      subject: 'A backup code was used to sign in',
      greeting: `Hello ${name},`,
      lines: [
        'One of your backup codes was just used in place of a code from your authenticator app.',
        `${remaining} unused backup ${remaining === 1 ? 'code is' : 'codes are'} left. You can make a new set from your account page.`,
      ],
      actions: [
        { label: 'Review your account', link },
        { label: 'I did not do this: reset my password', link: resetLink },
      ],
      footer: 'If it was not you, reset your password now and make a new set of backup codes.',
    }),
    identity_linked: ({ name, provider, link, resetLink }) => ({
      subject: `Your account can now sign in with ${inBody(provider)}`,
      greeting: `Hello ${name},`,
      lines: [
        `Your ${inBody(provider)} account was just linked to your account: it can now sign you in.`,
        'You can see and remove linked sign-ins on your account page.',
      ],
      actions: [
        { label: 'Review your account', link },
        { label: 'I did not do this: reset my password', link: resetLink },
      ],
      footer: 'If you did not link it, remove it from your account page and reset your password now.',
    }),
    passkey_added: ({ name, passkeyName, link, resetLink }) => ({
      subject: 'A passkey was added to your account',
      greeting: `Hello ${name},`,
      lines: [
        `A passkey named "${inBody(passkeyName)}" was just added to your account: it can now sign you in without your password.`,
        'You can see and remove your passkeys on your account page.',
      ],
      actions: [
        { label: 'Review your passkeys', link },
        { label: 'I did not do this: reset my password', link: resetLink },
      ],
      footer: 'If you did not add it, remove it from your account page and reset your password now.',
    }),
    invitation: ({ organizationName, inviterName, inviterEmail, role, link, abuseContact }) => ({
      subject: `${inSubject(inviterName)} invited you to join ${inSubject(organizationName)}`,
      greeting: 'Hello,',
      lines: [
        `${inBody(inviterName)} (${inviterEmail}) invited you to join ${inBody(organizationName)} as ${roleLabel('en', role)}.`,
        'This invitation is valid for 7 days. Nothing happens unless you accept it.',
      ],
      actions: [{ label: 'Accept the invitation', link }],
      footer: `If you did not expect this invitation, ignore it. To report abuse, forward this message to ${abuseContact}.`,
    }),
    email_sign_in: ({ name, link, code }) => ({
      subject: code ? 'Your sign-in code' : 'Your sign-in link',
      greeting: `Hello ${name},`,
      lines: [
        link && code
          ? 'Use the button below to sign in, or enter this code where you asked for it:'
          : link
            ? 'Use the button below to sign in.'
            : 'Enter this code where you asked for it to sign in:',
        ...(code ? [code] : []),
        'It is valid for 15 minutes and works once; asking again cancels it.',
      ],
      actions: link ? [{ label: 'Sign in', link }] : [],
      footer: 'If you did not ask to sign in, ignore this message: nobody can sign in without it.',
    }),
    email_change_confirm: ({ name, newEmail, link }) => ({
      subject: 'Confirm your new email address',
      greeting: `Hello ${name},`,
      lines: [
        `You asked to change the email address of your account to ${newEmail}. Confirm that this address is yours to finish the change.`,
        'This link is valid for 24 hours and works once; until it is followed, your account keeps its current address.',
      ],
      actions: [{ label: 'Confirm the new address', link }],
      footer: 'If you did not ask for this, ignore this message: nothing changes.',
    }),
    email_change_notice: ({ name, newEmail, link, resetLink }) => ({
      subject: 'The email address of your account was changed',
      greeting: `Hello ${name},`,
      lines: [
        `The email address of your account was just changed to ${newEmail}. Mail for your account no longer comes here.`,
        'If you did not make this change, undo it with the button below within 7 days: it restores this address and signs out every session. Then reset your password.',
      ],
      actions: [
        { label: 'I did not do this: undo the change', link },
        { label: 'Reset my password', link: resetLink },
      ],
      footer: 'If you made this change, there is nothing else to do.',
    }),
    email_change_taken: ({ name, loginLink, resetLink }) => ({
      subject: 'Someone tried to move an account to your address',
      greeting: `Hello ${name},`,
      lines: [
        'Someone asked to change the email address of another account to this address, but you already have an account with it. Nothing was changed.',
        'If it was you, log in to the account that has this address, or reset its password if you have forgotten it.',
      ],
      actions: [
        { label: 'Log in', link: loginLink },
        { label: 'Reset your password', link: resetLink },
      ],
      footer: 'If it was not you, you can ignore this message: your account is unchanged.',
    }),
    account_created: ({ name, username, link, hours }) => ({
      subject: 'An account was created for you',
      greeting: `Hello ${name},`,
      lines: [
        `An administrator created an account for you, with the username ${inBody(username)}.`,
        `Choose a password to start using it. This link is valid for ${hours} hours and works once.`,
      ],
      actions: [{ label: 'Choose a password', link }],
      footer: 'If you did not expect this account, you can ignore this message.',
    }),
  },
  es: {
    verify_email: ({ name, link }) => ({
      subject: 'Verifica tu dirección de correo',
      greeting: `Hola ${name}:`,
      lines: [
        'Confirma tu dirección de correo para terminar de crear tu cuenta.',
        'Este enlace es válido durante 24 horas.',
      ],
      actions: [{ label: 'Verificar correo', link }],
      footer: 'Si no creaste una cuenta, puedes ignorar este mensaje.',
    }),
    reset_password: ({ name, link }) => ({
      subject: 'Restablece tu contraseña',
      greeting: `Hola ${name}:`,
      lines: [
        'Recibimos una solicitud para restablecer la contraseña de tu cuenta.',
        'Este enlace es válido durante 1 hora y funciona una sola vez; pedir otro enlace anula este.',
      ],
      actions: [{ label: 'Elegir una contraseña nueva', link }],
      footer: 'Si no lo pediste, puedes ignorar este mensaje: tu contraseña no cambia.',
    }),
    password_changed: ({ name, link }) => ({
      subject: 'Tu contraseña ha cambiado',
      greeting: `Hola ${name}:`,
      lines: [
        'La contraseña de tu cuenta acaba de cambiar y se cerraron tus otras sesiones.',
        'Si hiciste este cambio, no tienes que hacer nada más.',
      ],
      actions: [{ label: 'No fui yo: restablecer mi contraseña', link }],
      footer: 'Si no cambiaste tu contraseña, restablécela ahora: otra persona podría conocerla.',
    }),
    registration_attempt: ({ name, loginLink, resetLink }) => ({
      subject: 'Alguien intentó registrarse con tu dirección',
      greeting: `Hola ${name}:`,
      lines: [
        'Alguien intentó crear una cuenta nueva con esta dirección de correo, pero ya tienes una cuenta.',
        'Si fuiste tú, inicia sesión, o restablece tu contraseña si la olvidaste.',
      ],
      actions: [
        { label: 'Iniciar sesión', link: loginLink },
        { label: 'Restablecer tu contraseña', link: resetLink },
      ],
      footer: 'Si no fuiste tú, puedes ignorar este mensaje: no se cambió nada.',
    }),
    registration_username_taken: ({ username, registerLink }) => ({
      subject: 'Elige otro nombre de usuario para terminar el registro',
      greeting: 'Hola:',
      lines: [
        `Alguien, probablemente tú, pidió crear una cuenta con esta dirección de correo y el nombre de usuario "${username}".`,
        'Ese nombre de usuario ya está en uso, así que no se creó ninguna cuenta. Regístrate de nuevo y elige otro nombre de usuario.',
      ],
      actions: [{ label: 'Registrarme con otro nombre de usuario', link: registerLink }],
      footer: 'Si no fuiste tú, puedes ignorar este mensaje: no se creó ninguna cuenta para esta dirección.',
    }),
    mfa_enabled: ({ name, link, resetLink }) => ({
      subject: 'La verificación en dos pasos está activada',
      greeting: `Hola ${name}:`,
      lines: [
        'Se acaba de añadir una aplicación de autenticación a tu cuenta: a partir de ahora, iniciar sesión pide un código de ella.',
        'Guarda tus códigos de respaldo en un lugar seguro; cada uno funciona una vez si pierdes la aplicación.',
      ],
      actions: [
        { label: 'Revisar tu cuenta', link },
        { label: 'No fui yo: restablecer mi contraseña', link: resetLink },
      ],
      footer: 'Si no la activaste tú, restablece tu contraseña ahora: otra persona podría conocerla.',
    }),
    mfa_disabled: ({ name, link, resetLink, byAdmin }) => ({
      subject: 'La verificación en dos pasos está desactivada',
      greeting: `Hola ${name}:`,
      lines: [
        byAdmin
          ? 'Un administrador desactivó la verificación en dos pasos de tu cuenta: iniciar sesión pide ahora solo tu contraseña.'
          : 'Se desactivó la verificación en dos pasos de tu cuenta: iniciar sesión pide ahora solo tu contraseña.',
        'Tus códigos de respaldo ya no funcionan. Puedes activarla de nuevo desde la página de tu cuenta.',
      ],
      actions: [
        { label: 'Activarla de nuevo', link },
        { label: 'No fui yo: restablecer mi contraseña', link: resetLink },
      ],
      footer: 'Si no lo esperabas, restablece tu contraseña ahora y activa de nuevo la verificación en dos pasos.',
    }),
    mfa_backup_code_used: ({ name, remaining, link, resetLink }) => ({
      subject: 'Se usó un código de respaldo para iniciar sesión',
      greeting: `Hola ${name}:`,
      lines: [
        'Se acaba de usar uno de tus códigos de respaldo en lugar de un código de tu aplicación de autenticación.',
        `Quedan ${remaining} ${remaining === 1 ? 'código de respaldo sin usar' : 'códigos de respaldo sin usar'}. Puedes crear un juego nuevo desde la página de tu cuenta.`,
      ],
      actions: [
        { label: 'Revisar tu cuenta', link },
        { label: 'No fui yo: restablecer mi contraseña', link: resetLink },
      ],
      footer: 'Si no fuiste tú, restablece tu contraseña ahora y crea un juego nuevo de códigos de respaldo.',
    }),
    identity_linked: ({ name, provider, link, resetLink }) => ({
      subject: `Tu cuenta ya puede iniciar sesión con ${inBody(provider)}`,
      greeting: `Hola ${name}:`,
      lines: [
        `Se acaba de vincular tu cuenta de ${inBody(provider)} a tu cuenta: ahora puede iniciar tu sesión.`,
        'Puedes ver y quitar los inicios de sesión vinculados en la página de tu cuenta.',
      ],
      actions: [
        { label: 'Revisar tu cuenta', link },
        { label: 'No fui yo: restablecer mi contraseña', link: resetLink },
      ],
      footer: 'Si no lo vinculaste tú, quítalo en la página de tu cuenta y restablece tu contraseña ahora.',
    }),
    passkey_added: ({ name, passkeyName, link, resetLink }) => ({
      subject: 'Se añadió una llave de acceso a tu cuenta',
      greeting: `Hola ${name}:`,
      lines: [
        `Se acaba de añadir a tu cuenta una llave de acceso llamada "${inBody(passkeyName)}": ahora puede iniciar tu sesión sin tu contraseña.`,
        'Puedes ver y quitar tus llaves de acceso en la página de tu cuenta.',
      ],
      actions: [
        { label: 'Revisar tus llaves de acceso', link },
        { label: 'No fui yo: restablecer mi contraseña', link: resetLink },
      ],
      footer: 'Si no la añadiste tú, quítala en la página de tu cuenta y restablece tu contraseña ahora.',
    }),
    invitation: ({ organizationName, inviterName, inviterEmail, role, link, abuseContact }) => ({
      subject: `${inSubject(inviterName)} te invitó a unirte a ${inSubject(organizationName)}`,
      greeting: 'Hola:',
      lines: [
        `${inBody(inviterName)} (${inviterEmail}) te invitó a unirte a ${inBody(organizationName)} como ${roleLabel('es', role)}.`,
        'Esta invitación es válida durante 7 días. No pasa nada si no la aceptas.',
      ],
      actions: [{ label: 'Aceptar la invitación', link }],
      footer: `Si no esperabas esta invitación, ignórala. Para denunciar un abuso, reenvía este mensaje a ${abuseContact}.`,
    }),
    email_sign_in: ({ name, link, code }) => ({
      subject: code ? 'Tu código de acceso' : 'Tu enlace de acceso',
      greeting: `Hola ${name}:`,
      lines: [
        link && code
          ? 'Usa el botón de abajo para iniciar sesión, o escribe este código donde lo pediste:'
          : link
            ? 'Usa el botón de abajo para iniciar sesión.'
            : 'Escribe este código donde lo pediste para iniciar sesión:',
        ...(code ? [code] : []),
        'Es válido durante 15 minutos y funciona una sola vez; pedir otro lo anula.',
      ],
      actions: link ? [{ label: 'Iniciar sesión', link }] : [],
      footer: 'Si no pediste iniciar sesión, ignora este mensaje: nadie puede entrar sin él.',
    }),
    email_change_confirm: ({ name, newEmail, link }) => ({
      subject: 'Confirma tu nueva dirección de correo',
      greeting: `Hola ${name}:`,
      lines: [
        `Pediste cambiar la dirección de correo de tu cuenta a ${newEmail}. Confirma que esta dirección es tuya para terminar el cambio.`,
        'Este enlace es válido durante 24 horas y funciona una sola vez; hasta que lo sigas, tu cuenta conserva su dirección actual.',
      ],
      actions: [{ label: 'Confirmar la nueva dirección', link }],
      footer: 'Si no lo pediste, ignora este mensaje: no cambia nada.',
    }),
    email_change_notice: ({ name, newEmail, link, resetLink }) => ({
      subject: 'Se cambió la dirección de correo de tu cuenta',
      greeting: `Hola ${name}:`,
      lines: [
        `La dirección de correo de tu cuenta acaba de cambiar a ${newEmail}. El correo de tu cuenta ya no llega aquí.`,
        'Si no hiciste este cambio, deshazlo con el botón de abajo en un plazo de 7 días: restaura esta dirección y cierra todas las sesiones. Después restablece tu contraseña.',
      ],
      actions: [
        { label: 'No fui yo: deshacer el cambio', link },
        { label: 'Restablecer mi contraseña', link: resetLink },
      ],
      footer: 'Si hiciste este cambio, no tienes que hacer nada más.',
    }),
    email_change_taken: ({ name, loginLink, resetLink }) => ({
      subject: 'Alguien intentó llevar una cuenta a tu dirección',
      greeting: `Hola ${name}:`,
      lines: [
        'Alguien pidió cambiar la dirección de correo de otra cuenta a esta dirección, pero ya tienes una cuenta con ella. No se cambió nada.',
        'Si fuiste tú, inicia sesión en la cuenta que tiene esta dirección, o restablece su contraseña si la olvidaste.',
      ],
      actions: [
        { label: 'Iniciar sesión', link: loginLink },
        { label: 'Restablecer tu contraseña', link: resetLink },
      ],
      footer: 'Si no fuiste tú, puedes ignorar este mensaje: tu cuenta no cambió.',
    }),
    account_created: ({ name, username, link, hours }) => ({
      subject: 'Se ha creado una cuenta para ti',
      greeting: `Hola ${name}:`,
      lines: [
        `Un administrador ha creado una cuenta para ti, con el nombre de usuario ${inBody(username)}.`,
        `Elige una contraseña para empezar a usarla. Este enlace es válido durante ${hours} horas y funciona una sola vez.`,
      ],
      actions: [{ label: 'Elegir una contraseña', link }],
      footer: 'Si no esperabas esta cuenta, puedes ignorar este mensaje.',
    }),
  },
};

/** Languages beyond English and Spanish live in modules of their own (src/infra/mail-i18n). */
const LANGUAGES: Record<string, Catalog> = { ...CATALOGS, fr: FRENCH, de: GERMAN };
const ROLES_BY_LANGUAGE: Record<string, Record<string, string>> = {
  ...ROLE_LABELS,
  fr: FRENCH_ROLES,
  de: GERMAN_ROLES,
};

/** The languages every template has a built-in copy in. */
export const MAIL_LANGUAGES: readonly string[] = Object.keys(LANGUAGES);

/** Each template's placeholders are fields of its data: a template missing in MAIL_VARIABLES is a type error here. */
const VARIABLES: { readonly [T in MailTemplate]: readonly (keyof MailDataByTemplate[T] & string)[] } = MAIL_VARIABLES;

/**
 * The catalog language for a BCP 47 tag, case-insensitive: the tag, then the
 * tag with its last subtag cut (`pt-BR` → `pt`), else English.
 */
export function mailLanguage(languageCode: string): string {
  return languageChain(languageCode).find((tag) => Object.hasOwn(LANGUAGES, tag)) ?? 'en';
}

/**
 * MAIL_TEMPLATE_DIR's parts, for every mail this process renders. Mail is
 * rendered where a flow queues it, inside a transaction, far from the
 * services; the overrides come from the process's configuration, so they are
 * installed once at start-up (createServices) rather than passed down.
 * Returns the function that uninstalls them.
 */
export function useMailOverrides(next: MailOverrides): () => void {
  overrides = next;
  return () => {
    if (overrides === next) overrides = NO_MAIL_OVERRIDES;
  };
}

let overrides: MailOverrides = NO_MAIL_OVERRIDES;

/**
 * Chooses the user's language (see mailLanguage); each part (subject, text,
 * HTML) comes from MAIL_TEMPLATE_DIR when a file gives it, else from the
 * built-in copy.
 */
export function renderMail<T extends MailTemplate>(
  template: T,
  languageCode: string,
  data: MailDataByTemplate[T],
): RenderedMail {
  const language = mailLanguage(languageCode);
  const catalog = LANGUAGES[language] as Catalog;
  const content = (catalog[template] as (data: MailDataByTemplate[T]) => Content)(data);
  const override = (part: MailPart) => overridePart(overrides, template, languageCode, part);
  const values = variableValues(template, language, data);
  const subjectOverride = override('subject');
  const filledSubject = subjectOverride ? fillOverride(subjectOverride, (v) => inSubject(values[v] ?? '')) : '';
  // One line whatever a template put in it: a line break in a subject would be a header of its own.
  // An override left blank by its values (a null `code`) gives way to the built-in subject: never none.
  const subject = oneLine(filledSubject, SUBJECT_MAX) || oneLine(content.subject, SUBJECT_MAX);
  const textOverride = override('text');
  const htmlOverride = override('html');
  return {
    subject,
    // Plain text carries the values as they are; HTML escapes each of them.
    text: textOverride ? fillOverride(textOverride, (v) => values[v] ?? '') : renderText(content),
    html: htmlOverride
      ? fillOverride(htmlOverride, (v) => escapeHtml(values[v]))
      : renderHtml({ ...content, subject }, language),
  };
}

/** What each placeholder of a template shows: the data's value on one line, a role in words, nothing for null. */
function variableValues<T extends MailTemplate>(
  template: T,
  language: string,
  data: MailDataByTemplate[T],
): Record<string, string> {
  const values: Record<string, string> = {};
  for (const variable of VARIABLES[template]) {
    const value = data[variable];
    const shown = value === null || value === undefined ? '' : oneLine(String(value), OVERRIDE_VALUE_MAX);
    const roles = ROLES_BY_LANGUAGE[language] ?? {};
    values[variable] = variable === 'role' && Object.hasOwn(roles, shown) ? (roles[shown] as string) : shown;
  }
  return values;
}

/** A placeholder's value is one line of at most this many characters (a link fits). */
const OVERRIDE_VALUE_MAX = 2048;

function renderText(content: Content): string {
  return [
    content.greeting,
    '',
    ...content.lines,
    '',
    ...content.actions.map((a) => `${a.label}: ${a.link}`),
    '',
    content.footer,
    '',
  ].join('\n');
}

function renderHtml(content: Content, language: string): string {
  const muted = 'font-size:13px;color:#6b7280';
  const button =
    'display:inline-block;padding:10px 16px;background:#2563eb;color:#ffffff;border-radius:6px;text-decoration:none';
  const actions = content.actions
    .map(
      (a) =>
        `<p><a href="${escapeHtml(a.link)}" style="${button}">${escapeHtml(a.label)}</a></p>\n<p style="${muted}">${escapeHtml(a.link)}</p>`,
    )
    .join('\n');
  return `<!doctype html>
<html lang="${escapeHtml(language)}"><head><meta charset="utf-8"><title>${escapeHtml(content.subject)}</title></head>
<body style="font-family:system-ui,sans-serif;line-height:1.5;color:#1f2937">
<p>${escapeHtml(content.greeting)}</p>
${content.lines.map((l) => `<p>${escapeHtml(l)}</p>`).join('\n')}
${actions}
<p style="${muted}">${escapeHtml(content.footer)}</p>
</body></html>
`;
}
