import { randomUUID, type KeyObject } from 'node:crypto';
import { UnauthenticatedError } from '@clinical/errors';
import { decodeProtectedHeader, errors as joseErrors, importPKCS8, jwtVerify, SignJWT, type CryptoKey, type JWTPayload } from 'jose';
import { z } from 'zod';
import { ROLES, type Principal } from './principal.js';
import { loadVerificationKeys, type VerificationKeyOptions } from './verificationKeys.js';

export interface TokenKeyOptions extends VerificationKeyOptions {
  readonly issuer: string;
  readonly audience: string;
  /** How many verified tokens to remember (until they expire, or the keys change). */
  readonly rememberedTokens?: number;
  /** A JWKS file that could not be read again: the previous keys stay. */
  readonly onKeysReloadFailure?: (error: unknown) => void;
}

/** Verifies bearer tokens; holds the keys, which a JWKS file may change. */
export interface TokenVerifier {
  /**
   * The principal of a valid token: at once, without a promise, for a token
   * verified before (the common case).
   * @throws UnauthenticatedError saying why the token is refused.
   */
  verify(token: string): Principal | Promise<Principal>;
  /** Reads the JWKS file again now (SIGHUP); whether the keys changed. */
  reloadKeys(): boolean;
  /** Stops watching the JWKS file. */
  close(): void;
}

const claimsSchema = z.object({
  sub: z.string().min(1).max(200),
  roles: z.array(z.enum(ROLES)).min(1),
  sites: z.union([z.literal('*'), z.array(z.string().min(1).max(50)).max(1_000)]),
  sid: z.string().min(1).max(100),
});

/**
 * A verifier for the platform's tokens (jose): signature (by the key its
 * `kid` names, with a key set), issuer, audience and expiry, then the
 * claims' shape. The session behind `sid` is checked by the caller (the auth
 * middleware), since that needs the session store.
 */
export async function createTokenVerifier(options: TokenKeyOptions): Promise<TokenVerifier> {
  // Verification is the costliest step of a call, and a client sends the same
  // token on every call: a verified token is remembered until it expires, or
  // until the keys change (a retired key's tokens are refused at once).
  // Revocation does not depend on this: the session is checked on every call.
  const verified = new Map<string, { principal: Principal; expiresAtMs: number }>();
  const rememberedTokens = options.rememberedTokens ?? 10_000;
  const loaded = await loadVerificationKeys(
    options,
    (changed) => {
      keys = changed;
      verified.clear();
    },
    options.onKeysReloadFailure ?? (() => {}),
  );
  let keys = loaded.keys;

  async function verify(token: string): Promise<Principal> {
    let payload: JWTPayload;
    try {
      if (keys.requireKeyId && typeof decodeProtectedHeader(token).kid !== 'string') {
        throw new UnauthenticatedError('token names no key (kid)');
      }
      ({ payload } = await jwtVerify(token, keys.key as Parameters<typeof jwtVerify>[1], {
        issuer: options.issuer,
        audience: options.audience,
        algorithms: [...keys.algorithms],
        // A token must expire: a session alone would keep a leaked token alive.
        requiredClaims: ['exp', 'sub'],
      }));
    } catch (error) {
      if (error instanceof UnauthenticatedError) {
        throw error;
      }
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
  return {
    verify(token) {
      const remembered = verified.get(token);
      return remembered && remembered.expiresAtMs > Date.now() ? remembered.principal : verify(token);
    },
    reloadKeys: loaded.reload,
    close: loaded.close,
  };
}

export interface MintTokenOptions {
  /** HS256 with this secret... */
  readonly secret?: string;
  /** ...or this private key (PEM PKCS#8, or a key object) with `algorithm`. */
  readonly privateKey?: string | CryptoKey | KeyObject;
  readonly algorithm?: string;
  /** The key's id, for verifiers that hold a key set. */
  readonly kid?: string;
  readonly issuer: string;
  readonly audience: string;
  readonly sub: string;
  readonly roles: Principal['roles'];
  readonly sites: Principal['sites'];
  /** Session id; a new one when omitted. The session must also be created in the session store. */
  readonly sid?: string;
  readonly ttlSeconds?: number;
}

/** Signs a token (development tooling and tests; production tokens come from the identity provider). */
export async function mintToken(options: MintTokenOptions): Promise<{ token: string; sid: string }> {
  const sid = options.sid ?? randomUUID();
  const algorithm = options.privateKey ? (options.algorithm ?? 'RS256') : 'HS256';
  const key = options.privateKey
    ? typeof options.privateKey === 'string'
      ? await importPKCS8(options.privateKey, algorithm)
      : options.privateKey
    : new TextEncoder().encode(options.secret ?? '');
  const token = await new SignJWT({ roles: [...options.roles], sites: options.sites === '*' ? '*' : [...options.sites], sid })
    .setProtectedHeader({ alg: algorithm, ...(options.kid ? { kid: options.kid } : {}) })
    .setSubject(options.sub)
    .setIssuer(options.issuer)
    .setAudience(options.audience)
    .setIssuedAt()
    .setExpirationTime(`${options.ttlSeconds ?? 3_600}s`)
    .sign(key);
  return { token, sid };
}
