/**
 * `npm run token -- --roles coordinator --sites SITE-A,SITE-B [--sub alice] [--ttl 3600]`
 * mints a development token (HS256 with JWT_SECRET), opens its session in
 * PostgreSQL (audited; the services check it on every call, through Redis
 * when there is one), and prints the token. `--sites '*'` grants every site.
 * For use with grpcurl: -H "authorization: Bearer $(npm run -s token -- --roles monitor --sites SITE-A)".
 */
import { parseArgs } from 'node:util';
import { createDatabasePool } from '@clinical/db';
import { mintToken, openSession, ROLES, type Role } from '@clinical/server-kit';
import { settingOf } from './devEnvironment.js';

const { values } = parseArgs({
  options: {
    sub: { type: 'string', default: 'dev-user' },
    roles: { type: 'string', default: 'coordinator' },
    sites: { type: 'string', default: '*' },
    ttl: { type: 'string', default: '3600' },
  },
});

const roles = values.roles.split(',').map((role) => role.trim());
const unknown = roles.filter((role) => !(ROLES as readonly string[]).includes(role));
const secret = settingOf('JWT_SECRET');
const databaseUrl = settingOf('DATABASE_URL');
const problems = [
  ...(unknown.length > 0 ? [`--roles: unknown ${unknown.join(', ')} (known: ${ROLES.join(', ')})`] : []),
  ...(secret ? [] : ['JWT_SECRET is not set (run `npm start` first, or export it)']),
  ...(databaseUrl ? [] : ['DATABASE_URL is not set (run `npm start` first, or export it)']),
  ...(/^\d+$/.test(values.ttl) ? [] : ['--ttl: seconds, a whole number']),
];
if (problems.length > 0) {
  console.error(`token: ${problems.join('\n       ')}`);
  process.exit(78);
}

const ttlSeconds = Number(values.ttl);
const sites = values.sites === '*' ? '*' : values.sites.split(',').map((site) => site.trim());
const { token, sid } = await mintToken({
  secret: secret as string,
  issuer: process.env.JWT_ISSUER ?? 'clinical-platform',
  audience: process.env.JWT_AUDIENCE ?? 'clinical-data-services',
  sub: values.sub,
  roles: roles as Role[],
  sites,
  ttlSeconds,
});
let pool;
try {
  pool = await createDatabasePool({ connectionUri: databaseUrl as string, maximumPoolSize: 1, connectionTimeoutMs: 3_000 });
} catch (error) {
  console.error(`token: the database is not answering (${(error as Error).name}); is \`npm start\` running?`);
  process.exit(69);
}
await openSession(pool, { sid, sub: values.sub, expiresAt: new Date(Date.now() + ttlSeconds * 1_000) });
await pool.end();
process.stdout.write(`${token}\n`);
