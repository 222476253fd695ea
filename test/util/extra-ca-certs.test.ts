import { describe, expect, it } from 'vitest';
import { HANDED_OVER_ENV, environmentForRestart } from '../../src/util/extra-ca-certs.js';

/**
 * stratum's re-start in a user namespace gets NODE_EXTRA_CA_CERTS under another name where Node
 * would otherwise build its certificate store at start-up (Node 20: ~50 ms), and keeps Node's own
 * handling where that costs nothing or where a flag chooses the store. That the trust is the same
 * is test/registry/custom-ca.test.ts's rootless case.
 */
describe('environmentForRestart', () => {
  const env = { PATH: '/usr/bin', NODE_EXTRA_CA_CERTS: '/etc/ca.pem' };

  it('on Node 20, hands the file over and takes the variable away', () => {
    expect(environmentForRestart(env, '20.20.2', [])).toEqual({
      PATH: '/usr/bin',
      [HANDED_OVER_ENV]: '/etc/ca.pem',
    });
  });

  it('on Node 24 (certificates loaded when first used), leaves the environment as it is', () => {
    expect(environmentForRestart(env, '24.22.3', [])).toBe(env);
  });

  it('with a flag that picks another store, in NODE_OPTIONS or on the command line, leaves it to Node', () => {
    expect(environmentForRestart({ ...env, NODE_OPTIONS: '--use-openssl-ca' }, '20.20.2', [])).toEqual({
      ...env,
      NODE_OPTIONS: '--use-openssl-ca',
    });
    expect(environmentForRestart(env, '20.20.2', ['--use-system-ca'])).toBe(env);
  });

  it('without the variable (or with it empty), changes nothing', () => {
    expect(environmentForRestart({ PATH: '/usr/bin' }, '20.20.2', [])).toEqual({ PATH: '/usr/bin' });
    expect(environmentForRestart({ NODE_EXTRA_CA_CERTS: '' }, '20.20.2', [])).toEqual({
      NODE_EXTRA_CA_CERTS: '',
    });
  });
});
