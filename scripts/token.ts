/**
 * `npm run token -- --roles coordinator --sites SITE-A,SITE-B [--sub alice] [--ttl 3600]`
 * mints a development token (HS256 with JWT_SECRET), opens its session in
 * PostgreSQL (audited; the services check it on every call, through Redis
 * when there is one), and prints the token. `--sites '*'` grants every site.
 * For use with grpcurl: -H "authorization: Bearer $(npm run -s token -- --roles monitor --sites SITE-A)".
 */
import { parseArgs } from 'node:util';
import { ROLES, type Role } from '@clinical/server-kit';
import { devTokenProblems, DevTokenError, mintDevTokens, unknownRoles } from './devTokens.js';

const { values } = parseArgs({
  options: {
    sub: { type: 'string', default: 'dev-user' },
    roles: { type: 'string', default: 'coordinator' },
    sites: { type: 'string', default: '*' },
    ttl: { type: 'string', default: '3600' },
  },
});

const roles = values.roles.split(',').map((role) => role.trim());
const unknown = unknownRoles(roles);
const problems = [
  ...(unknown.length > 0 ? [`--roles: unknown ${unknown.join(', ')} (known: ${ROLES.join(', ')})`] : []),
  ...devTokenProblems(),
  ...(/^\d+$/.test(values.ttl) ? [] : ['--ttl: seconds, a whole number']),
];
if (problems.length > 0) {
  console.error(`token: ${problems.join('\n       ')}`);
  process.exit(78);
}

try {
  const [token] = await mintDevTokens([
    {
      sub: values.sub,
      roles: roles as Role[],
      sites: values.sites === '*' ? '*' : values.sites.split(',').map((site) => site.trim()),
      ttlSeconds: Number(values.ttl),
    },
  ]);
  process.stdout.write(`${token}\n`);
} catch (error) {
  if (error instanceof DevTokenError) {
    console.error(`token: ${error.message}`);
    process.exit(error.exitCode);
  }
  throw error;
}
