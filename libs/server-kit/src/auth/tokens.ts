import { createSecretKey, randomUUID, type KeyObject } from 'node:crypto';
import { UnauthenticatedError } from '@clinical/errors';
import { SignJWT, errors as joseErrors, importSPKI, jwtVerify, type CryptoKey, type JWTPayload } from 'jose';
import { z } from 'zod';
import { ROLES, type Principal } from './principal.js';

export interface TokenKeyOptions {
  /** Shared secret for HS256 (at least 32 characters). */
  readonly secret?: string;
  /** PEM SPKI public key for asymmetric tokens minted elsewhere. */
  readonly publicKey?: string;
  /** Algorithm of publicKey's tokens (RS256 by default; ES256, EdDSA...). */
  readonly publicKeyAlgorithm?: string;
  readonly issuer: string;
  readonly audience: string;
  /** How many verified tokens to remember (until they expire). */
  readonly rememberedTokens?: number;
}

/**
 * Verifies a bearer token and returns its principal: at once, without a
 * promise, for a token verified before (the common case, see createTokenVerifier).
 */
export type TokenVerifier = (token: string) => Principal | Promise<Principal>;

const claimsSchema = z.object({
  sub: z.string().min(1).max(200),
  roles: z.array(z.enum(ROLES)).min(1),
  sites: z.union([z.literal('*'), z.array(z.string().min(1).max(50)).max(1_000)]),
  sid: z.string().min(1).max(100),
});

/**
 * A verifier for the platform's tokens (jose): signature, issuer, audience and
 * expiry, then the claims' shape. The session behind `sid` is checked by the
 * caller (the auth middleware), since that needs the session store.
 */
export async function createTokenVerifier(options: TokenKeyOptions): Promise<TokenVerifier> {
  let key: CryptoKey | KeyObject;
  let algorithms: string[];
  if (options.publicKey) {
    const algorithm = options.publicKeyAlgorithm ?? 'RS256';
    key = await importSPKI(options.publicKey, algorithm);
    algorithms = [algorithm];
  } else if (options.secret) {
    // Imported once: jose would otherwise import a raw secret on every verification.
    key = createSecretKey(Buffer.from(options.secret));
    algorithms = ['HS256'];
  } else {
    throw new Error('createTokenVerifier: a secret or a public key is required');
  }
  // Verification is the costliest step of a call, and a client sends the same
  // token on every call: a verified token is remembered until it expires.
  // Revocation does not depend on this: the session is checked on every call.
  const verified = new Map<string, { principal: Principal; expiresAtMs: number }>();
  const rememberedTokens = options.rememberedTokens ?? 10_000;
  async function verify(token: string): Promise<Principal> {
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, key, {
        issuer: options.issuer,
        audience: options.audience,
        algorithms,
        // A token must expire: a session alone would keep a leaked token alive.
        requiredClaims: ['exp', 'sub'],
      }));
    } catch (error) {
      const reason = error instanceof joseErrors.JWTExpired ? 'token expired' : 'invalid token';
      throw new UnauthenticatedError(reason, { cause: error });
    }
    const claims = claimsSchema.safeParse(payload);
    if (!claims.success) {
      throw new UnauthenticatedError('token claims are malformed');
    }
    if (verified.size >= rememberedTokens) {
      verified.delete(verified.keys().next().value as string);
    }
    verified.set(token, { principal: claims.data, expiresAtMs: (payload.exp as number) * 1_000 });
    return claims.data;
  }
  return (token) => {
    const remembered = verified.get(token);
    return remembered && remembered.expiresAtMs > Date.now() ? remembered.principal : verify(token);
  };
}

export interface MintTokenOptions {
  readonly secret: string;
  readonly issuer: string;
  readonly audience: string;
  readonly sub: string;
  readonly roles: Principal['roles'];
  readonly sites: Principal['sites'];
  /** Session id; a new one when omitted. The session must also be created in the session store. */
  readonly sid?: string;
  readonly ttlSeconds?: number;
}

/** Signs an HS256 token (development tooling and tests; production tokens come from the identity provider). */
export async function mintToken(options: MintTokenOptions): Promise<{ token: string; sid: string }> {
  const sid = options.sid ?? randomUUID();
  const token = await new SignJWT({ roles: [...options.roles], sites: options.sites === '*' ? '*' : [...options.sites], sid })
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(options.sub)
    .setIssuer(options.issuer)
    .setAudience(options.audience)
    .setIssuedAt()
    .setExpirationTime(`${options.ttlSeconds ?? 3_600}s`)
    .sign(new TextEncoder().encode(options.secret));
  return { token, sid };
}
