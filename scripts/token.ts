/**
 * `npm run token -- --roles coordinator --sites SITE-A,SITE-B [--sub alice] [--ttl 3600]`
 * mints a development token (HS256 with JWT_SECRET) and opens its session in
 * Redis (unless the services keep their state in process, STATE_STORE=memory),
 * then prints the token. `--sites '*'` grants every site. For use with
 * grpcurl: -H "authorization: Bearer $(npm run -s token -- --roles monitor --sites SITE-A)".
 */
import { parseArgs } from 'node:util';
import { createCircuitBreaker, createRedisClient, createSessionStore, waitForRedis } from '@clinical/cache';
import { mintToken, ROLES, type Role } from '@clinical/server-kit';
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
const redisUrl = settingOf('REDIS_URL');
// An exported REDIS_URL wins over what an earlier `npm start` recorded.
const sessionsInProcess = !process.env.REDIS_URL && settingOf('STATE_STORE') === 'memory';
const problems = [
  ...(unknown.length > 0 ? [`--roles: unknown ${unknown.join(', ')} (known: ${ROLES.join(', ')})`] : []),
  ...(secret ? [] : ['JWT_SECRET is not set (run `npm start` first, or export it)']),
  ...(redisUrl || sessionsInProcess ? [] : ['REDIS_URL is not set (run `npm start` first, or export it)']),
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
if (sessionsInProcess) {
  process.stderr.write('token: STATE_STORE=memory: the services take any signed, unexpired token as a live session\n');
} else {
  await openSession(redisUrl as string, sid);
}
process.stdout.write(`${token}\n`);

/** Registers the token's session in Redis, where every service checks it. */
async function openSession(url: string, sid: string): Promise<void> {
  const redis = createRedisClient({ url, keyPrefix: process.env.REDIS_KEY_PREFIX ?? 'clinical:' });
  redis.on('error', () => {
    // Reported below if it never connects.
  });
  if (!(await waitForRedis(redis, 3_000))) {
    console.error(`token: Redis at ${url} is not answering`);
    process.exit(69);
  }
  const sessions = createSessionStore({ redis, breaker: createCircuitBreaker(), ttlSeconds });
  await sessions.create({ sid, sub: values.sub, createdAt: new Date().toISOString() });
  redis.disconnect();
}
