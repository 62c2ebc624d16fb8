// The errors the follower throws and emits: one class per kind, each with the `code` the
// WebAssembly module gives it. `ErrorCode` comes from Rust (wasm/src/error_code.rs): a
// code added there fails this package's build until `ERROR_CLASSES` maps it.
import type { ErrorCode } from '../dist/browser/pinfold_wasm.js';

export type { ErrorCode };

/** Every error the follower throws; `code` says which kind. */
export class PinfoldError extends Error {
  readonly code: ErrorCode;

  constructor(message: string, code: ErrorCode, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}
/** The bootstrap peer refused the private-network handshake: the secret differs. */
export class WrongSecretError extends PinfoldError {}
/** No bootstrap peer could be reached, or none answered in time. */
export class UnreachableError extends PinfoldError {}
/** An option or argument is missing or malformed; the message names it. */
export class InvalidOptionsError extends PinfoldError {}
/** The follower was closed. */
export class ClosedError extends PinfoldError {}
/** IndexedDB could not be opened, read or written; the message says why. */
export class StorageError extends PinfoldError {}
/** Pinset data came from a peer that is not trusted and was ignored (an `error` event). */
export class UntrustedDataError extends PinfoldError {}

/** The class of each code. */
export const ERROR_CLASSES: Record<ErrorCode, typeof PinfoldError> = {
  WRONG_SECRET: WrongSecretError,
  UNREACHABLE: UnreachableError,
  INVALID_OPTIONS: InvalidOptionsError,
  INVALID_CID: InvalidOptionsError,
  CLOSED: ClosedError,
  STORAGE: StorageError,
  UNTRUSTED_DATA: UntrustedDataError,
  SNAPSHOT: PinfoldError,
  NO_STATUS: PinfoldError,
};

/** An error as it crosses a Worker boundary (structured clone drops classes). */
export interface SerializedError {
  name: string;
  code?: string;
  message: string;
}

export function serializeError(error: unknown): SerializedError {
  const e = error as { name?: string; code?: string; message?: string } | undefined;
  return { name: e?.name ?? 'Error', code: e?.code, message: String(e?.message ?? error) };
}

function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.hasOwn(ERROR_CLASSES, code);
}

/** `error` as an instance of its code's class (errors from WebAssembly or a Worker carry only
 * the code); errors without a known code are left as they are. */
export function typed(error: unknown): unknown {
  if (error instanceof PinfoldError) return error;
  const code = (error as { code?: unknown } | undefined)?.code;
  if (!isErrorCode(code)) return error;
  const Class = ERROR_CLASSES[code];
  return new Class((error as Error).message, code, { cause: error });
}

/** The typed error a serialized one stands for. */
export function reviveError(error: SerializedError): unknown {
  return typed(Object.assign(new Error(error.message), error));
}
