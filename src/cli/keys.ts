import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { calculateJwkThumbprint, exportJWK, exportPKCS8, generateKeyPair } from 'jose';
import type { JwtAlgorithm } from '../config.ts';
import { keysDirectory, rotateSigningKey } from '../infra/tokens.ts';
import { CliError, type Command, EXIT_OK, EXIT_USAGE, parseCommandLine, readConfig } from './shared.ts';

const ALGORITHMS: readonly JwtAlgorithm[] = ['HS256', 'EdDSA', 'ES256', 'RS256'];
const KEY_OPTIONS = { EdDSA: { crv: 'Ed25519' }, ES256: {}, RS256: { modulusLength: 3072 } } as const;

function writeSecret(text: string, out: string | undefined): void {
  if (out) {
    // Exclusive create: never overwrite a key someone already relies on.
    try {
      writeFileSync(out, text, { mode: 0o600, flag: 'wx' });
    } catch (error) {
      throw new CliError(`cannot write ${out}: ${error instanceof Error ? error.message : String(error)}`);
    }
  } else {
    process.stdout.write(text);
  }
}

export const keysGenerateCommand: Command = {
  name: 'keys generate',
  summary: 'Generate a JWT signing key (SECRET_KEY or JWT_PRIVATE_KEY)',
  usage: 'gatehouse keys generate [--algorithm HS256|EdDSA|ES256|RS256] [--out FILE]',
  help: `Prints a new key to stdout, or writes it to FILE (mode 0600, never overwriting):
  HS256                 a random 256-bit SECRET_KEY value
  EdDSA, ES256, RS256   a PKCS#8 PEM private key for JWT_PRIVATE_KEY; its key id
                        (the JWK thumbprint published in the JWKS) goes to stderr
Needs no database. The algorithm defaults to ALGORITHM, else HS256.`,
  async run(args) {
    const { values } = parseCommandLine(args, { algorithm: { type: 'string' }, out: { type: 'string' } });
    const requested = values.algorithm ?? process.env.ALGORITHM ?? 'HS256';
    const algorithm = ALGORITHMS.find((a) => a.toLowerCase() === requested.toLowerCase());
    if (!algorithm)
      throw new CliError(`--algorithm must be one of ${ALGORITHMS.join(', ')}, got "${requested}"`, EXIT_USAGE);
    if (algorithm === 'HS256') {
      writeSecret(`${randomBytes(32).toString('base64url')}\n`, values.out);
      return EXIT_OK;
    }
    const { privateKey } = await generateKeyPair(algorithm, { ...KEY_OPTIONS[algorithm], extractable: true });
    const kid = await calculateJwkThumbprint(await exportJWK(privateKey));
    writeSecret(await exportPKCS8(privateKey), values.out);
    process.stderr.write(
      `Generated an ${algorithm} signing key, kid ${kid}. Set it as JWT_PRIVATE_KEY with ALGORITHM=${algorithm}.\n`,
    );
    return EXIT_OK;
  },
};

export const keysRotateCommand: Command = {
  name: 'keys rotate',
  summary: 'Put a new signing key in the key ring and retire the current one',
  usage: 'gatehouse keys rotate',
  help: `For ALGORITHM=EdDSA, ES256 or RS256 with the key ring (JWT_KEYS_DIR, default
DATA_DIR/jwt-keys; share it between instances). New tokens are signed with the
new key; retired keys keep verifying, and stay in /.well-known/jwks.json,
until the last token they signed has expired. Running instances switch on
restart, or as soon as they see a token signed with the new key.

With HS256 the key is SECRET_KEY: change it instead (every token is then invalid).
With JWT_PRIVATE_KEY set: generate a new key with \`gatehouse keys generate\` and
replace the variable.`,
  async run(args) {
    parseCommandLine(args, {});
    const config = readConfig();
    if (config.algorithm === 'HS256') {
      throw new CliError('ALGORITHM=HS256 signs with SECRET_KEY, which has no key ring: change SECRET_KEY to rotate');
    }
    if (config.jwtPrivateKey) {
      throw new CliError('JWT_PRIVATE_KEY is set: run `gatehouse keys generate` and replace the variable to rotate');
    }
    const { kid, retired } = await rotateSigningKey(config, new Date());
    process.stdout.write(`New ${config.algorithm} signing key ${kid} in ${keysDirectory(config)}.\n`);
    process.stdout.write(retired.length ? `Retired: ${retired.join(', ')}\n` : 'No key was active before.\n');
    return EXIT_OK;
  },
};
