/**
 * What one response may weigh: gRPC clients refuse messages over 4 MiB by
 * default, less room for the response's other fields. JSON documents are
 * counted here as protobuf bytes: a google.protobuf.Struct can take several
 * times its JSON text (a number in a list is 11 bytes against "0, ").
 */
export const RESPONSE_BUDGET_BYTES = 4 * 1024 * 1024 - 64 * 1024;

/** Bytes a message of `length` bytes takes as an element of a repeated field (tag and length prefix). */
function asElement(length: number): number {
  let prefix = 1;
  for (let rest = length; rest >= 0x80; rest >>>= 7) {
    prefix += 1;
  }
  return 1 + prefix + length;
}

/**
 * How many of a page's `items`, in order, fit in `budget` bytes once encoded
 * as elements of a repeated field: at least one, so that a page is never
 * empty while items remain (a single item over the budget is for the
 * writers' limits to prevent). `encodedLength` encodes an item; `upperBound`,
 * when given, is a cheap bound on it that spares the encoding when the
 * bounds alone fit.
 */
export function countWithinBudget<T>(
  items: readonly T[],
  encodedLength: (item: T) => number,
  options: { budget?: number; upperBound?: (item: T) => number } = {},
): number {
  const budget = options.budget ?? RESPONSE_BUDGET_BYTES;
  const { upperBound } = options;
  if (upperBound) {
    let bound = 0;
    for (const item of items) {
      bound += asElement(upperBound(item));
      if (bound > budget) {
        break;
      }
    }
    if (bound <= budget) {
      return items.length;
    }
  }
  let used = 0;
  for (const [index, item] of items.entries()) {
    used += asElement(encodedLength(item));
    if (used > budget && index > 0) {
      return index;
    }
  }
  return items.length;
}

/** A message type as ts-proto generates it: what measuring a message needs. */
interface MessageEncoder<Message> {
  encode(message: Message): { finish(): Uint8Array };
}

/** The part of a page that goes in one response. */
export interface FittedPage<Row, Message> {
  /** The rows whose messages fit, in order: at least one when any was given. */
  readonly rows: Row[];
  readonly messages: Message[];
  /** Whether rows were left out: the next page starts after the last row kept. */
  readonly trimmed: boolean;
}

/**
 * A page's rows as messages, cut where the encoded response would pass
 * `budget` (default RESPONSE_BUDGET_BYTES; countWithinBudget). `upperBound`
 * bounds a message's size from its row cheaply, so that pages of small
 * items are never encoded twice.
 */
export function fitPage<Row, Message>(
  rows: readonly Row[],
  toMessage: (row: Row) => Message,
  encoder: MessageEncoder<Message>,
  options: { budget?: number; upperBound?: (row: Row, message: Message) => number } = {},
): FittedPage<Row, Message> {
  const items = rows.map((row) => ({ row, message: toMessage(row) }));
  const { upperBound } = options;
  const kept = countWithinBudget(items, ({ message }) => encoder.encode(message).finish().length, {
    budget: options.budget,
    upperBound: upperBound && (({ row, message }) => upperBound(row, message)),
  });
  const fitted = kept === items.length ? items : items.slice(0, kept);
  return { rows: fitted.map(({ row }) => row), messages: fitted.map(({ message }) => message), trimmed: kept < items.length };
}
