/**
 * The OpenID issuer URL rules Sigil applies wherever an issuer is configured (the server's
 * `svid.jwtIssuer`, `sigil oidc serve`'s `issuer`): an absolute `https://` URL (plain `http://`
 * only when the caller explicitly allows it, for tests) with a host, and no query, fragment or
 * userinfo, because OpenID Connect Discovery 1.0 section 3 and every cloud STS compare the
 * `iss` claim to it byte for byte and derive the discovery URL from it.
 */

/** The problem with `text` as an issuer URL, or undefined when it is a good one. */
export function issuerUrlProblem(text: string, allowInsecure: boolean): string | undefined {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return `must be an absolute URL such as https://oidc.example.org, got ${JSON.stringify(text)}`;
  }
  if (url.protocol !== 'https:' && !(allowInsecure && url.protocol === 'http:')) {
    return allowInsecure ? `must be an https:// or http:// URL, got ${JSON.stringify(text)}` : `must be an https:// URL, got ${JSON.stringify(text)}`;
  }
  if (url.hostname === '') return `must name a host, got ${JSON.stringify(text)}`;
  if (url.username !== '' || url.password !== '') return 'must not carry a user name or password';
  if (url.search !== '' || text.includes('?')) return `must not have a query, got ${JSON.stringify(text)}`;
  if (url.hash !== '' || text.includes('#')) return `must not have a fragment, got ${JSON.stringify(text)}`;
  // the token's iss is compared to this string exactly, so it must already be in the form URL parsing gives
  const normal = url.pathname === '/' && !text.endsWith('/') ? url.href.slice(0, -1) : url.href;
  if (normal !== text) return `must be written in normal form ${JSON.stringify(normal)}, got ${JSON.stringify(text)}`;
  return undefined;
}

/** The discovery document URL of an issuer (OpenID Connect Discovery 1.0 section 4). */
export function discoveryUrl(issuer: string): string {
  return `${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`;
}
