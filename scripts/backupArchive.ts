/**
 * The backup file of `npm run db:backup` / `npm run db:restore`: one file
 * holding a manifest (the cluster roles the schema needs, the row count of
 * every table as of the dump's snapshot) and a pg_dump custom-format archive,
 * optionally encrypted with a key file.
 *
 *   bytes 0-7     "CLINBAK1"
 *   bytes 8-11    length H of the header (uint32, big-endian)
 *   H bytes       the header, JSON, never secret: {"format":1,"createdAt":...,"encryption":null | {...}}
 *   body          the payload, as the header says:
 *     plain:      the payload, then SHA-256 over everything before it (32 bytes)
 *     encrypted:  the payload in chunks of 1 MiB (the last one shorter, possibly empty), each
 *                 AES-256-GCM(chunk) followed by its 16-byte tag. Nonce: a random 7-byte prefix,
 *                 the chunk's index (uint32 BE), and 1 on the last chunk else 0; additional data:
 *                 the magic, length and header bytes. So every chunk is authenticated, and a
 *                 reordered, truncated or extended file, or an edited header, is refused.
 *   payload       length M of the manifest (uint32 BE), the manifest (JSON), the pg_dump archive.
 *
 * The key: the bytes of the key file (32 or more random bytes: `openssl rand -out backup.key 32`),
 * through HKDF-SHA-256 with a random 16-byte salt kept in the header; a second HKDF output, also in
 * the header, tells a wrong key file at once, before anything is decrypted.
 */
import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes, timingSafeEqual, type Hash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { open, readFile, type FileHandle } from 'node:fs/promises';
import { delimiter, join } from 'node:path';

const MAGIC = Buffer.from('CLINBAK1', 'latin1');
const CHUNK_SIZE = 1 << 20;
const TAG_SIZE = 16;
const HASH_SIZE = 32;
const MIN_KEY_FILE_BYTES = 32;

export interface EncryptionHeader {
  readonly cipher: 'aes-256-gcm';
  readonly kdf: 'hkdf-sha256';
  readonly salt: string;
  readonly noncePrefix: string;
  readonly chunkSize: number;
  readonly keyCheck: string;
}

export interface BackupHeader {
  readonly format: 1;
  readonly createdAt: string;
  readonly encryption: EncryptionHeader | null;
}

/** A role the schema refers to (owner, grantee, policy), as found in the source cluster. */
export interface RoleDefinition {
  readonly name: string;
  readonly superuser: boolean;
  readonly inherit: boolean;
  readonly createRole: boolean;
  readonly createDb: boolean;
  readonly login: boolean;
  readonly replication: boolean;
  readonly bypassRls: boolean;
  readonly connectionLimit: number;
  readonly validUntil: string | null;
  /** The password's hash (SCRAM or md5) when the dumping role could read it (a superuser); else null. */
  readonly passwordHash: string | null;
}

export interface BackupManifest {
  readonly database: string;
  readonly databaseOwner: string;
  readonly encoding: string;
  readonly serverVersion: string;
  readonly pgDumpVersion: string;
  /** The snapshot pg_dump read, as exported by pg_export_snapshot(). */
  readonly snapshot: string;
  readonly roles: readonly RoleDefinition[];
  /** Memberships among those roles: `GRANT role TO member`. */
  readonly memberships: readonly { role: string; member: string; adminOption: boolean }[];
  /** Every ordinary table (and partition) with its row count in that snapshot. */
  readonly tables: readonly { schema: string; name: string; rows: number }[];
}

export class BackupFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BackupFileError';
  }
}

function deriveKeys(keyMaterial: Buffer, salt: Buffer): { key: Buffer; keyCheck: Buffer } {
  return {
    key: Buffer.from(hkdfSync('sha256', keyMaterial, salt, 'clinical-backup/1 aes-256-gcm', 32)),
    keyCheck: Buffer.from(hkdfSync('sha256', keyMaterial, salt, 'clinical-backup/1 key check', 32)),
  };
}

export async function readKeyFile(path: string): Promise<Buffer> {
  let material: Buffer;
  try {
    material = await readFile(path);
  } catch (error) {
    throw new BackupFileError(`--key-file: cannot read ${path} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
  }
  if (material.length < MIN_KEY_FILE_BYTES) {
    throw new BackupFileError(`--key-file: ${path} holds ${material.length} bytes; a key file holds at least ${MIN_KEY_FILE_BYTES} random bytes (openssl rand -out ${path} 32)`);
  }
  return material;
}

function nonce(prefix: Buffer, index: number, last: boolean): Buffer {
  const value = Buffer.alloc(12);
  prefix.copy(value, 0);
  value.writeUInt32BE(index, 7);
  value[11] = last ? 1 : 0;
  return value;
}

/** Writes a backup file: the header at once, then the payload as it comes, sealed chunk by chunk. */
export class BackupWriter {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private chunkIndex = 0;
  private readonly headerBytes: Buffer;
  private readonly hash: Hash | undefined;
  private readonly key: Buffer | undefined;
  private readonly noncePrefix: Buffer | undefined;
  written = 0;

  private constructor(
    private readonly file: FileHandle,
    header: BackupHeader,
    key: Buffer | undefined,
    noncePrefix: Buffer | undefined,
  ) {
    const json = Buffer.from(JSON.stringify(header), 'utf8');
    const length = Buffer.alloc(4);
    length.writeUInt32BE(json.length);
    this.headerBytes = Buffer.concat([MAGIC, length, json]);
    this.key = key;
    this.noncePrefix = noncePrefix;
    this.hash = key ? undefined : createHash('sha256').update(this.headerBytes);
  }

  /** Opens `path` (which must not exist) and writes the header. */
  static async create(path: string, keyMaterial: Buffer | undefined): Promise<BackupWriter> {
    let encryption: EncryptionHeader | null = null;
    let key: Buffer | undefined;
    let noncePrefix: Buffer | undefined;
    if (keyMaterial) {
      const salt = randomBytes(16);
      noncePrefix = randomBytes(7);
      const keys = deriveKeys(keyMaterial, salt);
      key = keys.key;
      encryption = {
        cipher: 'aes-256-gcm',
        kdf: 'hkdf-sha256',
        salt: salt.toString('base64'),
        noncePrefix: noncePrefix.toString('base64'),
        chunkSize: CHUNK_SIZE,
        keyCheck: keys.keyCheck.toString('base64'),
      };
    }
    const file = await open(path, 'wx', 0o600);
    const writer = new BackupWriter(file, { format: 1, createdAt: new Date().toISOString(), encryption }, key, noncePrefix);
    await writer.put(writer.headerBytes);
    return writer;
  }

  private async put(bytes: Buffer): Promise<void> {
    for (let offset = 0; offset < bytes.length; ) {
      const { bytesWritten } = await this.file.write(bytes, offset, bytes.length - offset);
      offset += bytesWritten;
    }
    this.written += bytes.length;
  }

  private async seal(chunk: Buffer, last: boolean): Promise<void> {
    const cipher = createCipheriv('aes-256-gcm', this.key as Buffer, nonce(this.noncePrefix as Buffer, this.chunkIndex, last));
    cipher.setAAD(this.headerBytes);
    const sealed = Buffer.concat([cipher.update(chunk), cipher.final(), cipher.getAuthTag()]);
    this.chunkIndex += 1;
    if (this.chunkIndex > 0xffffffff) {
      throw new BackupFileError('the backup is too large for one file (4 PiB)');
    }
    await this.put(sealed);
  }

  /** Appends payload bytes. */
  async write(bytes: Buffer): Promise<void> {
    if (!this.key) {
      this.hash?.update(bytes);
      await this.put(bytes);
      return;
    }
    this.pending.push(bytes);
    this.pendingBytes += bytes.length;
    if (this.pendingBytes < CHUNK_SIZE) {
      return;
    }
    let all = Buffer.concat(this.pending, this.pendingBytes);
    while (all.length >= CHUNK_SIZE) {
      await this.seal(all.subarray(0, CHUNK_SIZE), false);
      all = all.subarray(CHUNK_SIZE);
    }
    this.pending = [all];
    this.pendingBytes = all.length;
  }

  /** Writes the last chunk (or the checksum), flushes to disk and closes. */
  async finish(): Promise<void> {
    if (this.key) {
      // Always shorter than a whole chunk, possibly empty: the reader knows it is the last.
      await this.seal(Buffer.concat(this.pending, this.pendingBytes), true);
    } else {
      await this.put((this.hash as Hash).digest());
    }
    await this.file.sync();
    await this.file.close();
  }

  async abandon(): Promise<void> {
    await this.file.close().catch(() => {});
  }
}

/** The header of a backup file, without reading further. */
export async function readBackupHeader(path: string): Promise<{ header: BackupHeader; headerBytes: Buffer; size: number }> {
  const file = await open(path, 'r').catch((error: NodeJS.ErrnoException) => {
    throw new BackupFileError(`cannot open ${path} (${error.code ?? error.message})`);
  });
  try {
    return await headerOf(file, path);
  } finally {
    await file.close();
  }
}

async function headerOf(file: FileHandle, path: string): Promise<{ header: BackupHeader; headerBytes: Buffer; size: number }> {
  const { size } = await file.stat();
  const start = Buffer.alloc(12);
  const { bytesRead } = await file.read(start, 0, 12, 0);
  if (bytesRead < 12 || !start.subarray(0, 8).equals(MAGIC)) {
    throw new BackupFileError(`${path} is not a backup made by npm run db:backup`);
  }
  const length = start.readUInt32BE(8);
  if (length > 65_536 || 12 + length > size) {
    throw new BackupFileError(`${path}: the header is damaged`);
  }
  const json = Buffer.alloc(length);
  await file.read(json, 0, length, 12);
  let header: BackupHeader;
  try {
    header = JSON.parse(json.toString('utf8')) as BackupHeader;
  } catch {
    throw new BackupFileError(`${path}: the header is damaged`);
  }
  if (header.format !== 1) {
    throw new BackupFileError(`${path}: backup format ${String(header.format)} is not one this version reads`);
  }
  return { header, headerBytes: Buffer.concat([start, json]), size };
}

/**
 * Reads a whole backup, checking every byte (checksum, or each chunk's tag)
 * and handing the payload to `consume` as it goes. Throws BackupFileError on
 * a wrong or missing key (before reading the body), and on any damage. The
 * caller must treat what it was handed as unverified until this resolves.
 */
export async function readBackup(path: string, keyMaterial: Buffer | undefined, consume: (bytes: Buffer) => Promise<void>): Promise<BackupHeader> {
  const file = await open(path, 'r').catch((error: NodeJS.ErrnoException) => {
    throw new BackupFileError(`cannot open ${path} (${error.code ?? error.message})`);
  });
  try {
    const { header, headerBytes, size } = await headerOf(file, path);
    let position = headerBytes.length;
    const read = async (length: number): Promise<Buffer> => {
      const buffer = Buffer.alloc(length);
      let filled = 0;
      while (filled < length) {
        const { bytesRead } = await file.read(buffer, filled, length - filled, position + filled);
        if (bytesRead === 0) {
          break;
        }
        filled += bytesRead;
      }
      position += filled;
      return buffer.subarray(0, filled);
    };

    if (!header.encryption) {
      if (keyMaterial) {
        throw new BackupFileError(`${path} is not encrypted, but a --key-file was given: is this the backup you meant?`);
      }
      if (size < position + HASH_SIZE) {
        throw new BackupFileError(`${path} is truncated`);
      }
      const hash = createHash('sha256').update(headerBytes);
      const end = size - HASH_SIZE;
      while (position < end) {
        const piece = await read(Math.min(CHUNK_SIZE, end - position));
        if (piece.length === 0) {
          throw new BackupFileError(`${path} is truncated`);
        }
        hash.update(piece);
        await consume(piece);
      }
      const expected = await read(HASH_SIZE);
      if (!hash.digest().equals(expected)) {
        throw new BackupFileError(`${path} is damaged: its checksum does not match its content`);
      }
      return header;
    }

    const encryption = header.encryption;
    if (!keyMaterial) {
      throw new BackupFileError(`${path} is encrypted: give the key file it was made with (--key-file)`);
    }
    const { key, keyCheck } = deriveKeys(keyMaterial, Buffer.from(encryption.salt, 'base64'));
    const expectedCheck = Buffer.from(encryption.keyCheck, 'base64');
    if (expectedCheck.length !== keyCheck.length || !timingSafeEqual(expectedCheck, keyCheck)) {
      throw new BackupFileError(`the key file does not match the key ${path} was encrypted with`);
    }
    const prefix = Buffer.from(encryption.noncePrefix, 'base64');
    const sealedSize = encryption.chunkSize + TAG_SIZE;
    for (let index = 0; ; index += 1) {
      const sealed = await read(sealedSize);
      const last = sealed.length < sealedSize;
      if (sealed.length < TAG_SIZE) {
        throw new BackupFileError(`${path} is truncated`);
      }
      const decipher = createDecipheriv('aes-256-gcm', key, nonce(prefix, index, last));
      decipher.setAAD(headerBytes);
      decipher.setAuthTag(sealed.subarray(sealed.length - TAG_SIZE));
      let plain: Buffer;
      try {
        plain = Buffer.concat([decipher.update(sealed.subarray(0, sealed.length - TAG_SIZE)), decipher.final()]);
      } catch {
        throw new BackupFileError(`${path} is damaged or was altered: chunk ${index} fails authentication`);
      }
      await consume(plain);
      if (last) {
        if (position !== size) {
          throw new BackupFileError(`${path} is damaged: bytes after the last chunk`);
        }
        return header;
      }
    }
  } finally {
    await file.close();
  }
}

/** Splits a payload stream into its manifest and the archive bytes after it. */
export class PayloadSplitter {
  private head: Buffer[] = [];
  private headBytes = 0;
  private manifestLength: number | undefined;
  manifest: BackupManifest | undefined;

  constructor(private readonly archive: (bytes: Buffer) => Promise<void>) {}

  static encodeManifest(manifest: BackupManifest): Buffer {
    const json = Buffer.from(JSON.stringify(manifest), 'utf8');
    const length = Buffer.alloc(4);
    length.writeUInt32BE(json.length);
    return Buffer.concat([length, json]);
  }

  async consume(bytes: Buffer): Promise<void> {
    if (this.manifest) {
      await this.archive(bytes);
      return;
    }
    this.head.push(bytes);
    this.headBytes += bytes.length;
    const head = Buffer.concat(this.head, this.headBytes);
    if (this.manifestLength === undefined) {
      if (head.length < 4) {
        return;
      }
      this.manifestLength = head.readUInt32BE(0);
    }
    if (head.length < 4 + this.manifestLength) {
      this.head = [head];
      return;
    }
    try {
      this.manifest = JSON.parse(head.subarray(4, 4 + this.manifestLength).toString('utf8')) as BackupManifest;
    } catch {
      throw new BackupFileError('the backup manifest is damaged');
    }
    this.head = [];
    const rest = head.subarray(4 + this.manifestLength);
    if (rest.length > 0) {
      await this.archive(rest);
    }
  }
}

/**
 * Where PostgreSQL's client programs are: PG_BINDIR, else PostgreSQL 15's
 * own directory on Debian, else the PATH.
 */
export function postgresProgram(name: 'pg_dump' | 'pg_restore'): string {
  const candidates = [
    ...(process.env.PG_BINDIR ? [process.env.PG_BINDIR] : []),
    '/usr/lib/postgresql/15/bin',
    ...(process.env.PATH ?? '').split(delimiter).filter(Boolean),
  ];
  for (const directory of candidates) {
    if (existsSync(join(directory, name))) {
      return join(directory, name);
    }
  }
  throw new BackupFileError(`${name} not found (PostgreSQL 15's client programs): install postgresql-client-15 or set PG_BINDIR`);
}

/**
 * A libpq connection for pg_dump and pg_restore from DATABASE_URL: the URL
 * without its password (which would show in the process list) and the
 * environment that carries it.
 */
export function libpqConnection(databaseUrl: string, database?: string): { url: string; env: NodeJS.ProcessEnv } {
  const url = new URL(databaseUrl);
  const password = decodeURIComponent(url.password);
  url.password = '';
  if (database !== undefined) {
    url.pathname = `/${encodeURIComponent(database)}`;
  }
  // node-postgres's name for an unchecked TLS connection; libpq calls it require.
  if (url.searchParams.get('sslmode') === 'no-verify') {
    url.searchParams.set('sslmode', 'require');
  }
  return { url: url.toString(), env: { ...process.env, ...(password ? { PGPASSWORD: password } : {}) } };
}

/** DATABASE_URL naming another database on the same server. */
export function withDatabase(databaseUrl: string, database: string): string {
  const url = new URL(databaseUrl);
  url.pathname = `/${encodeURIComponent(database)}`;
  return url.toString();
}

/** The database DATABASE_URL names. */
export function databaseOf(databaseUrl: string): string {
  const name = decodeURIComponent(new URL(databaseUrl).pathname.replace(/^\//, ''));
  if (!name) {
    throw new BackupFileError('DATABASE_URL names no database');
  }
  return name;
}

export function quoteIdentifier(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

export function quoteLiteral(value: string): string {
  return `'${value.replace(/'/g, "''")}'`;
}
