import type { FastifyInstance, FastifyRequest } from 'fastify';
import { AppError } from '../domain/errors.ts';

export const MULTIPART = 'multipart/form-data';

/**
 * `multipart/form-data` bodies (what an HTML form with `enctype="multipart/form-data"`, curl's
 * `-F`, or a FastAPI client's form posts send) are read like `application/x-www-form-urlencoded`
 * ones: an object of strings, an array of strings for a repeated name. Fields only: a file part
 * is refused with 400 MALFORMED_REQUEST, and so is a body that is not valid multipart (a missing
 * boundary, a truncated part). The route's body limit (16 KiB on auth routes) bounds the bytes
 * read before parsing; the parser is undici's (`Response.formData()`), built into Node.
 */
export function addMultipartParser(app: FastifyInstance): void {
  app.addContentTypeParser(MULTIPART, { parseAs: 'buffer' }, async (request: FastifyRequest, body: Buffer) => {
    let form: FormData;
    try {
      form = await new Response(new Uint8Array(body) as Uint8Array<ArrayBuffer>, {
        headers: { 'content-type': String(request.headers['content-type']) },
      }).formData();
    } catch {
      throw new AppError('MALFORMED_REQUEST', { detail: 'The multipart/form-data body could not be parsed' });
    }
    const fields: Record<string, string | string[]> = Object.create(null);
    let file: string | undefined;
    form.forEach((value, name) => {
      if (typeof value !== 'string') {
        file ??= name;
        return;
      }
      const previous = fields[name];
      fields[name] = previous === undefined ? value : [...[previous].flat(), value];
    });
    if (file !== undefined) {
      throw new AppError('MALFORMED_REQUEST', { detail: `File uploads are not accepted (part "${file}")` });
    }
    return fields;
  });
}
