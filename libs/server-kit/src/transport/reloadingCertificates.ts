import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import { createSecureContext } from 'node:tls';
import type { experimental } from '@grpc/grpc-js';

type CertificateProvider = experimental.CertificateProvider;
type CaListener = experimental.CaCertificateUpdateListener;
type IdentityListener = experimental.IdentityCertificateUpdateListener;

/** The PEM files a TLS server is configured with. */
export interface CertificateFiles {
  readonly certFile: string;
  readonly keyFile: string;
  /** The CA client certificates must be signed by (mutual TLS); none for TLS alone. */
  readonly clientCaFile?: string;
}

interface Loaded {
  readonly certificate: Buffer;
  readonly privateKey: Buffer;
  readonly caCertificate?: Buffer;
}

function load(files: CertificateFiles): Loaded {
  const loaded = {
    certificate: readFileSync(files.certFile),
    privateKey: readFileSync(files.keyFile),
    caCertificate: files.clientCaFile ? readFileSync(files.clientCaFile) : undefined,
  };
  // Throws when the key does not match the certificate, or a file is not PEM of its kind.
  createSecureContext({ cert: loaded.certificate, key: loaded.privateKey, ca: loaded.caCertificate });
  return loaded;
}

const sameAs = (a: Loaded, b: Loaded) =>
  a.certificate.equals(b.certificate) &&
  a.privateKey.equals(b.privateKey) &&
  (a.caCertificate ?? Buffer.alloc(0)).equals(b.caCertificate ?? Buffer.alloc(0));

/**
 * The server's certificate, key and client CA, read from their files and
 * read again when a file changes (polled every `reloadIntervalMs`) or on
 * `reload()` (SIGHUP). grpc-js gives new connections the new certificates;
 * connections already open, and their calls, carry on. Files caught half
 * rewritten (a key that does not match its certificate) are not taken: the
 * previous certificates stay until the set is whole again.
 */
export class ReloadingCertificates implements CertificateProvider {
  private current: Loaded;
  private readonly caListeners = new Set<CaListener>();
  private readonly identityListeners = new Set<IdentityListener>();
  private readonly watched: string[];
  private readonly onChange = () => {
    this.reload();
  };

  /** @throws Error when a file cannot be read or the set does not hold together (at start: a configuration error). */
  constructor(
    private readonly files: CertificateFiles,
    reloadIntervalMs: number,
    private readonly onReloadFailure: (error: unknown) => void,
  ) {
    this.current = load(files);
    this.watched = [files.certFile, files.keyFile, ...(files.clientCaFile ? [files.clientCaFile] : [])];
    for (const file of this.watched) {
      watchFile(file, { interval: reloadIntervalMs, persistent: false }, this.onChange);
    }
  }

  /** Reads the files again; returns whether the certificates changed. A failed read keeps the previous ones. */
  reload(): boolean {
    let next: Loaded;
    try {
      next = load(this.files);
    } catch (error) {
      this.onReloadFailure(error);
      return false;
    }
    if (sameAs(next, this.current)) {
      return false;
    }
    this.current = next;
    for (const listener of this.caListeners) {
      listener(this.caUpdate());
    }
    for (const listener of this.identityListeners) {
      listener(this.identityUpdate());
    }
    return true;
  }

  /** Stops watching the files. */
  close(): void {
    for (const file of this.watched) {
      unwatchFile(file, this.onChange);
    }
  }

  private caUpdate() {
    return this.current.caCertificate ? { caCertificate: this.current.caCertificate } : null;
  }

  private identityUpdate() {
    return { certificate: this.current.certificate, privateKey: this.current.privateKey };
  }

  // A new listener hears the current certificates on the next tick, as from a file read: grpc-js
  // registers the watcher that applies them only after it has added its listeners.
  addCaCertificateListener(listener: CaListener): void {
    this.caListeners.add(listener);
    setImmediate(() => this.caListeners.has(listener) && listener(this.caUpdate()));
  }

  removeCaCertificateListener(listener: CaListener): void {
    this.caListeners.delete(listener);
  }

  addIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.add(listener);
    setImmediate(() => this.identityListeners.has(listener) && listener(this.identityUpdate()));
  }

  removeIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.delete(listener);
  }
}
