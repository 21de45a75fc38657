// Quip error codes the web client explains in its own words (the README's table; REST `code`
// and WebSocket type-50 `code` are the same numbers). Everything else shows the server's
// readable message as it is.

export const RATE_LIMITED = 11;
export const ACCOUNT_DISABLED = 18;
export const BLOCKED = 26;
export const CONTACTS_ONLY = 27;
export const LOGGED_OUT = 28;
export const FORBIDDEN = 10;
export const FILE_TOO_LARGE = 29;

/** "1 s", "12 s", "2 min" — whole seconds, rounded up (never "0 s"). */
export function waitText(ms) {
  const s = Math.max(1, Math.ceil((Number(ms) || 0) / 1000));
  if (s < 120) return `${s} s`;
  return `${Math.ceil(s / 60)} min`;
}

/**
 * A readable text for an error.
 * @param {number} code Quip error code (0 if unknown)
 * @param {string} message the server's message
 * @param {number} [retryAfterMs] RATE_LIMITED: the server's `retry_after_ms`
 * @param {object} [ctx] `{iBlocked: true}` when the error is about sending to someone I have
 *   blocked (BLOCKED then says "unblock first" rather than "they blocked you").
 */
export function readableError(code, message, retryAfterMs = 0, ctx = {}) {
  switch (Number(code)) {
    case RATE_LIMITED:
      return retryAfterMs > 0
        ? `Too many requests — slow down. Try again in ${waitText(retryAfterMs)}.`
        : 'Too many requests — slow down and try again in a moment.';
    case BLOCKED:
      return ctx.iBlocked
        ? 'You blocked this user. Unblock them to send messages.'
        : 'Blocked: this user is not accepting messages or requests from you.';
    case CONTACTS_ONLY:
      return 'This user only accepts messages from friends. Send a friend request first.';
    case ACCOUNT_DISABLED:
      return 'This account has been disabled by an administrator.';
    case LOGGED_OUT:
      return 'This device was signed out. Please sign in again.';
    case FILE_TOO_LARGE:
      return 'File is larger than the limit.';
    default:
      return message || (code ? `Error ${code}` : 'Request failed');
  }
}

/** Readable text of a WebSocket type-50 frame {code, message, retry_after_ms}. */
export function frameError(f, ctx) {
  return readableError(Number(f.code) || 0, f.message || '', Number(f.retry_after_ms) || 0, ctx);
}
