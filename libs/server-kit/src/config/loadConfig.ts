import { z } from 'zod';

/** Thrown at start when environment variables are missing or malformed; lists every problem. */
export class ConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`invalid configuration:\n${problems.map((problem) => `  - ${problem}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/**
 * Parses environment variables with a zod schema whose keys are the variable
 * names. Empty strings count as unset. `crossChecks` states rules that span
 * variables; they are reported together with the schema's.
 * @throws ConfigError naming each bad variable and what is wrong with it.
 */
export function loadConfig<S extends z.ZodTypeAny>(
  schema: S,
  env: NodeJS.ProcessEnv = process.env,
  crossChecks: (env: Record<string, string>) => string[] = () => [],
): z.infer<S> {
  const cleaned = Object.fromEntries(
    Object.entries(env).filter((entry): entry is [string, string] => entry[1] !== undefined && entry[1] !== ''),
  );
  const parsed = schema.safeParse(cleaned);
  const problems = [
    ...(parsed.success
      ? []
      : parsed.error.issues.map((issue) => `${issue.path.join('.') || '(environment)'}: ${issue.message}`)),
    ...crossChecks(cleaned),
  ];
  if (problems.length > 0) {
    throw new ConfigError(problems);
  }
  return parsed.data;
}
