import { createSecretKey, type KeyObject } from 'node:crypto';
import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import { errors, importJWK, importSPKI, type CryptoKey, type JWK, type JWTVerifyGetKey } from 'jose';
import { z } from 'zod';

/** Where the keys that verify tokens come from: one of them. */
export interface VerificationKeyOptions {
  /** Shared secret for HS256 (at least 32 characters). */
  readonly secret?: string;
  /** PEM SPKI public key for asymmetric tokens minted elsewhere. */
  readonly publicKey?: string;
  /** Algorithm of publicKey's tokens (RS256 by default; ES256, EdDSA...). */
  readonly publicKeyAlgorithm?: string;
  /**
   * A JSON Web Key Set file: every key with its `kid` and `alg` (RSA, EC or
   * `oct` for HS256). Read again when it changes: a key added is accepted,
   * a key removed (retired) is refused from then on.
   */
  readonly jwksFile?: string;
  /** How often the JWKS file is checked for a change. */
  readonly jwksReloadIntervalMs?: number;
}

/** The keys tokens are verified with, as jwtVerify takes them, and whether a token must name its key. */
export interface VerificationKeys {
  readonly key: CryptoKey | KeyObject | JWTVerifyGetKey;
  readonly algorithms: readonly string[];
  /** With a key set, a token must carry `kid`: the key is chosen by it. */
  readonly requireKeyId: boolean;
}

/** A key set whose keys all say which they are and what they sign with. */
const keySetSchema = z.object({
  keys: z
    .array(z.object({ kid: z.string().min(1), alg: z.enum(['HS256', 'RS256', 'RS384', 'RS512', 'PS256', 'ES256', 'ES384', 'EdDSA']), kty: z.string() }).passthrough())
    .min(1),
});

type KeySetEntry = JWK & { readonly kid: string; readonly alg: string };

/**
 * The key a token's header names: its kid, with the algorithm that key is
 * for. jose's own key sets take asymmetric keys only; this one takes HS256
 * (`oct`) keys too. Each key is imported once.
 */
function keySetResolver(entries: readonly KeySetEntry[]): JWTVerifyGetKey {
  const byKid = new Map(entries.map((entry) => [entry.kid, entry]));
  const imported = new Map<string, Promise<CryptoKey | Uint8Array>>();
  return (header) => {
    const entry = header.kid === undefined ? undefined : byKid.get(header.kid);
    if (!entry || entry.alg !== header.alg) {
      throw new errors.JWKSNoMatchingKey();
    }
    let key = imported.get(entry.kid);
    if (!key) {
      key = importJWK(entry, entry.alg);
      imported.set(entry.kid, key);
    }
    return key;
  };
}

/** Reads and checks a JWKS file. @throws Error naming what is wrong (never a key's material). */
function readKeySet(file: string): { entries: KeySetEntry[]; algorithms: string[] } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (error) {
    throw new Error(`${file}: not a readable JSON file (${(error as Error).name})`);
  }
  const checked = keySetSchema.safeParse(parsed);
  if (!checked.success) {
    throw new Error(`${file}: a JWKS whose keys each have kid and alg is expected (${checked.error.issues[0]?.path.join('.')})`);
  }
  const kids = checked.data.keys.map((key) => key.kid);
  if (new Set(kids).size !== kids.length) {
    throw new Error(`${file}: two keys share a kid`);
  }
  return { entries: checked.data.keys as KeySetEntry[], algorithms: [...new Set(checked.data.keys.map((key) => key.alg))] };
}

/**
 * The verification keys, and, for a JWKS file, their reloading. `onChange`
 * hears every change of the set (a verifier forgets the tokens it verified
 * with the old one).
 * @throws Error when no key is configured or the first read fails.
 */
export async function loadVerificationKeys(
  options: VerificationKeyOptions,
  onChange: (keys: VerificationKeys) => void,
  onReloadFailure: (error: unknown) => void,
): Promise<{ keys: VerificationKeys; reload(): boolean; close(): void }> {
  const fixed = { reload: () => false, close: () => {} };
  if (options.jwksFile) {
    const file = options.jwksFile;
    const fromFile = () => {
      const { entries, algorithms } = readKeySet(file);
      return { keys: { key: keySetResolver(entries), algorithms, requireKeyId: true }, text: JSON.stringify(entries) };
    };
    let current = fromFile();
    const reload = () => {
      let next;
      try {
        next = fromFile();
      } catch (error) {
        onReloadFailure(error);
        return false;
      }
      if (next.text === current.text) {
        return false;
      }
      current = next;
      onChange(current.keys);
      return true;
    };
    const onFileChange = () => {
      reload();
    };
    watchFile(file, { interval: options.jwksReloadIntervalMs ?? 5_000, persistent: false }, onFileChange);
    return { keys: current.keys, reload, close: () => unwatchFile(file, onFileChange) };
  }
  if (options.publicKey) {
    const algorithm = options.publicKeyAlgorithm ?? 'RS256';
    return { keys: { key: await importSPKI(options.publicKey, algorithm), algorithms: [algorithm], requireKeyId: false }, ...fixed };
  }
  if (options.secret) {
    // Imported once: jose would otherwise import a raw secret on every verification.
    return { keys: { key: createSecretKey(Buffer.from(options.secret)), algorithms: ['HS256'], requireKeyId: false }, ...fixed };
  }
  throw new Error('token verification needs a secret, a public key or a JWKS file');
}
