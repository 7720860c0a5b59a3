import * as grpc from '@grpc/grpc-js';
import type { PeerCertificate } from 'node:tls';
import { ReloadingCertificates } from './reloadingCertificates.js';

/**
 * The metadata key that carries a verified client certificate's identity
 * from the transport to the authentication middleware. Whatever a client
 * sends under this key is removed first: only the TLS handshake sets it.
 */
export const PEER_IDENTITY_HEADER = 'x-clinical-peer-identity';

/** TLS for a service's port (TLS_* variables). */
export interface TlsSettings {
  readonly certFile: string;
  readonly keyFile: string;
  /** Clients must present a certificate signed by this CA (mutual TLS). */
  readonly clientCaFile?: string;
  /** How often the files are checked for a change. */
  readonly reloadIntervalMs: number;
  /** Client certificate identities (URI name, else common name) that call as `service` principals without a token. */
  readonly serviceIdentities: readonly string[];
}

/** How a server listens: its credentials, the options its grpc-js server needs, and certificate reloads. */
export interface TransportSecurity {
  readonly credentials: grpc.ServerCredentials;
  readonly serverOptions: grpc.ServerOptions;
  /** Reads the certificate files again (SIGHUP); whether they changed. */
  reloadCertificates(): boolean;
  close(): void;
}

/** A client certificate's identity: its first URI subject alternative name (SPIFFE style), else its common name. */
export function certificateIdentity(certificate: PeerCertificate | undefined): string | undefined {
  if (!certificate || Object.keys(certificate).length === 0) {
    return undefined;
  }
  const uri = certificate.subjectaltname
    ?.split(', ')
    .find((name) => name.startsWith('URI:'))
    ?.slice('URI:'.length);
  const commonName = certificate.subject?.CN;
  return uri ?? (typeof commonName === 'string' ? commonName : undefined);
}

/** Replaces PEER_IDENTITY_HEADER in every call's metadata with the identity of the certificate its connection presented. */
const passPeerIdentity: grpc.ServerInterceptor = (_method, call) =>
  new grpc.ServerInterceptingCall(call, {
    start(next) {
      next({
        onReceiveMetadata(metadata, passOn) {
          metadata.remove(PEER_IDENTITY_HEADER);
          const identity = certificateIdentity(call.getAuthContext().sslPeerCertificate);
          if (identity) {
            metadata.set(PEER_IDENTITY_HEADER, identity);
          }
          passOn(metadata);
        },
      });
    },
  });

/**
 * Plaintext without settings (development); with them TLS only, and mutual
 * TLS with a client CA: a client without a certificate signed by it fails
 * the handshake. Certificates reload when their files change.
 * @throws Error when the files cannot be read or do not hold together.
 */
export function createTransportSecurity(tls: TlsSettings | undefined, onReloadFailure: (error: unknown) => void): TransportSecurity {
  if (!tls) {
    return {
      credentials: grpc.ServerCredentials.createInsecure(),
      serverOptions: {},
      reloadCertificates: () => false,
      close: () => {},
    };
  }
  const certificates = new ReloadingCertificates(
    { certFile: tls.certFile, keyFile: tls.keyFile, clientCaFile: tls.clientCaFile },
    tls.reloadIntervalMs,
    onReloadFailure,
  );
  const mutual = tls.clientCaFile !== undefined;
  // grpc-js 1.14 takes the identity provider first and the CA provider (null: no client certificates)
  // second, whatever its typings call them; one provider serves both here.
  const credentials = grpc.experimental.createCertificateProviderServerCredentials(
    certificates,
    (mutual ? certificates : null) as never,
    mutual,
  );
  return {
    credentials,
    // The interceptor runs only where an identity may become a principal: otherwise the header means nothing.
    serverOptions: mutual && tls.serviceIdentities.length > 0 ? { interceptors: [passPeerIdentity] } : {},
    reloadCertificates: () => certificates.reload(),
    close: () => certificates.close(),
  };
}
