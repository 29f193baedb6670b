import { parametersOfKind } from './parameters';

export const REDACTED = '[redacted]';

/**
 * Options take short words, lengths and colours: their values say how a
 * request was served and nothing about who sent it. Only these names show a
 * value, so `api_key`, `token` or `X-Amz-Signature` never do.
 */
const LOGGED_VALUES: ReadonlySet<string> = new Set(parametersOfKind('value'));
const LONGEST_LOGGED = 64;

/** A long run of base64 or URL-safe characters with letters and digits: an API key, a signature, a JWT. */
function looksLikeToken(text: string): boolean {
  return text.length >= 16 && /^[\w+/=.~-]+$/.test(text) && /\d/.test(text) && /[a-z]/i.test(text);
}

/**
 * The request URL as a log line may keep it: the path, every parameter's
 * name, and the values of the option parameters only. Image URLs (often
 * signed), base64 images, unknown parameters and anything that looks like a
 * key or token become `[redacted]`; so does a name that looks like a token.
 */
export function redactedUrl(originalUrl: string): string {
  const queryStart = originalUrl.indexOf('?');
  if (queryStart === -1) return originalUrl;
  const parts: string[] = [];
  for (const [name, value] of new URLSearchParams(originalUrl.slice(queryStart + 1))) {
    const nameShown = name.length <= LONGEST_LOGGED && !looksLikeToken(name);
    const valueShown = LOGGED_VALUES.has(name) && value.length <= LONGEST_LOGGED && !looksLikeToken(value);
    parts.push(`${nameShown ? encodeURIComponent(name) : REDACTED}=${valueShown ? encodeURIComponent(value) : REDACTED}`);
  }
  return `${originalUrl.slice(0, queryStart)}?${parts.join('&')}`;
}
