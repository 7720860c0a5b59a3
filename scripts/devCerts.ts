/**
 * `npm run dev:certs [-- --renew]`: a local CA and certificates for
 * development in .data/certs (the services', and a client's for mutual TLS),
 * which `npm start -- --tls` (or `--mtls`) serves with. Never for production.
 */
import { parseArgs } from 'node:util';
import { DATA_DIR } from './checkout.js';
import { devCertificates } from './devStack/devCertificates.js';

const { values } = parseArgs({ options: { renew: { type: 'boolean', default: false } } });
const { certificates, made } = devCertificates(`${DATA_DIR}certs`, values.renew);
process.stdout.write(
  [
    made ? 'made a development CA and certificates:' : 'the development certificates exist (--renew makes new ones):',
    `  CA               ${certificates.caFile}`,
    `  services         ${certificates.server.certFile}  ${certificates.server.keyFile}`,
    `  client (mTLS)    ${certificates.client.certFile}  ${certificates.client.keyFile}  (${certificates.client.identity})`,
    '',
    'serve with them: npm start -- --tls   (or --mtls: client certificates required)',
    `then: grpcurl -cacert ${certificates.caFile} localhost:50051 grpc.health.v1.Health/Check`,
    `  with --mtls, add: -cert ${certificates.client.certFile} -key ${certificates.client.keyFile}`,
    '',
  ].join('\n'),
);
