/** Who is asking, as far as the records need to know. */
export interface RequestContext {
  ip: string | null;
  userAgent: string | null;
}

export const SYSTEM_CONTEXT: RequestContext = { ip: null, userAgent: null };
