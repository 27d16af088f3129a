/**
 * The types every language's catalogue is written against, apart from the
 * renderer so that the catalogues and the renderer do not import each other.
 */

/** What each mail needs; every value is interpolated escaped in the HTML part. */
export interface MailDataByTemplate {
  verify_email: { name: string; link: string };
  reset_password: { name: string; link: string };
  /** `link` leads to the forgot-password page, for the owner who did not make the change. */
  password_changed: { name: string; link: string };
  /** Sent to the owner when REGISTRATION_ENUMERATION_SAFE hides that the address is taken. */
  registration_attempt: { name: string; loginLink: string; resetLink: string };
  /**
   * Sent to the address given when REGISTRATION_ENUMERATION_SAFE hides that
   * the username asked for is taken; `registerLink` leads to the form.
   */
  registration_username_taken: { username: string; registerLink: string };
  /**
   * `organizationName` and `inviterName` are chosen by the inviter: they reach
   * the subject on one line and cut short (`oneLine`). `abuseContact` is where
   * the recipient reports an unwanted invitation (ABUSE_CONTACT).
   */
  /** `link` leads to the account page, `resetLink` to forgot-password, for the owner who did not do it. */
  mfa_enabled: { name: string; link: string; resetLink: string };
  /** `byAdmin`: an administrator turned it off (POST /admin/users/{uuid}/mfa/reset, `gatehouse users mfa-reset`). */
  mfa_disabled: { name: string; link: string; resetLink: string; byAdmin: boolean };
  mfa_backup_code_used: { name: string; remaining: number; link: string; resetLink: string };
  /** A sign-in link, a 6-digit code, or both (EMAIL_SIGN_IN); each valid 15 minutes, once. */
  email_sign_in: { name: string; link: string | null; code: string | null };
  /** `passkeyName` is chosen by the user: cut short, on one line. */
  passkey_added: { name: string; passkeyName: string; link: string; resetLink: string };
  /** `provider`: the SSO provider's name as its button shows it (Google, GitHub, Acme). */
  identity_linked: { name: string; provider: string; link: string; resetLink: string };
  /** To the new address: `link` confirms the change (24 hours, once). */
  email_change_confirm: { name: string; newEmail: string; link: string };
  /** To the old address once the change is confirmed: `link` reverts it (7 days, once), `resetLink` to forgot-password. */
  email_change_notice: { name: string; newEmail: string; link: string; resetLink: string };
  /** To the new address when another account has it: nothing changes; `name` is that account's owner. */
  email_change_taken: { name: string; loginLink: string; resetLink: string };
  invitation: {
    organizationName: string;
    inviterName: string;
    inviterEmail: string;
    role: string;
    link: string;
    abuseContact: string;
  } /**
   * An administrator made the account without a password (POST /admin/users,
   * `gatehouse users create`): `link` opens the reset page to choose one, valid
   * `hours` hours; following it also confirms the address.
   */;
  account_created: { name: string; username: string; link: string; hours: number };
}

export type MailTemplate = keyof MailDataByTemplate;

interface Action {
  label: string;
  link: string;
}

/** One mail in one language, as plain strings; the layout below escapes them. */
export interface Content {
  subject: string;
  greeting: string;
  lines: string[];
  actions: Action[];
  footer: string;
}

export type Catalog = { [T in MailTemplate]: (data: MailDataByTemplate[T]) => Content };
