import type { RoleName } from '../../domain/roles.ts';
import type { Catalog } from './catalog.ts';
import { inBody, inSubject } from './names.ts';

/** A role as the invitation names it: "… à rejoindre Acme en tant que membre". */
export const FRENCH_ROLES: Record<RoleName, string> = {
  admin: 'administrateur',
  user: 'membre',
  viewer: 'lecteur',
};

/** Every template in French; a template missing here is a type error. */
export const FRENCH: Catalog = {
  verify_email: ({ name, link }) => ({
    subject: 'Vérifiez votre adresse e-mail',
    greeting: `Bonjour ${name},`,
    lines: [
      'Confirmez votre adresse e-mail pour terminer la création de votre compte.',
      'Ce lien est valable 24 heures.',
    ],
    actions: [{ label: 'Vérifier mon adresse e-mail', link }],
    footer: "Si vous n'avez pas créé de compte, vous pouvez ignorer ce message.",
  }),
  reset_password: ({ name, link }) => ({
    subject: 'Réinitialisez votre mot de passe',
    greeting: `Bonjour ${name},`,
    lines: [
      'Nous avons reçu une demande de réinitialisation du mot de passe de votre compte.',
      "Ce lien est valable 1 heure et ne fonctionne qu'une fois ; demander un autre lien annule celui-ci.",
    ],
    actions: [{ label: 'Choisir un nouveau mot de passe', link }],
    footer: "Si vous n'avez rien demandé, vous pouvez ignorer ce message : votre mot de passe reste le même.",
  }),
  password_changed: ({ name, link }) => ({
    subject: 'Votre mot de passe a été modifié',
    greeting: `Bonjour ${name},`,
    lines: [
      'Le mot de passe de votre compte vient d’être modifié, et vos autres sessions ont été fermées.',
      "Si c'est vous qui l'avez modifié, vous n'avez rien d'autre à faire.",
    ],
    actions: [{ label: "Ce n'était pas moi : réinitialiser mon mot de passe", link }],
    footer:
      "Si vous n'avez pas modifié votre mot de passe, réinitialisez-le maintenant : quelqu'un d'autre le connaît peut-être.",
  }),
  registration_attempt: ({ name, loginLink, resetLink }) => ({
    subject: "Quelqu'un a tenté de s'inscrire avec votre adresse",
    greeting: `Bonjour ${name},`,
    lines: [
      "Quelqu'un a tenté de créer un nouveau compte avec cette adresse e-mail, mais vous avez déjà un compte.",
      "Si c'était vous, connectez-vous plutôt, ou réinitialisez votre mot de passe si vous l'avez oublié.",
    ],
    actions: [
      { label: 'Se connecter', link: loginLink },
      { label: 'Réinitialiser votre mot de passe', link: resetLink },
    ],
    footer: "Si ce n'était pas vous, vous pouvez ignorer ce message : rien n'a été modifié.",
  }),
  registration_username_taken: ({ username, registerLink }) => ({
    subject: "Choisissez un autre nom d'utilisateur pour terminer l'inscription",
    greeting: 'Bonjour,',
    lines: [
      `Quelqu'un, sans doute vous, a demandé à créer un compte avec cette adresse e-mail et le nom d'utilisateur « ${username} ».`,
      "Ce nom d'utilisateur est déjà pris, aucun compte n'a donc été créé. Inscrivez-vous de nouveau en choisissant un autre nom d'utilisateur.",
    ],
    actions: [{ label: "M'inscrire avec un autre nom d'utilisateur", link: registerLink }],
    footer: "Si ce n'était pas vous, vous pouvez ignorer ce message : aucun compte n'a été créé pour cette adresse.",
  }),
  mfa_enabled: ({ name, link, resetLink }) => ({
    subject: 'La vérification en deux étapes est activée',
    greeting: `Bonjour ${name},`,
    lines: [
      "Une application d'authentification vient d'être ajoutée à votre compte : désormais, la connexion demande un code de cette application.",
      "Gardez vos codes de secours en lieu sûr ; chacun fonctionne une fois si vous perdez l'application.",
    ],
    actions: [
      { label: 'Vérifier votre compte', link },
      { label: "Ce n'était pas moi : réinitialiser mon mot de passe", link: resetLink },
    ],
    footer:
      "Si vous ne l'avez pas activée, réinitialisez votre mot de passe maintenant : quelqu'un d'autre le connaît peut-être.",
  }),
  mfa_disabled: ({ name, link, resetLink, byAdmin }) => ({
    subject: 'La vérification en deux étapes est désactivée',
    greeting: `Bonjour ${name},`,
    lines: [
      byAdmin
        ? 'Un administrateur a désactivé la vérification en deux étapes de votre compte : la connexion ne demande plus que votre mot de passe.'
        : 'La vérification en deux étapes de votre compte a été désactivée : la connexion ne demande plus que votre mot de passe.',
      'Vos codes de secours ne fonctionnent plus. Vous pouvez la réactiver depuis la page de votre compte.',
    ],
    actions: [
      { label: 'La réactiver', link },
      { label: "Ce n'était pas moi : réinitialiser mon mot de passe", link: resetLink },
    ],
    footer:
      'Si vous ne vous y attendiez pas, réinitialisez votre mot de passe maintenant et réactivez la vérification en deux étapes.',
  }),
  mfa_backup_code_used: ({ name, remaining, link, resetLink }) => ({
    subject: 'Un code de secours a servi à se connecter',
    greeting: `Bonjour ${name},`,
    lines: [
      "L'un de vos codes de secours vient d'être utilisé à la place d'un code de votre application d'authentification.",
      `Il reste ${remaining} ${remaining <= 1 ? 'code de secours inutilisé' : 'codes de secours inutilisés'}. Vous pouvez en créer une nouvelle série depuis la page de votre compte.`,
    ],
    actions: [
      { label: 'Vérifier votre compte', link },
      { label: "Ce n'était pas moi : réinitialiser mon mot de passe", link: resetLink },
    ],
    footer:
      "Si ce n'était pas vous, réinitialisez votre mot de passe maintenant et créez une nouvelle série de codes de secours.",
  }),
  identity_linked: ({ name, provider, link, resetLink }) => ({
    subject: `Votre compte peut désormais se connecter avec ${inBody(provider)}`,
    greeting: `Bonjour ${name},`,
    lines: [
      `Votre compte ${inBody(provider)} vient d'être lié à votre compte : il peut désormais vous connecter.`,
      'Vous pouvez voir et retirer les connexions liées sur la page de votre compte.',
    ],
    actions: [
      { label: 'Vérifier votre compte', link },
      { label: "Ce n'était pas moi : réinitialiser mon mot de passe", link: resetLink },
    ],
    footer:
      "Si vous ne l'avez pas lié, retirez-le depuis la page de votre compte et réinitialisez votre mot de passe maintenant.",
  }),
  passkey_added: ({ name, passkeyName, link, resetLink }) => ({
    subject: "Une clé d'accès a été ajoutée à votre compte",
    greeting: `Bonjour ${name},`,
    lines: [
      `Une clé d'accès nommée « ${inBody(passkeyName)} » vient d'être ajoutée à votre compte : elle peut désormais vous connecter sans votre mot de passe.`,
      "Vous pouvez voir et retirer vos clés d'accès sur la page de votre compte.",
    ],
    actions: [
      { label: "Vérifier vos clés d'accès", link },
      { label: "Ce n'était pas moi : réinitialiser mon mot de passe", link: resetLink },
    ],
    footer:
      "Si vous ne l'avez pas ajoutée, retirez-la depuis la page de votre compte et réinitialisez votre mot de passe maintenant.",
  }),
  invitation: ({ organizationName, inviterName, inviterEmail, role, link, abuseContact }) => ({
    subject: `${inSubject(inviterName)} vous invite à rejoindre ${inSubject(organizationName)}`,
    greeting: 'Bonjour,',
    lines: [
      `${inBody(inviterName)} (${inviterEmail}) vous invite à rejoindre ${inBody(organizationName)} en tant que ${FRENCH_ROLES[role as RoleName] ?? role}.`,
      "Cette invitation est valable 7 jours. Rien ne se passe si vous ne l'acceptez pas.",
    ],
    actions: [{ label: "Accepter l'invitation", link }],
    footer: `Si vous n'attendiez pas cette invitation, ignorez-la. Pour signaler un abus, transférez ce message à ${abuseContact}.`,
  }),
  email_sign_in: ({ name, link, code }) => ({
    subject: code ? 'Votre code de connexion' : 'Votre lien de connexion',
    greeting: `Bonjour ${name},`,
    lines: [
      link && code
        ? "Utilisez le bouton ci-dessous pour vous connecter, ou saisissez ce code là où vous l'avez demandé :"
        : link
          ? 'Utilisez le bouton ci-dessous pour vous connecter.'
          : "Saisissez ce code là où vous l'avez demandé pour vous connecter :",
      ...(code ? [code] : []),
      "Il est valable 15 minutes et ne fonctionne qu'une fois ; le redemander l'annule.",
    ],
    actions: link ? [{ label: 'Se connecter', link }] : [],
    footer: "Si vous n'avez pas demandé à vous connecter, ignorez ce message : personne ne peut se connecter sans lui.",
  }),
  email_change_confirm: ({ name, newEmail, link }) => ({
    subject: 'Confirmez votre nouvelle adresse e-mail',
    greeting: `Bonjour ${name},`,
    lines: [
      `Vous avez demandé à remplacer l'adresse e-mail de votre compte par ${newEmail}. Confirmez que cette adresse est la vôtre pour terminer le changement.`,
      "Ce lien est valable 24 heures et ne fonctionne qu'une fois ; tant qu'il n'est pas suivi, votre compte garde son adresse actuelle.",
    ],
    actions: [{ label: 'Confirmer la nouvelle adresse', link }],
    footer: "Si vous n'avez rien demandé, ignorez ce message : rien ne change.",
  }),
  email_change_notice: ({ name, newEmail, link, resetLink }) => ({
    subject: "L'adresse e-mail de votre compte a été modifiée",
    greeting: `Bonjour ${name},`,
    lines: [
      `L'adresse e-mail de votre compte vient d'être remplacée par ${newEmail}. Le courrier de votre compte n'arrive plus ici.`,
      "Si ce n'est pas vous, annulez le changement avec le bouton ci-dessous dans les 7 jours : il rétablit cette adresse et ferme toutes les sessions. Réinitialisez ensuite votre mot de passe.",
    ],
    actions: [
      { label: "Ce n'était pas moi : annuler le changement", link },
      { label: 'Réinitialiser mon mot de passe', link: resetLink },
    ],
    footer: "Si c'est vous qui avez fait ce changement, vous n'avez rien d'autre à faire.",
  }),
  email_change_taken: ({ name, loginLink, resetLink }) => ({
    subject: "Quelqu'un a voulu déplacer un compte vers votre adresse",
    greeting: `Bonjour ${name},`,
    lines: [
      "Quelqu'un a demandé à donner cette adresse à un autre compte, mais vous avez déjà un compte avec elle. Rien n'a été modifié.",
      "Si c'était vous, connectez-vous au compte qui a cette adresse, ou réinitialisez son mot de passe si vous l'avez oublié.",
    ],
    actions: [
      { label: 'Se connecter', link: loginLink },
      { label: 'Réinitialiser votre mot de passe', link: resetLink },
    ],
    footer: "Si ce n'était pas vous, ignorez ce message : votre compte n'a pas changé.",
  }),
  account_created: ({ name, username, link, hours }) => ({
    subject: 'Un compte a été créé pour vous',
    greeting: `Bonjour ${name},`,
    lines: [
      `Un administrateur a créé un compte pour vous, avec le nom d'utilisateur ${inBody(username)}.`,
      `Choisissez un mot de passe pour commencer à l'utiliser. Ce lien est valable ${hours} heures et ne fonctionne qu'une fois.`,
    ],
    actions: [{ label: 'Choisir un mot de passe', link }],
    footer: "Si vous n'attendiez pas ce compte, vous pouvez ignorer ce message.",
  }),
};
