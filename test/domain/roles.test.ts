import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  checkPermissions,
  checkRole,
  checkRoleName,
  DEFAULT_ROLE_PERMISSIONS,
  grants,
  hostPermissions,
  isRoleName,
  PERMISSIONS,
  type RoleName,
} from '../../src/domain/roles.ts';

describe('roles and permissions', () => {
  test('the default roles nest: admin ⊇ user ⊇ viewer, and admin holds every permission', () => {
    assert.deepEqual([...DEFAULT_ROLE_PERMISSIONS.admin].sort(), [...PERMISSIONS].sort());
    for (const p of DEFAULT_ROLE_PERMISSIONS.viewer) assert.ok(DEFAULT_ROLE_PERMISSIONS.user.includes(p), p);
    for (const p of DEFAULT_ROLE_PERMISSIONS.user) assert.ok(DEFAULT_ROLE_PERMISSIONS.admin.includes(p), p);
  });

  test('viewers hold no permission that changes anything', () => {
    const changing = [
      'organization:update',
      'organization:delete',
      'members:manage',
      'invitations:manage',
      'resources:use',
    ];
    for (const p of changing) assert.equal(DEFAULT_ROLE_PERMISSIONS.viewer.includes(p as never), false, p);
  });

  test('a role requirement is met by that role and every role above it, by permissions alone', () => {
    const table: [RoleName, RoleName, boolean][] = [
      ['admin', 'admin', true],
      ['admin', 'user', true],
      ['admin', 'viewer', true],
      ['user', 'admin', false],
      ['user', 'user', true],
      ['user', 'viewer', true],
      ['viewer', 'admin', false],
      ['viewer', 'user', false],
      ['viewer', 'viewer', true],
    ];
    for (const [held, required, expected] of table) {
      assert.equal(grants(DEFAULT_ROLE_PERMISSIONS[held], { role: required }), expected, `${held} for ${required}`);
    }
    assert.equal(table.filter(([, , ok]) => ok).length, 6);
  });

  test('a permission requirement reads the role row, not the role name', () => {
    assert.equal(grants(['members:read'], 'members:read'), true);
    assert.equal(grants(['members:read'], 'members:manage'), false);
    assert.equal(grants([], 'organization:read'), false);
    // A customised row that lost a permission no longer meets the role it was named after.
    const trimmedUser = DEFAULT_ROLE_PERMISSIONS.user.filter((p) => p !== 'resources:use');
    assert.equal(grants(trimmedUser, { role: 'user' }), false);
  });

  test('isRoleName accepts exactly the three names', () => {
    assert.deepEqual(['admin', 'user', 'viewer', 'Admin', 'owner', '', 'admin '].map(isRoleName), [
      true,
      true,
      true,
      false,
      false,
      false,
      false,
    ]);
  });

  test('checkRole names the field and the allowed roles', () => {
    assert.deepEqual(checkRole('viewer'), { ok: true, value: 'viewer' });
    assert.deepEqual(checkRole('owner'), {
      ok: false,
      error: { field: 'role', message: 'Role must be one of admin, user, viewer', code: 'invalid_value' },
    });
    const missing = checkRole(undefined);
    assert.equal(missing.ok ? 'ok' : missing.error.code, 'required');
    assert.equal(checkRole(1).ok, false);
  });

  test("checkRole with the organization's roles accepts its custom names and lists them", () => {
    const available = ['admin', 'user', 'viewer', 'auditor'];
    assert.deepEqual(checkRole('auditor', 'role', available), { ok: true, value: 'auditor' });
    assert.deepEqual(checkRole('auditor'), {
      ok: false,
      error: { field: 'role', message: 'Role must be one of admin, user, viewer', code: 'invalid_value' },
    });
    const unknown = checkRole('ghost', 'role', available);
    assert.equal(unknown.ok ? '' : unknown.error.message, 'Role must be one of admin, user, viewer, auditor');
  });

  test('custom role names: a lowercase letter, then 1-31 of [a-z0-9_-]', () => {
    for (const name of ['ab', 'auditor', 'team_lead', 'on-call', `a${'b'.repeat(31)}`]) {
      assert.deepEqual(checkRoleName(name), { ok: true, value: name }, name);
    }
    for (const name of ['a', 'Auditor', '1ab', '_ab', 'a b', 'a.b', `a${'b'.repeat(32)}`, '', 'ünï', 12, null]) {
      const check = checkRoleName(name);
      assert.equal(check.ok ? '' : `${check.error.field}:${check.error.code}`, 'name:invalid_value', String(name));
    }
    const missing = checkRoleName(undefined);
    assert.equal(missing.ok ? '' : missing.error.code, 'required');
  });

  test('permission lists: known ones only, repeats dropped, order kept', () => {
    const allowed = [...PERMISSIONS, 'scans:start'];
    assert.deepEqual(checkPermissions(['scans:start', 'members:read', 'scans:start'], allowed), {
      ok: true,
      value: ['scans:start', 'members:read'],
    });
    assert.deepEqual(checkPermissions([], allowed), { ok: true, value: [] });
    for (const raw of [['nope:x'], ['members:read', 1], 'members:read', { 0: 'members:read' }]) {
      const check = checkPermissions(raw, allowed);
      assert.equal(check.ok ? '' : check.error.field, 'permissions', JSON.stringify(raw));
    }
    const missing = checkPermissions(undefined, allowed);
    assert.equal(missing.ok ? '' : missing.error.code, 'required');
  });

  test('host permissions are scope:action in lowercase; built-in names and repeats are dropped', () => {
    assert.deepEqual(hostPermissions(['scans:start', 'members:read', 'scans:start', 'reports:export']), [
      'scans:start',
      'reports:export',
    ]);
    for (const bad of ['scans', 'Scans:start', 'scans:', ':start', 'scans:start:now', 'scans start', 1]) {
      assert.throws(() => hostPermissions([bad]), /must be "scope:action"/, String(bad));
    }
  });
});
