import { Type } from 'typebox';

/** Problem details as API.md describes them, for the OpenAPI document. */
export const Problem = Type.Object(
  {
    type: Type.String(),
    title: Type.String(),
    status: Type.Integer(),
    detail: Type.String(),
    code: Type.String(),
    issues: Type.Optional(Type.Array(Type.String())),
    errors: Type.Optional(
      Type.Array(Type.Object({ field: Type.String(), message: Type.String(), code: Type.String() })),
    ),
    recommendation: Type.Optional(Type.String()),
    retry_after: Type.Optional(Type.Integer()),
    error: Type.Optional(Type.String()),
    mfa_token: Type.Optional(Type.String({ description: 'MFA_REQUIRED: send it to POST /login/mfa with a code' })),
    methods: Type.Optional(
      Type.Array(Type.String(), {
        description: 'MFA_REQUIRED: `totp`, `backup_code`, and `webauthn` when the user has a passkey',
      }),
    ),
    expires_in: Type.Optional(Type.Integer({ description: 'MFA_REQUIRED: seconds the mfa_token stays good' })),
    enrol_url: Type.Optional(
      Type.String({ description: 'MFA_REQUIRED_BY_ORGANIZATION: the page where the second factor is turned on' }),
    ),
  },
  { $id: 'Problem', description: 'RFC 9457 problem details' },
);

export const ProblemRef = Type.Ref('Problem');

export function problems(...statuses: number[]): Record<number, typeof ProblemRef> {
  return Object.fromEntries(statuses.map((s) => [s, ProblemRef]));
}

/** A member's role, as every response names it. */
export const RoleSchema = Type.String({
  description: "`admin`, `user`, `viewer`, or one of the organization's custom roles",
});

export const UserOrganization = Type.Object({
  uuid: Type.String({ format: 'uuid' }),
  name: Type.String(),
  slug: Type.String(),
  role: RoleSchema,
});

export const UserBodyProperties = {
  id: Type.Integer(),
  uuid: Type.String({ format: 'uuid' }),
  email: Type.String(),
  username: Type.String(),
  first_name: Type.Union([Type.String(), Type.Null()]),
  last_name: Type.Union([Type.String(), Type.Null()]),
  name: Type.Union([Type.String(), Type.Null()], { description: 'Full name, when one was given' }),
  language_code: Type.String(),
  is_active: Type.Boolean(),
  email_verified: Type.Boolean(),
  created_at: Type.String({ format: 'date-time' }),
};

/** Form bodies are strings; JSON clients may send null for optional fields. */
export const OptionalText = Type.Optional(Type.Union([Type.String(), Type.Null()]));

/** The new password and its confirmation, as reset and change take them. */
export const NewPassword = {
  new_password: Type.String({ description: 'Must satisfy the password policy; checked against breach data' }),
  confirm_password: Type.String({ description: 'Must equal new_password' }),
};

/** `user_metadata` / `app_metadata` in a response: a JSON object (docs/auth.md). */
export const Metadata = (description: string) => Type.Record(Type.String(), Type.Unknown(), { description });
