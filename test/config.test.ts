import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ConfigError, loadConfig, readEnvironment } from '../src/config.ts';

const dataDir = () => mkdtempSync(join(tmpdir(), 'gatehouse-config-'));

test('defaults follow DESIGN.md', () => {
  const c = loadConfig({ DATA_DIR: dataDir() });
  assert.equal(c.port, 8000);
  assert.equal(c.host, '0.0.0.0');
  assert.equal(c.publicUrl, 'http://localhost:8000');
  assert.equal(c.environment, 'development');
  assert.equal(c.databaseUrl, undefined);
  assert.equal(c.databasePoolSize, 20);
  assert.equal(c.redisUrl, undefined);
  assert.equal(c.algorithm, 'HS256');
  assert.equal(c.accessTokenExpireMinutes, 30);
  assert.equal(c.refreshTokenExpireDays, 7);
  assert.equal(c.refreshReuseIntervalSeconds, 10);
  assert.equal(c.passwordHasher, 'argon2id');
  assert.equal(c.bcryptRounds, 14);
  assert.equal(c.passwordPolicy, 'strict');
  assert.equal(c.passwordMinLength, 12);
  assert.equal(c.breachCheck, 'offline');
  assert.equal(c.requireEmailVerification, true);
  assert.deepEqual(c.rateLimitRegister, { points: 5, durationSeconds: 3600, blockSeconds: 0 });
  assert.deepEqual(c.rateLimitLogin, { points: 10, durationSeconds: 900, blockSeconds: 0 });
  assert.equal(c.lockoutThreshold, 5);
  assert.equal(c.lockoutMinutes, 15);
  assert.equal(c.captchaProvider, undefined);
  assert.equal(c.trustProxy, false);
  assert.deepEqual(c.corsOrigins, []);
  assert.equal(c.logLevel, 'info');
});

test('outside production a missing SECRET_KEY is generated once into the data directory and reused', () => {
  const dir = dataDir();
  const a = loadConfig({ DATA_DIR: dir });
  const b = loadConfig({ DATA_DIR: dir });
  assert.ok(Buffer.byteLength(a.secretKey) >= 32);
  assert.equal(a.secretKey, b.secretKey);
  assert.equal(readFileSync(join(dir, 'secret_key'), 'utf8').trim(), a.secretKey);
});

const bad: Array<[string, string]> = [
  ['PORT', 'eighty'],
  ['PORT', '70000'],
  ['DATABASE_POOL_SIZE', '0'],
  ['DATABASE_POOL_SIZE', 'many'],
  ['ENVIRONMENT', 'staging'],
  ['ALGORITHM', 'none'],
  ['ACCESS_TOKEN_EXPIRE_MINUTES', '-5'],
  ['PASSWORD_HASHER', 'md5'],
  ['BCRYPT_ROUNDS', '3'],
  ['PASSWORD_POLICY', 'lax'],
  ['BREACH_CHECK', 'maybe'],
  ['REQUIRE_EMAIL_VERIFICATION', 'perhaps'],
  ['RATE_LIMIT_REGISTER', 'five per hour'],
  ['RATE_LIMIT_LOGIN', '10/15y'],
  ['LOCKOUT_THRESHOLD', '0'],
  ['HOUSEKEEPING_INTERVAL_MINUTES', '-1'],
  ['LOGIN_ATTEMPTS_RETENTION_DAYS', '0'],
  ['MAIL_RETENTION_DAYS', 'forever'],
  ['CAPTCHA_PROVIDER', 'recaptcha-v9'],
  ['PUBLIC_URL', 'not a url'],
  ['SMTP_URL', 'http://mail.example.com'],
  ['TRUST_PROXY', 'everyone'],
  ['SECRET_KEY', 'too-short'],
  ['LOG_LEVEL', 'loud'],
];
for (const [name, value] of bad) {
  test(`${name}=${value} is refused with a message naming ${name}`, () => {
    assert.throws(
      () => loadConfig({ DATA_DIR: dataDir(), [name]: value }),
      (e: unknown) => e instanceof ConfigError && e.variable === name && e.message.startsWith(`${name}:`),
    );
  });
}

test('CAPTCHA_PROVIDER without CAPTCHA_SECRET_KEY is refused', () => {
  assert.throws(() => loadConfig({ DATA_DIR: dataDir(), CAPTCHA_PROVIDER: 'turnstile' }), /CAPTCHA_SECRET_KEY/);
});

test('ENVIRONMENT=production refuses a missing or short SECRET_KEY', () => {
  const base = {
    DATA_DIR: dataDir(),
    ENVIRONMENT: 'production',
    SMTP_URL: 'smtp://mail.example.com',
    PUBLIC_URL: 'https://auth.example.com',
  };
  assert.throws(() => loadConfig(base), /SECRET_KEY/);
  assert.throws(() => loadConfig({ ...base, SECRET_KEY: 'x'.repeat(31) }), /SECRET_KEY/);
  assert.equal(loadConfig({ ...base, SECRET_KEY: 'x'.repeat(32) }).environment, 'production');
});

test('PUBLIC_URL defaults to the address listened on; production requires it', () => {
  assert.equal(loadConfig({ DATA_DIR: dataDir(), PORT: '18921' }).publicUrl, 'http://localhost:18921');
  assert.equal(loadConfig({ DATA_DIR: dataDir(), PORT: '18921' }).jwtIssuer, 'http://localhost:18921');
  assert.equal(loadConfig({ DATA_DIR: dataDir(), HOST: '127.0.0.2', PORT: '9' }).publicUrl, 'http://127.0.0.2:9');
  assert.equal(loadConfig({ DATA_DIR: dataDir(), HOST: '::1', PORT: '9' }).publicUrl, 'http://[::1]:9');
  const production = {
    DATA_DIR: dataDir(),
    ENVIRONMENT: 'production',
    SECRET_KEY: 'x'.repeat(32),
    SMTP_URL: 'smtp://mail.example.com',
  };
  assert.throws(
    () => loadConfig(production),
    (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.equal(error.variable, 'PUBLIC_URL');
      return true;
    },
  );
  assert.equal(
    loadConfig({ ...production, PUBLIC_URL: 'https://auth.example.com/' }).publicUrl,
    'https://auth.example.com',
  );
});

test('the ready line names the address really listened on, and PORT=0 becomes a real port everywhere', async () => {
  const child = spawn(process.execPath, ['src/main.ts'], {
    env: { PATH: process.env.PATH, DATA_DIR: dataDir(), PORT: '0', HOST: '127.0.0.1', DATABASE_URL: 'memory://' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  try {
    let out = '';
    const line = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ready line: ${out}`)), 90_000);
      child.stdout.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        const ready = out.split('\n').find((l) => l.includes('Gatehouse ready at'));
        if (ready) {
          clearTimeout(timer);
          resolve(ready);
        }
      });
      child.once('exit', (code) => reject(new Error(`exited ${code}: ${out}`)));
    });
    const match = /Gatehouse ready at http:\/\/127\.0\.0\.1:(\d+) \(listening on http:\/\/127\.0\.0\.1:(\d+);/.exec(
      line,
    );
    assert.ok(match, line);
    assert.equal(match[1], match[2]);
    assert.notEqual(match[1], '0');
    const health = await fetch(`http://127.0.0.1:${match[1]}/healthz`);
    assert.equal(health.status, 200);
  } finally {
    child.kill('SIGKILL');
  }
});

test('ENVIRONMENT=production without SMTP_URL starts with a loud warning naming SMTP_URL', () => {
  const c = loadConfig({
    DATA_DIR: dataDir(),
    ENVIRONMENT: 'production',
    SECRET_KEY: 'x'.repeat(32),
    PUBLIC_URL: 'https://auth.example.com',
  });
  assert.equal(c.smtpUrl, undefined);
  assert.equal(c.warnings.length, 1);
  assert.match(
    c.warnings[0] ?? '',
    /SMTP_URL is not set while ENVIRONMENT=production: NO MAIL IS SENT.*SMTP_URL=smtp:\/\//,
  );
  const withSmtp = loadConfig({
    DATA_DIR: dataDir(),
    ENVIRONMENT: 'production',
    SECRET_KEY: 'x'.repeat(32),
    PUBLIC_URL: 'https://auth.example.com',
    SMTP_URL: 'smtp://mail.example.com',
  });
  assert.deepEqual(withSmtp.warnings, []);
});

test('DATABASE_PASSWORD and REDIS_PASSWORD go into a URL without a password', () => {
  const c = loadConfig({
    DATA_DIR: dataDir(),
    DATABASE_URL: 'postgres://gatehouse@db.internal:5432/depin?sslmode=require',
    DATABASE_PASSWORD: 'p@ss/w:rd+=',
    REDIS_URL: 'redis://redis.internal:6379/2',
    REDIS_PASSWORD: 's3cret',
  });
  const db = new URL(c.databaseUrl ?? '');
  assert.equal(decodeURIComponent(db.password), 'p@ss/w:rd+=');
  assert.equal(db.username, 'gatehouse');
  assert.equal(db.host, 'db.internal:5432');
  assert.equal(db.pathname, '/depin');
  assert.equal(db.searchParams.get('sslmode'), 'require');
  assert.equal(c.redisUrl, 'redis://:s3cret@redis.internal:6379/2');
  assert.deepEqual(c.warnings, []);
});

test('a separate password the URL cannot take is named in a warning, never its value', () => {
  const c = loadConfig({
    DATA_DIR: dataDir(),
    DATABASE_URL: 'postgres://u:own@db.internal/depin',
    DATABASE_PASSWORD: 'other-secret',
    REDIS_PASSWORD: 'redis-secret',
  });
  assert.equal(c.databaseUrl, 'postgres://u:own@db.internal/depin');
  assert.equal(c.redisUrl, undefined);
  assert.equal(c.warnings.length, 2);
  assert.match(c.warnings[0] ?? '', /^DATABASE_PASSWORD is ignored: DATABASE_URL carries a password/);
  assert.match(c.warnings[1] ?? '', /^REDIS_PASSWORD is ignored/);
  assert.doesNotMatch(c.warnings.join('\n'), /secret/);
});

test('DEBUG=true logs at debug level unless LOG_LEVEL says otherwise; DEBUG=False is read', () => {
  assert.equal(loadConfig({ DATA_DIR: dataDir(), DEBUG: 'true' }).logLevel, 'debug');
  assert.equal(loadConfig({ DATA_DIR: dataDir(), DEBUG: 'False' }).logLevel, 'info');
  assert.equal(loadConfig({ DATA_DIR: dataDir(), DEBUG: 'true', LOG_LEVEL: 'warn' }).logLevel, 'warn');
  assert.throws(() => loadConfig({ DATA_DIR: dataDir(), DEBUG: 'maybe' }), /^ConfigError: DEBUG: /);
  const production = {
    DATA_DIR: dataDir(),
    ENVIRONMENT: 'production',
    SECRET_KEY: 'x'.repeat(32),
    PUBLIC_URL: 'https://auth.example.com',
    SMTP_URL: 'smtp://mail.example.com',
  };
  assert.deepEqual(loadConfig({ ...production, DEBUG: 'False' }).warnings, []);
  const debug = loadConfig({ ...production, DEBUG: 'True' });
  assert.equal(debug.logLevel, 'debug');
  assert.match(debug.warnings.join('\n'), /DEBUG=true while ENVIRONMENT=production/);
});

test('rate limits, lists and trusted proxies parse', () => {
  const c = loadConfig({
    DATA_DIR: dataDir(),
    RATE_LIMIT_REGISTER: '100/30s',
    RATE_LIMIT_LOGIN: '3/1d',
    CORS_ORIGINS: 'https://a.example, https://b.example',
    TRUST_PROXY: '10.0.0.0/8, 127.0.0.1',
  });
  assert.deepEqual(c.rateLimitRegister, { points: 100, durationSeconds: 30, blockSeconds: 0 });
  assert.deepEqual(c.rateLimitLogin, { points: 3, durationSeconds: 86400, blockSeconds: 0 });
  assert.deepEqual(c.corsOrigins, ['https://a.example', 'https://b.example']);
  const blocked = loadConfig({
    DATA_DIR: dataDir(),
    RATE_LIMIT_REGISTER: '20/1h,block=24h',
    RATE_LIMIT_LOGIN: '5/1m, block = 30m',
  });
  assert.deepEqual(blocked.rateLimitRegister, { points: 20, durationSeconds: 3600, blockSeconds: 86400 });
  assert.deepEqual(blocked.rateLimitLogin, { points: 5, durationSeconds: 60, blockSeconds: 1800 });
  assert.throws(
    () => loadConfig({ DATA_DIR: dataDir(), RATE_LIMIT_REGISTER: '20/1h,block=forever' }),
    /RATE_LIMIT_REGISTER: must look like COUNT\/WINDOW\[,block=DURATION\]/,
  );
  // The invitation limits are counted in PostgreSQL and take no block.
  assert.throws(
    () => loadConfig({ DATA_DIR: dataDir(), INVITATION_LIMIT_PER_ADDRESS: '3/24h,block=1d' }),
    /INVITATION_LIMIT_PER_ADDRESS/,
  );
  assert.deepEqual(c.trustProxy, ['10.0.0.0/8', '127.0.0.1']);
});

test('.env fills in what the environment does not set', () => {
  const dir = dataDir();
  const file = join(dir, '.env');
  writeFileSync(file, '# comment\nPORT=9001\nHOST="127.0.0.1"\nLOG_LEVEL=debug\n');
  const saved = process.env.LOG_LEVEL;
  process.env.LOG_LEVEL = 'warn';
  try {
    const env = readEnvironment(file);
    assert.equal(env.PORT, '9001');
    assert.equal(env.HOST, '127.0.0.1');
    assert.equal(env.LOG_LEVEL, 'warn');
  } finally {
    if (saved === undefined) delete process.env.LOG_LEVEL;
    else process.env.LOG_LEVEL = saved;
  }
});

test('the server refuses to start on a bad value and names the variable', () => {
  const r = spawnSync(process.execPath, ['src/main.ts'], {
    env: { ...process.env, PORT: 'abc', DATA_DIR: dataDir() },
    encoding: 'utf8',
    timeout: 20_000,
  });
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /PORT: must be a whole number/);
});

test('the server refuses to start in production without SECRET_KEY', () => {
  const env: Record<string, string> = {
    ...(process.env as Record<string, string>),
    DATA_DIR: dataDir(),
    ENVIRONMENT: 'production',
    SMTP_URL: 'smtp://127.0.0.1:2525',
    PUBLIC_URL: 'https://auth.example.com',
  };
  delete env.SECRET_KEY;
  const r = spawnSync(process.execPath, ['src/main.ts'], { env, encoding: 'utf8', timeout: 20_000 });
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /SECRET_KEY/);
});

test('PASSWORD_MIN_LENGTH: default 12 (strict) or 15 (nist), at least 8, at most 128', () => {
  assert.equal(loadConfig({ DATA_DIR: dataDir(), PASSWORD_POLICY: 'nist' }).passwordMinLength, 15);
  assert.equal(
    loadConfig({ DATA_DIR: dataDir(), PASSWORD_POLICY: 'nist', PASSWORD_MIN_LENGTH: '8' }).passwordMinLength,
    8,
  );
  assert.equal(loadConfig({ DATA_DIR: dataDir(), PASSWORD_MIN_LENGTH: '20' }).passwordMinLength, 20);
  for (const bad of ['7', '0', '129', 'twelve', '-1']) {
    assert.throws(
      () => loadConfig({ DATA_DIR: dataDir(), PASSWORD_MIN_LENGTH: bad }),
      (error: unknown) => error instanceof ConfigError && error.variable === 'PASSWORD_MIN_LENGTH',
      bad,
    );
  }
});

test('OIDC_PROVIDER is off by default, a boolean, and needs the pages', () => {
  assert.equal(loadConfig({ DATA_DIR: dataDir() }).oidcProvider, false);
  assert.equal(loadConfig({ DATA_DIR: dataDir(), OIDC_PROVIDER: 'true' }).oidcProvider, true);
  assert.throws(
    () => loadConfig({ DATA_DIR: dataDir(), OIDC_PROVIDER: 'sometimes' }),
    (error: unknown) => error instanceof ConfigError && error.variable === 'OIDC_PROVIDER',
  );
  assert.throws(
    () => loadConfig({ DATA_DIR: dataDir(), OIDC_PROVIDER: 'true', PAGES: 'false' }),
    (error: unknown) =>
      error instanceof ConfigError && error.variable === 'OIDC_PROVIDER' && /PAGES=true/.test(error.message),
  );
});

test('SSO_PROVIDERS: presets, a generic issuer, and every missing or bad setting named', () => {
  assert.deepEqual(loadConfig({ DATA_DIR: dataDir() }).ssoProviders, []);
  const config = loadConfig({
    DATA_DIR: dataDir(),
    SSO_PROVIDERS: 'google, github,acme',
    SSO_GOOGLE_CLIENT_ID: 'g',
    SSO_GITHUB_CLIENT_ID: 'h',
    SSO_GITHUB_CLIENT_SECRET: 'hs',
    SSO_GITHUB_URL: 'https://github.example.com/',
    SSO_GITHUB_API_URL: 'https://github.example.com/api/v3',
    SSO_ACME_CLIENT_ID: 'a',
    SSO_ACME_ISSUER: 'https://id.acme.test',
    SSO_ACME_ALLOWED_DOMAINS: 'Acme.test,@acme.example',
    SSO_ACME_TRUSTED: 'true',
    SSO_ACME_SCOPES: 'email profile',
  });
  const [google, github, acme] = config.ssoProviders;
  assert.deepEqual(
    [google?.kind, google?.issuer, google?.label, google?.trusted],
    ['oidc', 'https://accounts.google.com', 'Continue with Google', false],
  );
  assert.deepEqual(
    [github?.kind, github?.githubUrl, github?.githubApiUrl, github?.scopes],
    ['github', 'https://github.example.com', 'https://github.example.com/api/v3', ['read:user', 'user:email']],
  );
  assert.deepEqual(
    [acme?.kind, acme?.issuer, acme?.allowedDomains, acme?.trusted, acme?.scopes, acme?.label],
    [
      'oidc',
      'https://id.acme.test',
      ['acme.test', 'acme.example'],
      true,
      ['openid', 'email', 'profile'],
      'Continue with Acme',
    ],
  );
  const refused = (env: Record<string, string>, variable: string) =>
    assert.throws(
      () => loadConfig({ DATA_DIR: dataDir(), ...env }),
      (error: unknown) => error instanceof ConfigError && error.variable === variable,
      `${JSON.stringify(env)} names ${variable}`,
    );
  refused({ SSO_PROVIDERS: 'Acme Corp' }, 'SSO_PROVIDERS');
  refused({ SSO_PROVIDERS: 'acme,acme', SSO_ACME_CLIENT_ID: 'a', SSO_ACME_ISSUER: 'https://x.test' }, 'SSO_PROVIDERS');
  refused({ SSO_PROVIDERS: 'acme' }, 'SSO_ACME_CLIENT_ID');
  refused({ SSO_PROVIDERS: 'acme', SSO_ACME_CLIENT_ID: 'a' }, 'SSO_ACME_ISSUER');
  refused({ SSO_PROVIDERS: 'acme', SSO_ACME_CLIENT_ID: 'a', SSO_ACME_ISSUER: 'not a url' }, 'SSO_ACME_ISSUER');
  refused({ SSO_PROVIDERS: 'github', SSO_GITHUB_CLIENT_ID: 'h' }, 'SSO_GITHUB_CLIENT_SECRET');
  refused({ SSO_PROVIDERS: 'microsoft', SSO_MICROSOFT_CLIENT_ID: 'm' }, 'SSO_MICROSOFT_TENANT');
  refused(
    { SSO_PROVIDERS: 'acme', SSO_ACME_CLIENT_ID: 'a', SSO_ACME_ISSUER: 'https://x.test', SSO_ACME_TRUSTED: 'maybe' },
    'SSO_ACME_TRUSTED',
  );
  refused(
    {
      ENVIRONMENT: 'production',
      SECRET_KEY: 'k'.repeat(40),
      SMTP_URL: 'smtp://mail.test',
      PUBLIC_URL: 'https://auth.example.com',
      SSO_PROVIDERS: 'acme',
      SSO_ACME_CLIENT_ID: 'a',
      SSO_ACME_ISSUER: 'http://id.acme.test',
    },
    'SSO_ACME_ISSUER',
  );
  const microsoft = loadConfig({
    DATA_DIR: dataDir(),
    SSO_PROVIDERS: 'microsoft',
    SSO_MICROSOFT_CLIENT_ID: 'm',
    SSO_MICROSOFT_TENANT: 'contoso.onmicrosoft.com',
  }).ssoProviders[0];
  assert.equal(microsoft?.issuer, 'https://login.microsoftonline.com/contoso.onmicrosoft.com/v2.0');
});

test('REGISTER_RETURNS_TOKENS=true is refused with REQUIRE_EMAIL_VERIFICATION=true, naming both', () => {
  assert.equal(loadConfig({ DATA_DIR: dataDir() }).registerReturnsTokens, false);
  const ok = loadConfig({ DATA_DIR: dataDir(), REGISTER_RETURNS_TOKENS: 'true', REQUIRE_EMAIL_VERIFICATION: 'false' });
  assert.equal(ok.registerReturnsTokens, true);
  for (const env of [
    { REGISTER_RETURNS_TOKENS: 'true' },
    { REGISTER_RETURNS_TOKENS: 'true', REQUIRE_EMAIL_VERIFICATION: 'true' },
  ]) {
    assert.throws(
      () => loadConfig({ DATA_DIR: dataDir(), ...env }),
      (error: unknown) =>
        error instanceof ConfigError &&
        error.message.includes('REGISTER_RETURNS_TOKENS') &&
        error.message.includes('REQUIRE_EMAIL_VERIFICATION'),
    );
  }
  assert.throws(
    () => loadConfig({ DATA_DIR: dataDir(), REGISTER_RETURNS_TOKENS: 'maybe', REQUIRE_EMAIL_VERIFICATION: 'false' }),
    (error: unknown) => error instanceof ConfigError && error.variable === 'REGISTER_RETURNS_TOKENS',
  );
});

test('WEBHOOK_URLS need a WEBHOOK_SECRET of 24 to 64 bytes, whsec_-prefixed, and https in production but on loopback', () => {
  const secret = `whsec_${Buffer.alloc(32, 7).toString('base64')}`;
  const refuses = (env: Record<string, string>, variable: string) =>
    assert.throws(
      () => loadConfig({ DATA_DIR: dataDir(), ...env }),
      (error: unknown) => error instanceof ConfigError && error.variable === variable,
    );
  refuses({ WEBHOOK_URLS: 'https://hooks.example.com/in' }, 'WEBHOOK_SECRET');
  refuses(
    { WEBHOOK_URLS: 'https://hooks.example.com/in', WEBHOOK_SECRET: Buffer.alloc(32).toString('base64') },
    'WEBHOOK_SECRET',
  );
  refuses(
    { WEBHOOK_URLS: 'https://hooks.example.com/in', WEBHOOK_SECRET: `whsec_${Buffer.alloc(23).toString('base64')}` },
    'WEBHOOK_SECRET',
  );
  refuses(
    { WEBHOOK_URLS: 'https://hooks.example.com/in', WEBHOOK_SECRET: `whsec_${Buffer.alloc(65).toString('base64')}` },
    'WEBHOOK_SECRET',
  );
  refuses(
    { WEBHOOK_URLS: 'https://hooks.example.com/in', WEBHOOK_SECRET: 'whsec_not base64 at all!!' },
    'WEBHOOK_SECRET',
  );
  refuses({ WEBHOOK_URLS: 'hooks.example.com/in', WEBHOOK_SECRET: secret }, 'WEBHOOK_URLS');
  refuses({ WEBHOOK_URLS: 'ftp://hooks.example.com/in', WEBHOOK_SECRET: secret }, 'WEBHOOK_URLS');
  refuses({ WEBHOOK_RETRY_BASE_MS: '5' }, 'WEBHOOK_RETRY_BASE_MS');
  const production = {
    ENVIRONMENT: 'production',
    SECRET_KEY: 'x'.repeat(32),
    SMTP_URL: 'smtp://mail.example.com',
    PUBLIC_URL: 'https://auth.example.com',
    WEBHOOK_SECRET: secret,
  };
  refuses({ ...production, WEBHOOK_URLS: 'http://hooks.example.com/in' }, 'WEBHOOK_URLS');
  const c = loadConfig({
    DATA_DIR: dataDir(),
    ...production,
    WEBHOOK_URLS: 'https://hooks.example.com/in, http://127.0.0.1:9000/hooks,https://hooks.example.com/in',
  });
  assert.deepEqual(c.webhookUrls, ['https://hooks.example.com/in', 'http://127.0.0.1:9000/hooks']);
  assert.equal(c.webhookSecret, secret);
  assert.equal(c.webhookRetryBaseMs, 5_000);
  assert.deepEqual(loadConfig({ DATA_DIR: dataDir() }).webhookUrls, []);
});
