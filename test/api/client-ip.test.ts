import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { loadConfig } from '../../src/config.ts';
import { clientIpResolver } from '../../src/http/client-ip.ts';
import { json, newUser, startApp, uniqueName } from '../helpers.ts';

function fakeRequest(peer: string, forwardedFor?: string): IncomingMessage {
  return {
    socket: { remoteAddress: peer },
    connection: { remoteAddress: peer },
    headers: forwardedFor === undefined ? {} : { 'x-forwarded-for': forwardedFor },
  } as unknown as IncomingMessage;
}

describe('the client IP', () => {
  test('X-Forwarded-For is ignored unless the peer is in TRUST_PROXY', () => {
    const untrusting = clientIpResolver(false);
    assert.equal(untrusting(fakeRequest('203.0.113.9', '1.2.3.4')), '203.0.113.9');
    const trusting = clientIpResolver(['203.0.113.9']);
    assert.equal(trusting(fakeRequest('203.0.113.9', '1.2.3.4')), '1.2.3.4');
    assert.equal(trusting(fakeRequest('198.51.100.1', '1.2.3.4')), '198.51.100.1');
  });

  test('the chain is walked hop by hop: an address the client wrote itself is never believed', () => {
    const resolve = clientIpResolver(['10.0.0.0/8']);
    // The client sent "6.6.6.6"; the trusted proxy appended the real peer 198.51.100.7.
    assert.equal(resolve(fakeRequest('10.0.0.2', '6.6.6.6, 198.51.100.7')), '198.51.100.7');
    // Two trusted proxies in a row.
    assert.equal(resolve(fakeRequest('10.0.0.2', '6.6.6.6, 198.51.100.7, 10.1.1.1')), '198.51.100.7');
  });

  test('TRUST_PROXY accepts names, CIDRs and true, as parsed from the environment', () => {
    const parse = (value: string) =>
      loadConfig({ ENVIRONMENT: 'test', SECRET_KEY: 'x'.repeat(32), TRUST_PROXY: value }).trustProxy;
    assert.deepEqual(parse('loopback, 10.0.0.0/8'), ['loopback', '10.0.0.0/8']);
    assert.equal(parse('true'), true);
    assert.equal(parse('false'), false);
    assert.throws(() => parse('proxy.example.com'), /TRUST_PROXY/);
    const loopback = clientIpResolver(parse('loopback'));
    assert.equal(loopback(fakeRequest('127.0.0.1', '1.2.3.4')), '1.2.3.4');
    assert.equal(loopback(fakeRequest('::1', '2001:db8::5')), '2001:db8::5');
    assert.equal(clientIpResolver(true)(fakeRequest('198.51.100.1', '1.2.3.4, 5.6.7.8')), '1.2.3.4');
  });

  test('addresses are normalised: IPv4-mapped IPv6, ports from proxies, and garbage falls back to the peer', () => {
    const resolve = clientIpResolver(['10.0.0.1']);
    assert.equal(resolve(fakeRequest('::ffff:198.51.100.3')), '198.51.100.3');
    assert.equal(resolve(fakeRequest('10.0.0.1', '198.51.100.4:51234')), '198.51.100.4');
    assert.equal(resolve(fakeRequest('10.0.0.1', '[2001:DB8::9]:443')), '2001:db8::9');
    assert.equal(resolve(fakeRequest('10.0.0.1', 'not-an-address')), '10.0.0.1');
    assert.equal(resolve(fakeRequest('10.0.0.1', '<script>')), '10.0.0.1');
  });

  const register = (app: FastifyInstance, remoteAddress: string, forwardedFor: string) =>
    app.inject({
      method: 'POST',
      url: '/api/v1/register',
      payload: newUser(),
      remoteAddress,
      headers: { 'x-forwarded-for': forwardedFor },
    });

  test('a client that spoofs X-Forwarded-For from an untrusted address is still rate limited', async () => {
    const app = await startApp({ RATE_LIMIT_REGISTER: '2/1h', REDIS_KEY_PREFIX: `t:${uniqueName()}:` });
    try {
      assert.equal((await register(app, '203.0.113.9', '1.1.1.1')).statusCode, 201);
      assert.equal((await register(app, '203.0.113.9', '2.2.2.2')).statusCode, 201);
      const res = await register(app, '203.0.113.9', '3.3.3.3');
      assert.equal(res.statusCode, 429, res.body);
      assert.equal(json(res).code, 'RATE_LIMIT_EXCEEDED');
    } finally {
      await app.close();
    }
  });

  test('behind a trusted proxy each forwarded client has its own budget, and the records name it', async () => {
    const app = await startApp({
      RATE_LIMIT_REGISTER: '2/1h',
      TRUST_PROXY: '203.0.113.9',
      REDIS_KEY_PREFIX: `t:${uniqueName()}:`,
    });
    try {
      for (const client of ['1.1.1.1', '2.2.2.2', '3.3.3.3']) {
        assert.equal((await register(app, '203.0.113.9', client)).statusCode, 201);
      }
      const registered = await register(app, '203.0.113.9', '4.4.4.4');
      assert.equal(registered.statusCode, 201);
      const audit = await app.gatehouse.db
        .selectFrom('audit_logs')
        .select('ip_address')
        .where('user_id', '=', Number(json(registered).id))
        .where('action', '=', 'user_registration')
        .executeTakeFirstOrThrow();
      assert.equal(audit.ip_address, '4.4.4.4');
      assert.equal((await register(app, '203.0.113.9', '4.4.4.4')).statusCode, 201);
      assert.equal((await register(app, '203.0.113.9', '4.4.4.4')).statusCode, 429);
    } finally {
      await app.close();
    }
  });

  test('over a real socket, X-Forwarded-For from loopback counts only with TRUST_PROXY=loopback', async () => {
    for (const [trustProxy, expectLimited] of [
      [undefined, true],
      ['loopback', false],
    ] as const) {
      const app = await startApp({
        RATE_LIMIT_REGISTER: '1/1h',
        TRUST_PROXY: trustProxy,
        REDIS_KEY_PREFIX: `t:${uniqueName()}:`,
      });
      try {
        await app.listen({ host: '127.0.0.1', port: 0 });
        const { port } = app.server.address() as AddressInfo;
        const statuses: number[] = [];
        for (const client of ['192.0.2.1', '192.0.2.2']) {
          const res = await fetch(`http://127.0.0.1:${port}/api/v1/register`, {
            method: 'POST',
            headers: { 'content-type': 'application/json', 'x-forwarded-for': client },
            body: JSON.stringify(newUser()),
          });
          statuses.push(res.status);
        }
        assert.deepEqual(statuses, expectLimited ? [201, 429] : [201, 201], `TRUST_PROXY=${trustProxy}`);
      } finally {
        await app.close();
      }
    }
  });
});
