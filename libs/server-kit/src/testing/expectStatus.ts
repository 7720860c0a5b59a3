import { ClientError, Status } from 'nice-grpc';
import { expect } from 'vitest';

/** Awaits a call that must fail with `code`; returns the error for further checks. */
export async function expectStatus(call: Promise<unknown>, code: Status): Promise<ClientError> {
  const error = await call.then(
    () => undefined,
    (failure: unknown) => failure,
  );
  expect(error, `expected ${Status[code]}`).toBeInstanceOf(ClientError);
  expect(Status[(error as ClientError).code]).toBe(Status[code]);
  return error as ClientError;
}
