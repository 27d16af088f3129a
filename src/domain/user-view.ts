/** The columns every JSON view of a user is made from. */
export interface UserColumns {
  id: number;
  uuid: string;
  email: string;
  username: string;
  first_name: string | null;
  last_name: string | null;
  name: string | null;
  language_code: string;
  is_active: boolean;
  email_verified_at: Date | null;
  created_at: Date;
}

/** API.md's user fields: the columns, with `email_verified` for `email_verified_at` and ISO dates. */
export interface UserBody extends Omit<UserColumns, 'email_verified_at' | 'created_at'> {
  email_verified: boolean;
  created_at: string;
}

/** API.md's user body, shared by registration, /me and the administration API. */
export function userBody(user: UserColumns): UserBody {
  return {
    id: user.id,
    uuid: user.uuid,
    email: user.email,
    username: user.username,
    first_name: user.first_name,
    last_name: user.last_name,
    name: user.name,
    language_code: user.language_code,
    is_active: user.is_active,
    email_verified: user.email_verified_at !== null,
    created_at: user.created_at.toISOString(),
  };
}
