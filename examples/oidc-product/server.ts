import { buildOidcProduct } from './app.ts';

/** The settings of the example product, from the environment (see README.md). */
function required(name: string, value: string | undefined): string {
  if (!value) throw new Error(`${name} is required (see examples/oidc-product/README.md)`);
  return value;
}

const productUrl = (process.env.PRODUCT_URL ?? 'http://localhost:3000').replace(/\/+$/, '');
const issuer = required('GATEHOUSE_ISSUER', process.env.GATEHOUSE_ISSUER);
const app = await buildOidcProduct({
  issuer,
  clientId: required('OIDC_CLIENT_ID', process.env.OIDC_CLIENT_ID),
  clientSecret: required('OIDC_CLIENT_SECRET', process.env.OIDC_CLIENT_SECRET),
  redirectUri: `${productUrl}/callback`,
  postLogoutRedirectUri: `${productUrl}/`,
  // Plain http only to a Gatehouse on this machine.
  allowInsecureHttp: /^http:\/\/(localhost|127\.0\.0\.1|\[::1\])(:\d+)?(\/|$)/.test(issuer),
});
const close = () => void app.close().then(() => process.exit(0));
process.on('SIGTERM', close);
process.on('SIGINT', close);
await app.listen({ port: Number(process.env.PORT || new URL(productUrl).port || 3000), host: 'localhost' });
console.log(`Example product at ${productUrl}`);
