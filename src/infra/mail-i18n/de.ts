import type { RoleName } from '../../domain/roles.ts';
import type { Catalog } from './catalog.ts';
import { inBody, inSubject } from './names.ts';

/** A role as the invitation names it: "… Acme als Mitglied beizutreten". */
export const GERMAN_ROLES: Record<RoleName, string> = {
  admin: 'Administrator',
  user: 'Mitglied',
  viewer: 'Leser',
};

/** Every template in German; a template missing here is a type error. */
export const GERMAN: Catalog = {
  verify_email: ({ name, link }) => ({
    subject: 'Bestätigen Sie Ihre E-Mail-Adresse',
    greeting: `Hallo ${name},`,
    lines: [
      'Bitte bestätigen Sie Ihre E-Mail-Adresse, um die Erstellung Ihres Kontos abzuschließen.',
      'Dieser Link ist 24 Stunden gültig.',
    ],
    actions: [{ label: 'E-Mail-Adresse bestätigen', link }],
    footer: 'Wenn Sie kein Konto erstellt haben, können Sie diese Nachricht ignorieren.',
  }),
  reset_password: ({ name, link }) => ({
    subject: 'Setzen Sie Ihr Passwort zurück',
    greeting: `Hallo ${name},`,
    lines: [
      'Wir haben eine Anfrage erhalten, das Passwort Ihres Kontos zurückzusetzen.',
      'Dieser Link ist 1 Stunde gültig und funktioniert einmal; ein neuer Link macht diesen ungültig.',
    ],
    actions: [{ label: 'Neues Passwort wählen', link }],
    footer:
      'Wenn Sie das nicht angefordert haben, können Sie diese Nachricht ignorieren: Ihr Passwort bleibt unverändert.',
  }),
  password_changed: ({ name, link }) => ({
    subject: 'Ihr Passwort wurde geändert',
    greeting: `Hallo ${name},`,
    lines: [
      'Das Passwort Ihres Kontos wurde soeben geändert, und Ihre anderen Sitzungen wurden abgemeldet.',
      'Wenn Sie diese Änderung vorgenommen haben, müssen Sie nichts weiter tun.',
    ],
    actions: [{ label: 'Das war ich nicht: Passwort zurücksetzen', link }],
    footer:
      'Wenn Sie Ihr Passwort nicht geändert haben, setzen Sie es jetzt zurück: Jemand anderes kennt es möglicherweise.',
  }),
  registration_attempt: ({ name, loginLink, resetLink }) => ({
    subject: 'Jemand hat versucht, sich mit Ihrer Adresse zu registrieren',
    greeting: `Hallo ${name},`,
    lines: [
      'Jemand hat versucht, mit dieser E-Mail-Adresse ein neues Konto zu erstellen, aber Sie haben bereits ein Konto.',
      'Wenn Sie das waren, melden Sie sich stattdessen an, oder setzen Sie Ihr Passwort zurück, falls Sie es vergessen haben.',
    ],
    actions: [
      { label: 'Anmelden', link: loginLink },
      { label: 'Passwort zurücksetzen', link: resetLink },
    ],
    footer: 'Wenn Sie das nicht waren, können Sie diese Nachricht ignorieren: Es wurde nichts geändert.',
  }),
  registration_username_taken: ({ username, registerLink }) => ({
    subject: 'Wählen Sie einen anderen Benutzernamen, um die Registrierung abzuschließen',
    greeting: 'Hallo,',
    lines: [
      `Jemand, vermutlich Sie, wollte mit dieser E-Mail-Adresse und dem Benutzernamen „${username}“ ein Konto erstellen.`,
      'Dieser Benutzername ist bereits vergeben, daher wurde kein Konto erstellt. Registrieren Sie sich erneut und wählen Sie einen anderen Benutzernamen.',
    ],
    actions: [{ label: 'Mit einem anderen Benutzernamen registrieren', link: registerLink }],
    footer:
      'Wenn Sie das nicht waren, können Sie diese Nachricht ignorieren: Für diese Adresse wurde kein Konto erstellt.',
  }),
  mfa_enabled: ({ name, link, resetLink }) => ({
    subject: 'Die Zwei-Schritt-Verifizierung ist aktiviert',
    greeting: `Hallo ${name},`,
    lines: [
      'Ihrem Konto wurde soeben eine Authentifizierungs-App hinzugefügt: Ab jetzt fragt die Anmeldung nach einem Code aus dieser App.',
      'Bewahren Sie Ihre Backup-Codes sicher auf; jeder funktioniert einmal, falls Sie die App verlieren.',
    ],
    actions: [
      { label: 'Konto überprüfen', link },
      { label: 'Das war ich nicht: Passwort zurücksetzen', link: resetLink },
    ],
    footer:
      'Wenn Sie das nicht aktiviert haben, setzen Sie Ihr Passwort jetzt zurück: Jemand anderes kennt es möglicherweise.',
  }),
  mfa_disabled: ({ name, link, resetLink, byAdmin }) => ({
    subject: 'Die Zwei-Schritt-Verifizierung ist deaktiviert',
    greeting: `Hallo ${name},`,
    lines: [
      byAdmin
        ? 'Ein Administrator hat die Zwei-Schritt-Verifizierung für Ihr Konto deaktiviert: Die Anmeldung fragt jetzt nur noch nach Ihrem Passwort.'
        : 'Die Zwei-Schritt-Verifizierung für Ihr Konto wurde deaktiviert: Die Anmeldung fragt jetzt nur noch nach Ihrem Passwort.',
      'Ihre Backup-Codes funktionieren nicht mehr. Sie können sie auf Ihrer Kontoseite wieder aktivieren.',
    ],
    actions: [
      { label: 'Wieder aktivieren', link },
      { label: 'Das war ich nicht: Passwort zurücksetzen', link: resetLink },
    ],
    footer:
      'Wenn Sie das nicht erwartet haben, setzen Sie Ihr Passwort jetzt zurück und aktivieren Sie die Zwei-Schritt-Verifizierung wieder.',
  }),
  mfa_backup_code_used: ({ name, remaining, link, resetLink }) => ({
    subject: 'Ein Backup-Code wurde zur Anmeldung verwendet',
    greeting: `Hallo ${name},`,
    lines: [
      'Einer Ihrer Backup-Codes wurde soeben anstelle eines Codes aus Ihrer Authentifizierungs-App verwendet.',
      `${remaining === 1 ? 'Ein unbenutzter Backup-Code ist' : `${remaining} unbenutzte Backup-Codes sind`} übrig. Auf Ihrer Kontoseite können Sie neue Codes erstellen.`,
    ],
    actions: [
      { label: 'Konto überprüfen', link },
      { label: 'Das war ich nicht: Passwort zurücksetzen', link: resetLink },
    ],
    footer: 'Wenn Sie das nicht waren, setzen Sie Ihr Passwort jetzt zurück und erstellen Sie neue Backup-Codes.',
  }),
  identity_linked: ({ name, provider, link, resetLink }) => ({
    subject: `Ihr Konto kann sich jetzt mit ${inBody(provider)} anmelden`,
    greeting: `Hallo ${name},`,
    lines: [
      `Ihr ${inBody(provider)}-Konto wurde soeben mit Ihrem Konto verknüpft: Es kann Sie jetzt anmelden.`,
      'Auf Ihrer Kontoseite können Sie verknüpfte Anmeldungen sehen und entfernen.',
    ],
    actions: [
      { label: 'Konto überprüfen', link },
      { label: 'Das war ich nicht: Passwort zurücksetzen', link: resetLink },
    ],
    footer:
      'Wenn Sie es nicht verknüpft haben, entfernen Sie es auf Ihrer Kontoseite und setzen Sie Ihr Passwort jetzt zurück.',
  }),
  passkey_added: ({ name, passkeyName, link, resetLink }) => ({
    subject: 'Ihrem Konto wurde ein Passkey hinzugefügt',
    greeting: `Hallo ${name},`,
    lines: [
      `Ihrem Konto wurde soeben ein Passkey namens „${inBody(passkeyName)}“ hinzugefügt: Er kann Sie jetzt ohne Passwort anmelden.`,
      'Auf Ihrer Kontoseite können Sie Ihre Passkeys sehen und entfernen.',
    ],
    actions: [
      { label: 'Passkeys überprüfen', link },
      { label: 'Das war ich nicht: Passwort zurücksetzen', link: resetLink },
    ],
    footer:
      'Wenn Sie ihn nicht hinzugefügt haben, entfernen Sie ihn auf Ihrer Kontoseite und setzen Sie Ihr Passwort jetzt zurück.',
  }),
  invitation: ({ organizationName, inviterName, inviterEmail, role, link, abuseContact }) => ({
    subject: `${inSubject(inviterName)} hat Sie eingeladen, ${inSubject(organizationName)} beizutreten`,
    greeting: 'Hallo,',
    lines: [
      `${inBody(inviterName)} (${inviterEmail}) hat Sie eingeladen, ${inBody(organizationName)} als ${GERMAN_ROLES[role as RoleName] ?? role} beizutreten.`,
      'Diese Einladung ist 7 Tage gültig. Es passiert nichts, solange Sie sie nicht annehmen.',
    ],
    actions: [{ label: 'Einladung annehmen', link }],
    footer: `Wenn Sie diese Einladung nicht erwartet haben, ignorieren Sie sie. Um Missbrauch zu melden, leiten Sie diese Nachricht an ${abuseContact} weiter.`,
  }),
  email_sign_in: ({ name, link, code }) => ({
    subject: code ? 'Ihr Anmeldecode' : 'Ihr Anmeldelink',
    greeting: `Hallo ${name},`,
    lines: [
      link && code
        ? 'Melden Sie sich über die Schaltfläche unten an, oder geben Sie diesen Code dort ein, wo Sie ihn angefordert haben:'
        : link
          ? 'Melden Sie sich über die Schaltfläche unten an.'
          : 'Geben Sie diesen Code dort ein, wo Sie ihn angefordert haben, um sich anzumelden:',
      ...(code ? [code] : []),
      'Er ist 15 Minuten gültig und funktioniert einmal; eine neue Anforderung macht ihn ungültig.',
    ],
    actions: link ? [{ label: 'Anmelden', link }] : [],
    footer:
      'Wenn Sie keine Anmeldung angefordert haben, ignorieren Sie diese Nachricht: Ohne sie kann sich niemand anmelden.',
  }),
  email_change_confirm: ({ name, newEmail, link }) => ({
    subject: 'Bestätigen Sie Ihre neue E-Mail-Adresse',
    greeting: `Hallo ${name},`,
    lines: [
      `Sie haben beantragt, die E-Mail-Adresse Ihres Kontos in ${newEmail} zu ändern. Bestätigen Sie, dass diese Adresse Ihnen gehört, um die Änderung abzuschließen.`,
      'Dieser Link ist 24 Stunden gültig und funktioniert nur einmal; bis er geöffnet wird, behält Ihr Konto seine bisherige Adresse.',
    ],
    actions: [{ label: 'Neue Adresse bestätigen', link }],
    footer: 'Wenn Sie das nicht beantragt haben, ignorieren Sie diese Nachricht: Es ändert sich nichts.',
  }),
  email_change_notice: ({ name, newEmail, link, resetLink }) => ({
    subject: 'Die E-Mail-Adresse Ihres Kontos wurde geändert',
    greeting: `Hallo ${name},`,
    lines: [
      `Die E-Mail-Adresse Ihres Kontos wurde soeben in ${newEmail} geändert. Post für Ihr Konto kommt nicht mehr hier an.`,
      'Wenn Sie das nicht waren, machen Sie die Änderung innerhalb von 7 Tagen mit der Schaltfläche unten rückgängig: Sie stellt diese Adresse wieder her und beendet alle Sitzungen. Setzen Sie danach Ihr Passwort zurück.',
    ],
    actions: [
      { label: 'Das war ich nicht: Änderung rückgängig machen', link },
      { label: 'Mein Passwort zurücksetzen', link: resetLink },
    ],
    footer: 'Wenn Sie die Änderung selbst vorgenommen haben, ist nichts weiter zu tun.',
  }),
  email_change_taken: ({ name, loginLink, resetLink }) => ({
    subject: 'Jemand wollte ein Konto auf Ihre Adresse umstellen',
    greeting: `Hallo ${name},`,
    lines: [
      'Jemand hat beantragt, die E-Mail-Adresse eines anderen Kontos in diese Adresse zu ändern, aber Sie haben bereits ein Konto mit ihr. Es wurde nichts geändert.',
      'Wenn Sie das waren, melden Sie sich bei dem Konto mit dieser Adresse an, oder setzen Sie sein Passwort zurück, falls Sie es vergessen haben.',
    ],
    actions: [
      { label: 'Anmelden', link: loginLink },
      { label: 'Passwort zurücksetzen', link: resetLink },
    ],
    footer: 'Wenn Sie das nicht waren, können Sie diese Nachricht ignorieren: Ihr Konto ist unverändert.',
  }),
  account_created: ({ name, username, link, hours }) => ({
    subject: 'Für Sie wurde ein Konto angelegt',
    greeting: `Hallo ${name},`,
    lines: [
      `Ein Administrator hat für Sie ein Konto mit dem Benutzernamen ${inBody(username)} angelegt.`,
      `Wählen Sie ein Passwort, um es zu nutzen. Dieser Link ist ${hours} Stunden gültig und funktioniert nur einmal.`,
    ],
    actions: [{ label: 'Passwort wählen', link }],
    footer: 'Wenn Sie dieses Konto nicht erwartet haben, können Sie diese Nachricht ignorieren.',
  }),
};
