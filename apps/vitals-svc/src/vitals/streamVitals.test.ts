import { randomUUID } from 'node:crypto';
import { vitalsV1 } from '@clinical/contracts';
import { Status } from 'nice-grpc';
import { eventually } from '@clinical/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectStatus, reading, startVitalsTestBed, type VitalsTestBed } from '../testing/vitalsTestKit.js';

let bed: VitalsTestBed;

beforeAll(async () => {
  bed = await startVitalsTestBed();
});

afterAll(async () => {
  await bed?.stop();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** `messages` messages of `size` readings each, spread over `patientIds`. */
function messagesOf(patientIds: string[], messages: number, size: number, requestId = ''): vitalsV1.StreamVitalsRequest[] {
  return Array.from({ length: messages }, (_, message) => ({
    requestId: message === 0 ? requestId : '',
    readings: Array.from({ length: size }, (_, index) =>
      reading(patientIds[(message * size + index) % patientIds.length]!, 1 + (message * size + index) / 1_000),
    ),
  }));
}

/** Sends `messages`; after message `pauseAfter.index`, waits for `pauseAfter.until` before the rest. */
async function* send(messages: vitalsV1.StreamVitalsRequest[], pauseAfter?: { index: number; until: Promise<unknown> }) {
  for (const [index, message] of messages.entries()) {
    yield message;
    if (pauseAfter && index === pauseAfter.index) {
      await pauseAfter.until;
    }
  }
}

/** A promise and the function that resolves it. */
function latch(): { promise: Promise<void>; open: () => void } {
  let open = () => {};
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

/** vitals-svc connections with a transaction open (running a statement or idle in it). */
async function vitalsTransactions(): Promise<number> {
  const { rows } = await bed.admin.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM pg_stat_activity
      WHERE datname = current_database() AND usename = 'clinical_vitals_svc' AND xact_start IS NOT NULL`,
  );
  return rows[0]!.n;
}

/** Waits until the service has a stream's transaction open. */
const streamTransactionOpen = () => eventually(async () => ((await vitalsTransactions()) > 0 ? true : undefined), 30_000, 'a stream transaction');

/** Waits until the service has ended every transaction (rolled back or committed): what it wrote is then final. */
const allTransactionsEnded = () => eventually(async () => ((await vitalsTransactions()) === 0 ? true : undefined), 30_000, 'transactions to end');

describe('StreamVitals', () => {
  it('commits a long stream at its half-close, one audit event per patient and chunk', async () => {
    const client = await bed.client({ sub: 'streamer' });
    const patients = [await bed.patient(), await bed.patient()];
    const response = await client.streamVitals(send(messagesOf(patients, 12, 2_500)));
    expect(response.acceptedCount).toBe('30000');
    expect(await bed.countReadings(patients[0])).toBe(15_000);
    expect(await bed.countReadings(patients[1])).toBe(15_000);
    const { rows } = await bed.admin.query(
      `SELECT count(*)::int AS events, sum((payload->>'count')::int)::int AS readings, min(user_id) AS user_id
         FROM audit_events WHERE entity_type = 'vital_signs' AND patient_id = ANY($1::uuid[])`,
      [patients],
    );
    // 30,000 readings in chunks of 5,000 readings: 6 statements, each touching both patients.
    expect(rows[0]).toEqual({ events: 12, readings: 30_000, user_id: 'streamer' });
  });

  it('writes nothing when a reading deep in the stream is invalid, and names it by its index in the stream', async () => {
    const client = await bed.client();
    const patientId = await bed.patient();
    const messages = messagesOf([patientId], 5, 3_000);
    messages[3]!.readings[1_234] = { ...messages[3]!.readings[1_234]!, diastolicBp: 150, systolicBp: 140 };
    const error = await expectStatus(client.streamVitals(send(messages)), Status.INVALID_ARGUMENT);
    expect(error.details).toContain('readings[10234].diastolic_bp');
    expect(await bed.countReadings(patientId)).toBe(0);
  });

  it('writes nothing when the client cancels mid-stream', async () => {
    const client = await bed.client();
    const patientId = await bed.patient();
    const controller = new AbortController();
    const paused = latch();
    const call = client.streamVitals(send(messagesOf([patientId], 4, 5_000), { index: 1, until: paused.promise }), { signal: controller.signal });
    await streamTransactionOpen();
    controller.abort();
    paused.open();
    await expect(call).rejects.toThrow();
    await allTransactionsEnded();
    expect(await bed.countReadings(patientId)).toBe(0);
  });

  it('writes nothing when the deadline passes mid-stream', async () => {
    const patientId = await bed.patient();
    const token = await bed.service.token({ roles: ['coordinator'], sites: ['SITE-A'] });
    const grpc = await import('@grpc/grpc-js');
    const raw = new grpc.Client(bed.service.address, grpc.credentials.createInsecure());
    const metadata = new grpc.Metadata();
    metadata.set('authorization', `Bearer ${token}`);
    const code = await new Promise<number>((resolve) => {
      const call = raw.makeClientStreamRequest(
        '/clinical.vitals.v1.VitalsService/StreamVitals',
        (message: vitalsV1.StreamVitalsRequest) => Buffer.from(vitalsV1.StreamVitalsRequest.encode(message).finish()),
        (bytes: Buffer) => vitalsV1.StreamVitalsResponse.decode(bytes),
        metadata,
        { deadline: new Date(Date.now() + 1_000) },
        (error) => resolve(error?.code ?? Status.OK),
      );
      for (const message of messagesOf([patientId], 2, 5_000)) {
        call.write(message);
      }
      // The client never half-closes: the deadline ends the call, then the client gives up too.
      setTimeout(() => call.end(), 3_000);
    });
    raw.close();
    expect(Status[code]).toBe('DEADLINE_EXCEEDED');
    await allTransactionsEnded();
    expect(await bed.countReadings(patientId)).toBe(0);
  });

  it('commits nothing when the client cancels right after its last message', async () => {
    const client = await bed.client();
    const patientId = await bed.patient();
    for (let attempt = 0; attempt < 5; attempt += 1) {
      const controller = new AbortController();
      const messages = messagesOf([patientId], 2, 5_000);
      async function* thenCancel() {
        yield* messages;
        await sleep(200 + attempt * 50);
        controller.abort();
        await sleep(1_000);
      }
      await expect(client.streamVitals(thenCancel(), { signal: controller.signal })).rejects.toThrow();
    }
    await allTransactionsEnded();
    expect(await bed.countReadings(patientId)).toBe(0);
  });

  it('writes nothing when the client dies mid-stream (connection cut, no half-close, no reset)', async () => {
    const patientId = await bed.patient();
    const token = await bed.service.token({ roles: ['coordinator'], sites: ['SITE-A'] });
    const http2 = await import('node:http2');
    const net = await import('node:net');
    const [host, port] = bed.service.address.split(':');
    const socket = net.connect(Number(port), host!);
    const session = http2.connect(`http://${bed.service.address}`, { createConnection: () => socket });
    session.on('error', () => {});
    const request = session.request({
      ':method': 'POST',
      ':path': '/clinical.vitals.v1.VitalsService/StreamVitals',
      'content-type': 'application/grpc',
      te: 'trailers',
      authorization: `Bearer ${token}`,
    });
    request.on('error', () => {});
    for (const message of messagesOf([patientId], 3, 5_000)) {
      const body = vitalsV1.StreamVitalsRequest.encode(message).finish();
      const frame = Buffer.alloc(5 + body.length);
      frame.writeUInt32BE(body.length, 1);
      frame.set(body, 5);
      request.write(frame);
    }
    await streamTransactionOpen();
    // As if the client process died: the TCP connection goes, nothing else is sent.
    socket.destroy();
    await allTransactionsEnded();
    expect(await bed.countReadings(patientId)).toBe(0);
  });

  it('makes a retried stream write nothing and return the first response; refuses a concurrent twin and a different stream', async () => {
    const client = await bed.client();
    const patientId = await bed.patient();
    const requestId = randomUUID();
    const messages = messagesOf([patientId], 3, 1_000, requestId);

    const paused = latch();
    const slow = client.streamVitals(send(messages, { index: 0, until: paused.promise }));
    // The first stream holds its request_id (a transaction advisory lock) while it waits for its next message.
    await eventually(async () => {
      const { rows } = await bed.admin.query(
        `SELECT 1 FROM pg_locks l JOIN pg_database d ON d.oid = l.database
          WHERE l.locktype = 'advisory' AND l.granted AND d.datname = current_database()`,
      );
      return rows.length > 0 ? true : undefined;
    }, 30_000, 'the first stream to claim its request_id');
    await expectStatus(client.streamVitals(send(messages)), Status.ABORTED);
    paused.open();
    const first = await slow;
    expect(first.acceptedCount).toBe('3000');

    expect(await client.streamVitals(send(messages))).toEqual(first);
    expect(await bed.countReadings(patientId)).toBe(3_000);

    const other = messagesOf([patientId], 3, 1_000, requestId);
    const error = await expectStatus(client.streamVitals(send(other)), Status.INVALID_ARGUMENT);
    expect(error.details).toMatch(/request_id/);
    expect(await bed.countReadings(patientId)).toBe(3_000);
  });

  it('refuses a request_id that changes mid-stream, empty messages and empty streams', async () => {
    const client = await bed.client();
    const patientId = await bed.patient();
    const changing = messagesOf([patientId], 3, 10, randomUUID());
    changing[2]!.requestId = randomUUID();
    expect((await expectStatus(client.streamVitals(send(changing)), Status.INVALID_ARGUMENT)).details).toMatch(/request_id/);
    const empty = messagesOf([patientId], 3, 10);
    empty[1]!.readings = [];
    expect((await expectStatus(client.streamVitals(send(empty)), Status.INVALID_ARGUMENT)).details).toMatch(/readings/);
    await expectStatus(client.streamVitals(send([])), Status.INVALID_ARGUMENT);
    expect(await bed.countReadings(patientId)).toBe(0);
  });

  it('writes nothing for a stream naming a patient out of reach or inactive', async () => {
    const client = await bed.client();
    const active = await bed.patient();
    const completed = await bed.patient({ status: 'COMPLETED' });
    const elsewhere = await bed.patient({ siteId: 'SITE-B' });
    const messages = messagesOf([active], 3, 2_000);
    messages[2]!.readings[5] = reading(completed);
    await expectStatus(client.streamVitals(send(messages)), Status.FAILED_PRECONDITION);
    messages[2]!.readings[5] = reading(elsewhere);
    await expectStatus(client.streamVitals(send(messages)), Status.NOT_FOUND);
    expect(await bed.countReadings(active)).toBe(0);
  });
});
