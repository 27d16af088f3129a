import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  checkRole,
  DEFAULT_ROLE_PERMISSIONS,
  grants,
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
});
