import { Ajv } from 'ajv';
import addFormats from 'ajv-formats';
import type { FastifySchemaCompiler } from 'fastify';

/**
 * Bodies are validated as sent: no type coercion (12345 is not a string) and
 * no silent removal of unknown properties. Query strings and path parameters
 * are text by nature, so those are coerced.
 */
export function validatorCompiler(): FastifySchemaCompiler<unknown> {
  const strict = new Ajv({
    coerceTypes: false,
    removeAdditional: false,
    allErrors: true,
    useDefaults: true,
    strict: false,
  });
  const lenient = new Ajv({
    coerceTypes: true,
    removeAdditional: false,
    allErrors: true,
    useDefaults: true,
    strict: false,
  });
  addFormats.default(strict);
  addFormats.default(lenient);
  return ({ schema, httpPart }) => {
    const ajv = httpPart === 'body' ? strict : lenient;
    return ajv.compile(schema as object) as ReturnType<FastifySchemaCompiler<unknown>>;
  };
}
