import { documentV1 } from '@clinical/contracts';
import { RESPONSE_BUDGET_BYTES, type FieldValidator } from '@clinical/server-kit';

/** Largest content, serialised as JSON. */
export const MAX_CONTENT_BYTES = 1_048_576;
/** Largest metadata, serialised as JSON. */
export const MAX_METADATA_BYTES = 65_536;

/** Page sizes of document listings. */
export const DOCUMENT_PAGE = { defaultSize: 50, maxSize: 200 };
/**
 * A listing page stops before it would pass this many bytes of JSON (content,
 * metadata and title, as stored), so that it fits a gRPC message (4 MiB by
 * default) and the service's heap; a page always has at least one document.
 */
export const PAGE_BYTE_BUDGET = 3 * 1_048_576;

/** Deepest nesting of content, metadata and their filters (PostgreSQL's own limit is its stack). */
export const MAX_JSON_DEPTH = 32;

/**
 * Most bytes a version's title, content and metadata may take encoded. JSON
 * limits alone do not bound that (a number in a list is 2 bytes of JSON, 11
 * encoded); half a response, so that the audit event of a new version,
 * which holds the old and the new body, still fits what a client accepts.
 */
export const MAX_ENCODED_BODY_BYTES = Math.floor(RESPONSE_BUDGET_BYTES / 2) - 16 * 1024;

/** Checks a document version's title, content and metadata. */
export function validateDocumentBody(
  v: FieldValidator,
  prefix: string,
  body: { title: string; content?: object; metadata?: object },
): void {
  v.string(`${prefix}title`, body.title, { required: true, max: 500 });
  v.jsonDocument(`${prefix}content`, body.content, { maxBytes: MAX_CONTENT_BYTES, maxDepth: MAX_JSON_DEPTH });
  v.jsonDocument(`${prefix}metadata`, body.metadata, { maxBytes: MAX_METADATA_BYTES, maxDepth: MAX_JSON_DEPTH });
  if (v.valid) {
    const encoded = documentV1.Document.encode(
      documentV1.Document.fromPartial({ title: body.title, content: body.content, metadata: body.metadata }),
    ).finish().length;
    if (encoded > MAX_ENCODED_BODY_BYTES) {
      v.add(
        `${prefix}content`,
        `with metadata and title, must take at most ${MAX_ENCODED_BODY_BYTES} bytes as protobuf (a JSON number takes 11)`,
      );
    }
  }
}
