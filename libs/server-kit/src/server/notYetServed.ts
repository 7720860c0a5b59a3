import { ServerError, Status } from 'nice-grpc';

/**
 * Handler of a contract method that this release does not serve yet: callers
 * get UNIMPLEMENTED, never a made-up answer.
 */
export function notYetServed(method: string): () => Promise<never> {
  return async () => {
    throw new ServerError(Status.UNIMPLEMENTED, `${method} is not available yet`);
  };
}
