import { existsSync } from 'node:fs';
import { createCertificateAuthority } from '@clinical/testing';

/** The development certificates: a local CA, the services' certificate and a client's. */
export interface DevCertificates {
  readonly caFile: string;
  readonly server: { readonly certFile: string; readonly keyFile: string };
  readonly client: { readonly certFile: string; readonly keyFile: string; readonly identity: string };
}

/** The identity of the development client certificate: a `service` principal under `npm start -- --mtls`. */
export const DEV_CLIENT_IDENTITY = 'spiffe://clinical/dev-client';

/**
 * The development CA and certificates in `dir`, made (openssl) when missing
 * or when `renew` is set: the services' certificate names localhost,
 * 127.0.0.1 and ::1. For development only: the CA's key lies beside them.
 */
export function devCertificates(dir: string, renew = false): { certificates: DevCertificates; made: boolean } {
  const certificates: DevCertificates = {
    caFile: `${dir}/ca.crt`,
    server: { certFile: `${dir}/server.crt`, keyFile: `${dir}/server.key` },
    client: { certFile: `${dir}/client.crt`, keyFile: `${dir}/client.key`, identity: DEV_CLIENT_IDENTITY },
  };
  const present = [certificates.caFile, certificates.server.certFile, certificates.client.certFile].every((file) => existsSync(file));
  if (present && !renew) {
    return { certificates, made: false };
  }
  const ca = createCertificateAuthority(dir, 'Clinical development CA');
  ca.issue('server', { serverNames: ['localhost', '127.0.0.1', '::1'] });
  ca.issue('client', { clientIdentity: DEV_CLIENT_IDENTITY });
  return { certificates, made: true };
}
