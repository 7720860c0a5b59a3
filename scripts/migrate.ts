/** `npm run db:migrate`: applies pending migrations to DATABASE_URL under an advisory lock. */
import { migrate } from '@clinical/db';
import { ROOT } from './checkout.js';
import { settingOf } from './devEnvironment.js';

const databaseUrl = settingOf('DATABASE_URL');
if (!databaseUrl) {
  console.error('db:migrate: set DATABASE_URL (a role that may create tables and roles)');
  process.exit(78);
}
const applied = await migrate({ databaseUrl, migrationsDir: `${ROOT}db/migrations`, log: (message) => console.log(message) });
console.log(applied.length > 0 ? `applied: ${applied.join(', ')}` : 'schema is up to date; nothing to apply');
