import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** A certificate and its private key, as PEM files. */
export interface IssuedCertificate {
  readonly certFile: string;
  readonly keyFile: string;
}

/** A local certificate authority (openssl), for development and tests: never for production. */
export interface CertificateAuthority {
  /** The CA's certificate (PEM): what clients trust, and what a server trusts client certificates by. */
  readonly caFile: string;
  /**
   * Issues a certificate named `name` (its files are `<name>.crt` and `<name>.key`): for a server,
   * with `serverNames` (DNS names and IP addresses) as subject alternative names; for a client, with
   * `clientIdentity` as common name and as a URI name (`spiffe://…` or any identity string).
   */
  issue(name: string, use: { readonly serverNames: readonly string[] } | { readonly clientIdentity: string }): IssuedCertificate;
}

const openssl = (args: readonly string[]) => execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });

/** An ECDSA P-256 key and the request for its certificate. */
function keyAndRequest(keyFile: string, requestFile: string, commonName: string): void {
  // -subj separates fields with '/': a slash inside the name (a URI) is escaped.
  const subject = `/CN=${commonName.replaceAll('/', '\\/')}`;
  openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', keyFile, '-out', requestFile, '-subj', subject]);
}

/** Makes a new certificate authority in `dir` (created if needed), named `commonName`. */
export function createCertificateAuthority(dir: string, commonName = 'Clinical development CA'): CertificateAuthority {
  mkdirSync(dir, { recursive: true });
  const caFile = join(dir, 'ca.crt');
  const caKey = join(dir, 'ca.key');
  openssl([
    'req', '-x509', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', caKey, '-out', caFile, '-days', '3650', '-subj', `/CN=${commonName}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  return {
    caFile,
    issue(name, use) {
      const keyFile = join(dir, `${name}.key`);
      const certFile = join(dir, `${name}.crt`);
      const requestFile = join(dir, `${name}.csr`);
      const extensionsFile = join(dir, `${name}.ext`);
      const server = 'serverNames' in use;
      const alternativeNames = server
        ? use.serverNames.map((serverName) => (/^[\d.]+$|:/.test(serverName) ? `IP:${serverName}` : `DNS:${serverName}`))
        : [`URI:${use.clientIdentity}`];
      writeFileSync(
        extensionsFile,
        [
          'basicConstraints=critical,CA:FALSE',
          'keyUsage=critical,digitalSignature',
          `extendedKeyUsage=${server ? 'serverAuth' : 'clientAuth'}`,
          `subjectAltName=${alternativeNames.join(',')}`,
        ].join('\n'),
      );
      keyAndRequest(keyFile, requestFile, server ? use.serverNames[0]! : use.clientIdentity);
      openssl([
        'x509', '-req', '-in', requestFile, '-CA', caFile, '-CAkey', caKey, '-CAcreateserial',
        '-out', certFile, '-days', '825', '-extfile', extensionsFile,
      ]);
      return { certFile, keyFile };
    },
  };
}
